//! The stream contract's metrics, all defined here: what a job's Kafka
//! preflight is doing (`dualwrite_kafka_*`, shared by every binary that
//! talks to Kafka).

use metrics::{describe_gauge, gauge};

/// HELP text, and the gauge at zero so an alert sees it before any wait.
pub fn describe() {
    describe_gauge!(
        "dualwrite_kafka_preflight_waiting",
        "1 while the job waits at start for Kafka brokers that are unreachable (an outage, not a setting)."
    );
    preflight_waiting(false);
}

/// Whether the preflight is waiting for unreachable brokers.
pub(crate) fn preflight_waiting(waiting: bool) {
    gauge!("dualwrite_kafka_preflight_waiting").set(if waiting { 1.0 } else { 0.0 });
}
