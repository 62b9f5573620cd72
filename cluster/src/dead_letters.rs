//! The dead-letter tables (`dw_dead_letters`, `dw_dead_letter_replays`, DDL
//! in [`crate::schema`]) as every job reads them. The consumer writes both
//! (`consumer::dead_letter`, `consumer::replay`); the operator's
//! `dead-letters list` and cutover's console read them here, beside their
//! DDL, as the fences are read in [`crate::fence`]: the console then needs
//! neither the consumer crate nor librdkafka, and no second copy of the SQL.

use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use serde::Serialize;

use crate::sql::lit;

/// One dead letter as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub detail: String,
    pub recorded_at: String,
    pub has_payload: bool,
    /// `pending` or `done` once replayed.
    pub replay: Option<String>,
}

/// Which letters: all of a reason, or one by position.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub reason: Option<String>,
    pub position: Option<(String, i32, i64)>,
}

fn filter(selection: &Selection) -> String {
    let mut out = String::new();
    if let Some(reason) = &selection.reason {
        out.push_str(&format!(" AND d.reason = {}", lit(reason.as_str())));
    }
    if let Some((topic, partition, offset)) = &selection.position {
        out.push_str(&format!(
            " AND d.topic = {} AND d.kafka_partition = {partition} AND d.kafka_offset = {offset}",
            lit(topic.as_str())
        ));
    }
    out
}

/// A `dw_dead_letters` row joined with its replay state, as selected by [`list`].
type LetterRow = (String, i32, i64, String, String, String, u8, Option<String>);

/// The selected letters of `cluster`, by position, with their replay state.
pub async fn list(control: &Pool, cluster: &str, selection: &Selection) -> Result<Vec<Letter>, mysql_async::Error> {
    let mut conn = control.get_conn().await?;
    // The replay table appears with the first replay; the join needs it now
    // (no DDL when both exist, so the query API's SELECT-only login can read).
    crate::schema::create_missing(&mut conn, &crate::schema::DEAD_LETTER_TABLES).await?;
    let rows: Vec<LetterRow> = conn
        .query(format!(
            "SELECT d.topic, d.kafka_partition, d.kafka_offset, d.reason, d.detail, CAST(d.recorded_at AS CHAR), \
             d.payload IS NOT NULL, r.state FROM dw_dead_letters d LEFT JOIN dw_dead_letter_replays r \
             ON (r.cluster, r.topic, r.kafka_partition, r.kafka_offset) = (d.cluster, d.topic, d.kafka_partition, d.kafka_offset) \
             WHERE d.cluster = {}{} ORDER BY d.topic, d.kafka_partition, d.kafka_offset",
            lit(cluster),
            filter(selection)
        ))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(topic, partition, offset, reason, detail, recorded_at, has_payload, replay)| Letter {
            topic,
            partition,
            offset,
            reason,
            detail,
            recorded_at,
            has_payload: has_payload == 1,
            replay,
        })
        .collect())
}

/// Longest detail shown in a [`ReasonSummary`] (the table keeps up to 2,000 bytes).
const SUMMARY_DETAIL: usize = 200;

/// One reason's dead letters on one cluster: how many, how many recently,
/// and the newest one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonSummary {
    pub reason: String,
    /// Every letter of this reason.
    pub letters: u64,
    /// Letters recorded in the last `recent_secs` (by the control database's clock).
    pub recent: u64,
    /// `YYYY-MM-DD hh:mm:ss.ffffff` UTC.
    pub last_recorded_at: String,
    /// The newest letter: `topic/partition@offset`, and its detail (cut at 200 bytes).
    pub last_position: String,
    pub last_detail: String,
}

/// Dead letters of `cluster` by reason, the most recently seen reason first;
/// none when the table was never created (no consumer ran against this
/// control database yet).
pub async fn by_reason(
    control: &Pool,
    cluster: &str,
    recent_secs: u64,
) -> Result<Vec<ReasonSummary>, mysql_async::Error> {
    let mut conn = control.get_conn().await?;
    let counts: Vec<(String, u64, u64, String)> = match conn
        .exec(
            "SELECT reason, COUNT(*), CAST(SUM(recorded_at >= UTC_TIMESTAMP(6) - INTERVAL ? SECOND) AS UNSIGNED), \
             CAST(MAX(recorded_at) AS CHAR) FROM dw_dead_letters WHERE cluster = ? GROUP BY reason \
             ORDER BY MAX(recorded_at) DESC, reason",
            (recent_secs, cluster),
        )
        .await
    {
        Err(mysql_async::Error::Server(e)) if e.code == crate::retry::ER_NO_SUCH_TABLE => return Ok(Vec::new()),
        counts => counts?,
    };
    let mut out = Vec::with_capacity(counts.len());
    for (reason, letters, recent, last_recorded_at) in counts {
        let newest: Option<(String, i32, i64, String)> = conn
            .exec_first(
                "SELECT topic, kafka_partition, kafka_offset, detail FROM dw_dead_letters \
                 WHERE cluster = ? AND reason = ? ORDER BY recorded_at DESC, topic, kafka_partition, kafka_offset DESC \
                 LIMIT 1",
                (cluster, &reason),
            )
            .await?;
        let (last_position, last_detail) = newest
            .map_or_else(Default::default, |(topic, partition, offset, detail)| {
                (format!("{topic}/{partition}@{offset}"), cut(detail, SUMMARY_DETAIL))
            });
        out.push(ReasonSummary { reason, letters, recent, last_recorded_at, last_position, last_detail });
    }
    Ok(out)
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let end = (0..=max).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_detail_is_cut_on_a_character_boundary() {
        assert_eq!(cut("short".into(), 200), "short");
        // "é" is two bytes: a cut at 3 would split the second one.
        assert_eq!(cut("éé".into(), 3), "é...");
    }

    #[test]
    fn a_selection_filters_by_reason_and_position() {
        let reason = Selection { reason: Some("avro_decode".into()), position: None };
        assert_eq!(filter(&reason), " AND d.reason = 'avro_decode'");
        let one = Selection { reason: None, position: Some(("query-stats".into(), 3, 17)) };
        assert_eq!(filter(&one), " AND d.topic = 'query-stats' AND d.kafka_partition = 3 AND d.kafka_offset = 17");
    }
}
