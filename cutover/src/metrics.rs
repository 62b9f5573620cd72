//! Every metric the cutover crate emits, in one place.

use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// HELP text for every family, so a scrape passes `promtool check metrics`.
pub fn describe() {
    describe_counter!(
        "dualwrite_cutover_reads_total",
        "Reads served, by the cluster that served them, table group, query and outcome."
    );
    describe_histogram!(
        "dualwrite_cutover_read_wait_seconds",
        Unit::Seconds,
        "How long a read waited for a switch in progress before it could start."
    );
    describe_counter!(
        "dualwrite_cutover_shadow_reads_total",
        "Shadow reads on the other cluster: equal, mismatch, error, skipped (not comparable), busy (no slot)."
    );
    describe_gauge!("dualwrite_cutover_routing_version", "The routing version this router has applied.");
    describe_gauge!(
        "dualwrite_cutover_routing_last_sync_timestamp_seconds",
        Unit::Seconds,
        "When this router last read the routing state successfully (it serves its last known routing meanwhile)."
    );
    describe_counter!(
        "dualwrite_cutover_routing_poll_errors_total",
        "Failed polls of the routing state in the control database."
    );
    metrics::counter!("dualwrite_cutover_routing_poll_errors_total").increment(0);
}

/// Registers the pipeline's groups before any read waits, so the histogram
/// is there from the start.
pub fn groups(groups: &[crate::group::TableGroup]) {
    for group in groups {
        let _ = metrics::histogram!("dualwrite_cutover_read_wait_seconds", "group" => group.as_str());
    }
}

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

/// A successful poll of the routing state: the router is following it.
pub fn routing_synced() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    metrics::gauge!("dualwrite_cutover_routing_last_sync_timestamp_seconds").set(now.as_secs_f64());
}

/// A failed poll of the routing state (the router keeps its last known routing).
pub fn routing_poll_failed() {
    metrics::counter!("dualwrite_cutover_routing_poll_errors_total").increment(1);
}
