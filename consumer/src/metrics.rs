//! The consumer's metrics, all defined here.
//!
//! Names follow `dualwrite_consumer_<name>_<unit>`; labels are low-cardinality
//! (topic, shard index, table, reason, outcome).

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit};

/// HELP text for every family, and the series whose first increment an alert
/// must see, at zero (`shards`: the cluster's shard count).
pub fn describe(shards: usize) {
    describe_counter!(
        "dualwrite_consumer_messages_total",
        "Messages handled, by topic and outcome (applied, skipped_below_fence, dead_letter)."
    );
    describe_counter!(
        "dualwrite_consumer_rows_written_total",
        Unit::Count,
        "Rows upserted or inserted, by shard and table."
    );
    describe_counter!("dualwrite_consumer_dead_letters_total", "Messages dead-lettered, by reason.");
    describe_counter!(
        "dualwrite_consumer_shard_retries_total",
        "Retried shard transactions after a retryable error, by shard."
    );
    describe_counter!(
        "dualwrite_consumer_offset_gaps_total",
        "Batches that started past a shard's fence: messages never seen (truncated upstream)."
    );
    describe_counter!(
        "dualwrite_consumer_offsets_lost_total",
        Unit::Count,
        "Offsets between a shard's fence and a batch's first offset: messages that expired from the topic \
         before this group applied them, by topic and partition."
    );
    describe_gauge!(
        "dualwrite_consumer_partition_stopped",
        "1 while a partition is stopped because this cluster's fence is above its end offset (topic recreated, \
         or the wrong Kafka)."
    );
    describe_histogram!(
        "dualwrite_consumer_batch_duration_seconds",
        Unit::Seconds,
        "Time from batch cut to offsets stored."
    );
    describe_histogram!("dualwrite_consumer_batch_messages", Unit::Count, "Messages per batch.");
    describe_gauge!(
        "dualwrite_consumer_paused",
        "1 while fetching is paused because the batcher is stalled (a shard is slow or down)."
    );
    describe_counter!("dualwrite_consumer_pauses_total", "Times fetching was paused for backpressure.");
    describe_counter!(
        "dualwrite_consumer_registry_lookups_total",
        "Schema registry lookups of a schema id, by outcome (found, unknown, unavailable); each id is found \
         or unknown at most once per process."
    );
    describe_gauge!(
        "dualwrite_consumer_lag_messages",
        Unit::Count,
        "End offset minus the committed offset, by topic and partition (librdkafka statistics)."
    );
    describe_gauge!(
        "dualwrite_consumer_applied_message_timestamp_seconds",
        Unit::Seconds,
        "Highest message timestamp applied, by topic and partition; lag in seconds is now minus this while lag_messages > 0."
    );
    describe_gauge!("dualwrite_consumer_assigned_partitions", Unit::Count, "Partitions this member holds now.");
    describe_gauge!(
        "dualwrite_consumer_cluster_lag_messages",
        Unit::Count,
        "Messages the cluster is behind the topics' end offsets, from its fences (every partition, whoever owns it)."
    );
    describe_gauge!(
        "dualwrite_consumer_idle_while_lagging_seconds",
        Unit::Seconds,
        "How long this member has held no partition while its cluster lags (0 otherwise)."
    );
    describe_gauge!(
        "dualwrite_consumer_unapplied_partitions",
        Unit::Count,
        "Partitions with messages to apply whose fences no member moved for longer than the liveness bound."
    );
    describe_gauge!(
        "dualwrite_consumer_oldest_unapplied_seconds",
        Unit::Seconds,
        "Of those partitions, the longest time since its fences moved (0 when there is none)."
    );
    describe_counter!(
        "dualwrite_consumer_liveness_violations_total",
        "Liveness violations past the bound, once per episode, by kind (member_idle, partition_unapplied)."
    ); // Present from the start, so a first increment is an increase to alert on.
    for kind in ["member_idle", "partition_unapplied"] {
        counter!("dualwrite_consumer_liveness_violations_total", "kind" => kind).increment(0);
    }
    gauge!("dualwrite_consumer_idle_while_lagging_seconds").set(0.0);
    gauge!("dualwrite_consumer_unapplied_partitions").set(0.0);
    gauge!("dualwrite_consumer_oldest_unapplied_seconds").set(0.0);
    counter!("dualwrite_consumer_offset_gaps_total").increment(0);
    counter!("dualwrite_consumer_pauses_total").increment(0);
    for shard in 0..shards {
        counter!("dualwrite_consumer_shard_retries_total", "shard" => shard.to_string()).increment(0);
    }
    for reason in topics::DecodeError::REASONS {
        counter!("dualwrite_consumer_dead_letters_total", "reason" => reason).increment(0);
    }
    gauge!("dualwrite_consumer_paused").set(0.0);
}

pub fn messages(topic: &str, outcome: &'static str, n: u64) {
    counter!("dualwrite_consumer_messages_total", "topic" => topic.to_string(), "outcome" => outcome).increment(n);
}

pub fn rows(shard: usize, table: &str, n: u64) {
    if n > 0 {
        counter!("dualwrite_consumer_rows_written_total", "shard" => shard.to_string(), "table" => table.to_string())
            .increment(n);
    }
}

pub fn dead_letter(reason: &'static str) {
    counter!("dualwrite_consumer_dead_letters_total", "reason" => reason).increment(1);
}

pub fn registry_lookup(outcome: &'static str) {
    counter!("dualwrite_consumer_registry_lookups_total", "outcome" => outcome).increment(1);
}

pub fn shard_retry(shard: usize) {
    counter!("dualwrite_consumer_shard_retries_total", "shard" => shard.to_string()).increment(1);
}

pub fn offset_gap(topic: &str, partition: i32, lost: u64) {
    counter!("dualwrite_consumer_offset_gaps_total").increment(1);
    counter!("dualwrite_consumer_offsets_lost_total", "topic" => topic.to_string(), "partition" => partition.to_string())
        .increment(lost);
}

pub fn partition_stopped(topic: &str, partition: i32, stopped: bool) {
    gauge!("dualwrite_consumer_partition_stopped", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(if stopped { 1.0 } else { 0.0 });
}

pub fn batch(duration: Duration, messages: u64) {
    histogram!("dualwrite_consumer_batch_duration_seconds").record(duration.as_secs_f64());
    histogram!("dualwrite_consumer_batch_messages").record(messages as f64);
}

pub fn lag(topic: &str, partition: i32, lag: i64) {
    gauge!("dualwrite_consumer_lag_messages", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(lag as f64);
}

/// After a batch is durable: how far in message time a partition is applied.
pub fn applied_through(topic: &str, partition: i32, message_ms: i64) {
    gauge!("dualwrite_consumer_applied_message_timestamp_seconds", "topic" => topic.to_string(), "partition" => partition.to_string())
        .set(message_ms as f64 / 1000.0);
}

pub fn paused(paused: bool) {
    gauge!("dualwrite_consumer_paused").set(if paused { 1.0 } else { 0.0 });
    if paused {
        counter!("dualwrite_consumer_pauses_total").increment(1);
    }
}

pub fn assigned_partitions(n: usize) {
    gauge!("dualwrite_consumer_assigned_partitions").set(n as f64);
}

pub fn cluster_lag(messages: i64) {
    gauge!("dualwrite_consumer_cluster_lag_messages").set(messages as f64);
}

pub fn idle_while_lagging(for_: Duration) {
    gauge!("dualwrite_consumer_idle_while_lagging_seconds").set(for_.as_secs_f64());
}

pub fn unapplied(partitions: usize, oldest_ms: i64) {
    gauge!("dualwrite_consumer_unapplied_partitions").set(partitions as f64);
    gauge!("dualwrite_consumer_oldest_unapplied_seconds").set(oldest_ms as f64 / 1000.0);
}

pub fn liveness_violation(kind: &'static str, n: u64) {
    counter!("dualwrite_consumer_liveness_violations_total", "kind" => kind).increment(n);
}
