//! Dead letters after their cause is fixed: list them, and replay them by
//! producing the stored key and value again to the message's topic and
//! partition.
//!
//! Why re-produce rather than write the rows directly: the replayed copy is a
//! new message at a new offset, so both groups apply it through their fences
//! exactly once each, and "same input, same state" keeps holding across the
//! two clusters. Replay is at most once per letter: a row in
//! `dw_dead_letter_replays` is written (`pending`) before producing and marked
//! `done` with the new offset after delivery; a letter with a row is never
//! produced again. A crash between the two leaves `pending`: the operator
//! checks the topic and deletes the row to retry. Replay from one cluster's
//! control database only (both hold the same letters).

use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("control database: {0}")]
    Control(#[from] mysql_async::Error),
    #[error("producing {topic}/{partition}@{offset} again: {error}")]
    Produce { topic: String, partition: i32, offset: i64, error: String },
}

pub use cluster::dead_letters::{Letter, Selection};

/// The selected letters with their replay state (read through
/// `cluster::dead_letters`, where the table's contract lives).
pub async fn list(control: &Pool, cluster: &str, selection: &Selection) -> Result<Vec<Letter>, ReplayError> {
    Ok(cluster::dead_letters::list(control, cluster, selection).await?)
}

/// What happened to one selected letter.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// `(partition, offset)` of the copy, or why it was not produced.
    pub outcome: Result<(i32, i64), String>,
}

/// Replays every selected letter not replayed before (see the module docs).
pub async fn replay(
    control: &Pool,
    cluster: &str,
    producer: &FutureProducer,
    selection: &Selection,
) -> Result<Vec<Replayed>, ReplayError> {
    let letters = list(control, cluster, selection).await?;
    let mut conn = control.get_conn().await?;
    let mut out = Vec::with_capacity(letters.len());
    for letter in letters {
        let (topic, partition, offset) = (letter.topic.clone(), letter.partition, letter.offset);
        let skip = |why: &str| Replayed { topic: topic.clone(), partition, offset, outcome: Err(why.to_string()) };
        if let Some(state) = &letter.replay {
            out.push(skip(&format!("already replayed ({state})")));
            continue;
        }
        if !letter.has_payload {
            out.push(skip("no value to replay"));
            continue;
        }
        // Claim it first: a second replay (or a concurrent one) finds the row.
        conn.exec_drop(
            "INSERT IGNORE INTO dw_dead_letter_replays (cluster, topic, kafka_partition, kafka_offset, state, started_at) \
             VALUES (?, ?, ?, ?, 'pending', UTC_TIMESTAMP(6))",
            (cluster, &topic, partition, offset),
        )
        .await?;
        if conn.affected_rows() == 0 {
            out.push(skip("claimed by another replay"));
            continue;
        }
        let (key, payload): (Option<Vec<u8>>, Option<Vec<u8>>) = conn
            .exec_first(
                "SELECT message_key, payload FROM dw_dead_letters WHERE cluster = ? AND topic = ? \
                 AND kafka_partition = ? AND kafka_offset = ?",
                (cluster, &topic, partition, offset),
            )
            .await?
            .unwrap_or_default();
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).partition(partition);
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        if let Some(p) = payload.as_deref() {
            record = record.payload(p);
        }
        let delivered = producer
            .send(record, std::time::Duration::from_secs(30))
            .await
            .map_err(|(e, _)| ReplayError::Produce { topic: topic.clone(), partition, offset, error: e.to_string() })?;
        conn.exec_drop(
            "UPDATE dw_dead_letter_replays SET state = 'done', new_partition = ?, new_offset = ? \
             WHERE cluster = ? AND topic = ? AND kafka_partition = ? AND kafka_offset = ?",
            (delivered.partition, delivered.offset, cluster, &topic, partition, offset),
        )
        .await?;
        tracing::info!(%topic, partition, offset, new_offset = delivered.offset, "dead letter replayed");
        out.push(Replayed { topic, partition, offset, outcome: Ok((delivered.partition, delivered.offset)) });
    }
    Ok(out)
}
