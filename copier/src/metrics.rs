//! Every metric the copier exports, in one place. Names follow
//! `copier_<name>_<unit>[_total]`; labels are the stream's table and source shard.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

/// Snapshot rows written to the new cluster.
pub fn rows_copied(table: &str, source_shard: &str, rows: u64) {
    counter!("copier_rows_copied_total", "table" => table.to_owned(), "source_shard" => source_shard.to_owned())
        .increment(rows);
}

/// Binlog row operations applied to the new cluster.
pub fn events_applied(table: &str, source_shard: &str, ops: u64) {
    counter!("copier_binlog_row_events_applied_total", "table" => table.to_owned(), "source_shard" => source_shard.to_owned())
        .increment(ops);
}

/// Binlog lag of a stream.
pub fn lag(table: &str, source_shard: &str, events: Option<u64>, seconds: Option<f64>) {
    if let Some(events) = events {
        gauge!("copier_binlog_lag_events", "table" => table.to_owned(), "source_shard" => source_shard.to_owned())
            .set(events as f64);
    }
    if let Some(seconds) = seconds {
        gauge!("copier_binlog_lag_seconds", "table" => table.to_owned(), "source_shard" => source_shard.to_owned())
            .set(seconds);
    }
}

/// The stream's phase as a number (0 copying, 1 catching up, 2 replicating, 3 stopped, 4 failed).
pub fn phase(table: &str, source_shard: &str, phase: crate::phase::Phase) {
    gauge!("copier_phase", "table" => table.to_owned(), "source_shard" => source_shard.to_owned())
        .set(phase as u8 as f64);
}

/// One target shard transaction's latency.
pub fn target_write(latency: Duration) {
    histogram!("copier_target_write_seconds").record(latency.as_secs_f64());
}

/// Time spent waiting because target writes were slow.
pub fn throttled(table: &str, source_shard: &str, pause: Duration) {
    counter!("copier_throttled_microseconds_total", "table" => table.to_owned(), "source_shard" => source_shard.to_owned())
        .increment(pause.as_micros() as u64);
}

/// A stream error, retried or fatal.
pub fn stream_error(table: &str, source_shard: &str, kind: &'static str, fatal: bool) {
    counter!("copier_stream_errors_total", "table" => table.to_owned(), "source_shard" => source_shard.to_owned(),
        "kind" => kind, "fatal" => if fatal { "true" } else { "false" })
    .increment(1);
}

/// A source UPDATE that the merge rule cannot carry (see `apply.rs`).
pub fn non_merge_update() {
    counter!("copier_non_merge_updates_total").increment(1);
    tracing::warn!("source update moves a row against the merge rule; the target keeps the merged value");
}
