//! Every metric the cutover crate emits, in one place.

use std::time::Duration;

/// A read served, by the cluster that served it.
pub fn read_served(cluster: &str, group: &'static str, query: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("dualwrite_cutover_reads_total", "cluster" => cluster.to_owned(), "group" => group, "query" => query, "outcome" => outcome)
        .increment(1);
}

/// How long a read waited for a switch in progress before it could start.
pub fn read_waited(group: &'static str, waited: Duration) {
    metrics::histogram!("dualwrite_cutover_read_wait_seconds", "group" => group).record(waited.as_secs_f64());
}

/// A shadow read's outcome: equal, mismatch, error, skipped (not comparable), busy (no slot).
pub fn shadow_read(group: &'static str, query: &'static str, outcome: &'static str) {
    metrics::counter!("dualwrite_cutover_shadow_reads_total", "group" => group, "query" => query, "outcome" => outcome)
        .increment(1);
}

/// The routing version this router has applied.
pub fn routing_version(version: u64) {
    metrics::gauge!("dualwrite_cutover_routing_version").set(version as f64);
}

/// A failed poll of the routing state (the router keeps its last known routing).
pub fn routing_poll_failed() {
    metrics::counter!("dualwrite_cutover_routing_poll_errors_total").increment(1);
}
