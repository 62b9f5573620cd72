//! Every metric the retention daemon exports, in one place. Labels: the
//! cluster's name. Timestamps are seconds since the epoch (`_timestamp_seconds`),
//! so an alert computes ages itself and a stopped daemon cannot look fresh.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

pub const CREATED: &str = "dualwrite_retention_partitions_created_total";
pub const DROPPED: &str = "dualwrite_retention_partitions_dropped_total";
pub const ERRORS: &str = "dualwrite_retention_errors_total";
pub const OLDEST_RETAINED: &str = "dualwrite_retention_oldest_retained_window_timestamp_seconds";
pub const READY_THROUGH: &str = "dualwrite_retention_partitions_ready_through_timestamp_seconds";
pub const AHEAD: &str = "dualwrite_retention_ahead_seconds";
pub const LAST_RUN: &str = "dualwrite_retention_last_run_timestamp_seconds";
pub const DURATION: &str = "dualwrite_retention_last_run_duration_seconds";

/// HELP text for every family, so a scrape passes `promtool check metrics`.
pub fn describe() {
    describe_counter!(CREATED, Unit::Count, "Time partitions split off p_future, by cluster.");
    describe_counter!(DROPPED, Unit::Count, "Time partitions dropped for being older than retention.");
    describe_counter!(ERRORS, Unit::Count, "Shards a run failed on (retried on the next run).");
    describe_gauge!(OLDEST_RETAINED, Unit::Seconds, "Oldest window start held in full by every table on every shard.");
    describe_gauge!(
        READY_THROUGH,
        Unit::Seconds,
        "Lowest, over every table and shard, upper bound of the newest real partition."
    );
    describe_gauge!(AHEAD, Unit::Seconds, "How far ahead of now partitions are kept ready (--ahead).");
    describe_gauge!(LAST_RUN, Unit::Seconds, "When the last run finished.");
    describe_gauge!(DURATION, Unit::Seconds, "Wall time of the last run.");
}

/// After every non-dry run. Counters are registered even at zero, so the
/// first error is an increase an alert sees.
pub fn record_run(
    cluster: &str,
    created: usize,
    dropped: usize,
    errors: usize,
    oldest_retained: Option<i64>,
    ready_through: Option<i64>,
) {
    let labels = [("cluster", cluster.to_owned())];
    counter!(CREATED, &labels).increment(created as u64);
    counter!(DROPPED, &labels).increment(dropped as u64);
    counter!(ERRORS, &labels).increment(errors as u64);
    if let Some(oldest) = oldest_retained {
        gauge!(OLDEST_RETAINED, &labels).set(oldest as f64);
    }
    if let Some(ready) = ready_through {
        gauge!(READY_THROUGH, &labels).set(ready as f64);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    gauge!(LAST_RUN, &labels).set(now.as_secs_f64());
}

pub fn ahead(cluster: &str, ahead: Duration) {
    gauge!(AHEAD, "cluster" => cluster.to_owned()).set(ahead.as_secs_f64());
}

pub fn run_duration(cluster: &str, took: Duration) {
    gauge!(DURATION, "cluster" => cluster.to_owned()).set(took.as_secs_f64());
}
