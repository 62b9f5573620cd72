//! Dead letters go to the control database, keyed by the message's position,
//! so a retried batch (or the other group reaching the same verdict) writes
//! each one once. They are durable before any offset moves past them.

use mysql_async::prelude::Queryable;
use mysql_async::Pool;

use crate::plan::DeadLetter;
use cluster::sql::{chunks, hex, lit, tuple};

pub async fn record(
    control: &Pool,
    cluster: &str,
    group: &str,
    letters: &[DeadLetter],
) -> Result<(), mysql_async::Error> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut conn = control.get_conn().await?;
    let values: Vec<String> = letters
        .iter()
        .map(|d| {
            tuple(&[
                lit(cluster),
                lit(&*d.topic),
                lit(d.partition),
                lit(d.offset),
                lit(group),
                lit(d.reason),
                lit(d.detail.as_str()),
                d.key.as_deref().map(hex).unwrap_or_else(|| "NULL".into()),
                d.payload.as_deref().map(hex).unwrap_or_else(|| "NULL".into()),
                lit(d.message_ms),
                "UTC_TIMESTAMP(6)".to_string(),
            ])
        })
        .collect();
    for chunk in chunks(&values) {
        // Autocommit: each statement is durable when it returns.
        conn.query_drop(format!(
            "INSERT INTO dw_dead_letters (cluster, topic, kafka_partition, kafka_offset, consumer_group, reason, \
             detail, message_key, payload, message_ms, recorded_at) VALUES {} \
             ON DUPLICATE KEY UPDATE kafka_offset = kafka_offset",
            chunk.join(",")
        ))
        .await?;
    }
    Ok(())
}
