//! The producer's metrics, like every other process's: its delivery rate and
//! its errors, by topic.

use metrics::{counter, describe_counter, Unit};
use topics::TopicKind;

pub const DELIVERED: &str = "dualwrite_loadtest_messages_delivered_total";
pub const ERRORS: &str = "dualwrite_loadtest_produce_errors_total";

/// HELP text, and every series at zero so a first error is an increase.
pub fn describe() {
    describe_counter!(DELIVERED, Unit::Count, "Messages the broker acknowledged, by topic kind.");
    describe_counter!(
        ERRORS,
        Unit::Count,
        "Produce errors by topic kind and stage: queue_full (waited out), resent (a message the broker refused, sent again), enqueue and delivery (fatal)."
    );
    for kind in [TopicKind::QueryStats, TopicKind::SlowQueries] {
        counter!(DELIVERED, "topic" => kind.as_str()).increment(0);
        for stage in ["queue_full", "resent", "enqueue", "delivery"] {
            counter!(ERRORS, "topic" => kind.as_str(), "stage" => stage).increment(0);
        }
    }
}

pub fn delivered(kind: TopicKind) {
    counter!(DELIVERED, "topic" => kind.as_str()).increment(1);
}

pub fn error(kind: TopicKind, stage: &'static str) {
    counter!(ERRORS, "topic" => kind.as_str(), "stage" => stage).increment(1);
}
