//! Every metric the copier exports, in one place. Names follow
//! `dualwrite_copier_<name>_<unit>[_total]`; labels are the stream's table and
//! source shard.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

pub const ROWS_COPIED: &str = "dualwrite_copier_rows_copied_total";
pub const EVENTS_APPLIED: &str = "dualwrite_copier_binlog_row_events_applied_total";
pub const LAG_EVENTS: &str = "dualwrite_copier_binlog_lag_events";
pub const LAG_SECONDS: &str = "dualwrite_copier_binlog_lag_seconds";
pub const PHASE: &str = "dualwrite_copier_phase";
pub const TARGET_WRITE: &str = "dualwrite_copier_target_write_seconds";
pub const THROTTLE: &str = "dualwrite_copier_throttle_pause_seconds";
pub const STREAM_ERRORS: &str = "dualwrite_copier_stream_errors_total";
pub const NON_MERGE_UPDATES: &str = "dualwrite_copier_non_merge_updates_total";

/// HELP text for every family, so a scrape passes `promtool check metrics`.
pub fn describe() {
    describe_counter!(ROWS_COPIED, Unit::Count, "Snapshot rows written to the new cluster, by table and source shard.");
    describe_counter!(EVENTS_APPLIED, Unit::Count, "Binlog row operations applied to the new cluster.");
    describe_gauge!(LAG_EVENTS, Unit::Count, "Binlog events between the stream's position and the source's end.");
    describe_gauge!(LAG_SECONDS, Unit::Seconds, "Age of the last binlog event applied while behind the source.");
    describe_gauge!(PHASE, "Stream phase: 0 copying, 1 catching up, 2 replicating, 3 stopped, 4 failed.");
    describe_histogram!(TARGET_WRITE, Unit::Seconds, "Latency of one target shard transaction.");
    describe_histogram!(THROTTLE, Unit::Seconds, "Pauses taken because target writes were slow.");
    describe_counter!(STREAM_ERRORS, "Stream errors by kind, retried (fatal=false) or stopping the stream.");
    describe_counter!(
        NON_MERGE_UPDATES,
        "Source updates the merge rule cannot carry (the target keeps the merged value)."
    );
    counter!(NON_MERGE_UPDATES).increment(0);
}

/// Snapshot rows written to the new cluster.
pub fn rows_copied(table: &str, source_shard: &str, rows: u64) {
    counter!(ROWS_COPIED, "table" => table.to_owned(), "source_shard" => source_shard.to_owned()).increment(rows);
}

/// Binlog row operations applied to the new cluster.
pub fn events_applied(table: &str, source_shard: &str, ops: u64) {
    counter!(EVENTS_APPLIED, "table" => table.to_owned(), "source_shard" => source_shard.to_owned()).increment(ops);
}

/// Binlog lag of a stream.
pub fn lag(table: &str, source_shard: &str, events: Option<u64>, seconds: Option<f64>) {
    if let Some(events) = events {
        gauge!(LAG_EVENTS, "table" => table.to_owned(), "source_shard" => source_shard.to_owned()).set(events as f64);
    }
    if let Some(seconds) = seconds {
        gauge!(LAG_SECONDS, "table" => table.to_owned(), "source_shard" => source_shard.to_owned()).set(seconds);
    }
}

/// The stream's phase as a number (0 copying, 1 catching up, 2 replicating, 3 stopped, 4 failed).
/// The stream's counters are registered here too (at zero: a no-op once they
/// moved), so a stream that never saw a binlog event or an error still exports
/// them and a first increment is an increase an alert sees.
pub fn phase(table: &str, source_shard: &str, phase: crate::phase::Phase) {
    let labels = [("table", table.to_owned()), ("source_shard", source_shard.to_owned())];
    gauge!(PHASE, &labels).set(phase as u8 as f64);
    counter!(ROWS_COPIED, &labels).increment(0);
    counter!(EVENTS_APPLIED, &labels).increment(0);
}

/// One target shard transaction's latency.
pub fn target_write(latency: Duration) {
    histogram!(TARGET_WRITE).record(latency.as_secs_f64());
}

/// Time spent waiting because target writes were slow (seconds: the base unit).
pub fn throttled(table: &str, source_shard: &str, pause: Duration) {
    histogram!(THROTTLE, "table" => table.to_owned(), "source_shard" => source_shard.to_owned())
        .record(pause.as_secs_f64());
}

/// A stream error, retried or fatal.
pub fn stream_error(table: &str, source_shard: &str, kind: &'static str, fatal: bool) {
    counter!(STREAM_ERRORS, "table" => table.to_owned(), "source_shard" => source_shard.to_owned(),
        "kind" => kind, "fatal" => if fatal { "true" } else { "false" })
    .increment(1);
}

/// A source UPDATE that the merge rule cannot carry (see `apply.rs`).
pub fn non_merge_update() {
    counter!(NON_MERGE_UPDATES).increment(1);
    tracing::warn!("source update moves a row against the merge rule; the target keeps the merged value");
}
