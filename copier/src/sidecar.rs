//! The sidecar table: each target shard's record of what it holds of each stream.
//!
//! One source stream writes to every target shard, and a transaction cannot
//! span shards. So, like the consumer's offset fences, the state is kept
//! **per target shard**, in `dw_copier_streams` on that shard, and written in
//! the same transaction as the rows it covers. A shard's row says: "for this
//! (table, source shard), I hold every source row with key <= `last_key`
//! (every key once `copy_done`) as of binlog position `binlog_file:binlog_pos`".
//!
//! After a crash the shards may disagree (a batch committed on some shards
//! and not others). Nothing is lost or applied twice because each shard
//! filters by its own fence: the stream resumes from the smallest position
//! and the smallest key, and a shard skips binlog transactions ending at or
//! before its own position and snapshot rows at or below its own last key.
//! Every batch writes every shard's fence (also shards that got no rows), so
//! in a clean run all shards agree and a resume replays nothing.
//!
//! The operator-view columns (phase, rate, lag, error) are the same for all
//! shards of a stream; `status` shows the newest row's.
//!
//! This module is the table's only reader and writer: the stream writes
//! fences and views here, `status` (and through it cutover) reads rows here.

use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Transaction};

use crate::binlog::Position;
use crate::error::CopierError;
use crate::phase::Phase;
use crate::row::{Cell, Key};
use crate::table::CopiedTable;

/// One target shard's fence for one stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fence {
    /// Every source key is covered (the copy finished).
    pub copy_done: bool,
    /// Keys up to this one are covered; `None`: none.
    pub last_key: Option<Key>,
    /// Covered keys hold the source's state as of this position; `None`
    /// when the shard has no fence yet.
    pub position: Option<Position>,
    /// GTID of the last transaction applied (display only).
    pub gtid: String,
    /// Snapshot rows written to this shard.
    pub rows_copied: u64,
    /// Binlog row operations applied to this shard.
    pub events_applied: u64,
}

impl Fence {
    /// Whether this shard already holds (and must keep up to date) `key`.
    pub fn covers(&self, key: &Key) -> bool {
        self.copy_done || self.last_key.as_ref().is_some_and(|last| key <= last)
    }

    /// Whether this shard covers any key at all.
    pub fn covers_any(&self) -> bool {
        self.copy_done || self.last_key.is_some()
    }

    /// Whether a binlog transaction ending at `end` is already applied here.
    pub fn has_applied(&self, end: &Position) -> bool {
        self.position.as_ref().is_some_and(|p| end <= p)
    }
}

/// Creates the sidecar table (`cluster::job_tables::COPIER_STREAMS`) on
/// every target shard where it is missing.
pub async fn ensure_table(pools: &[Pool]) -> Result<(), CopierError> {
    for pool in pools {
        let mut conn = pool.get_conn().await?;
        cluster::schema::create_missing(&mut conn, &cluster::job_tables::SHARD_TABLES).await?;
    }
    Ok(())
}

/// copy_done, last_key, binlog_file, binlog_pos, gtid, rows_copied, events_applied.
type FenceRow = (u8, Option<String>, String, u64, String, u64, u64);

/// Reads every target shard's fence for the stream (default where a shard has none).
pub async fn load_fences(pools: &[Pool], copied: &CopiedTable, source_shard: &str) -> Result<Vec<Fence>, CopierError> {
    let table = copied.name.as_str();
    let mut fences = Vec::with_capacity(pools.len());
    for pool in pools {
        let row: Option<FenceRow> = pool
            .get_conn()
            .await?
            .exec_first(
                "SELECT copy_done, last_key, binlog_file, binlog_pos, gtid, rows_copied, events_applied \
                 FROM dw_copier_streams WHERE table_name = ? AND source_shard = ?",
                (table, source_shard),
            )
            .await?;
        let fence = match row {
            None => Fence::default(),
            Some((copy_done, last_key, file, pos, gtid, rows_copied, events_applied)) => Fence {
                copy_done: copy_done != 0,
                last_key: parse_key(last_key, Some(copied))?,
                position: (!file.is_empty()).then_some(Position { file, pos }),
                gtid,
                rows_copied,
                events_applied,
            },
        };
        fences.push(fence);
    }
    Ok(fences)
}

/// Writes `fence` inside the transaction that wrote the rows it covers.
pub async fn write_fence(
    tx: &mut Transaction<'_>,
    table: &str,
    source_shard: &str,
    fence: &Fence,
    phase: Phase,
) -> Result<(), mysql_async::Error> {
    let last_key = fence.last_key.as_ref().map(|k| serde_json::to_string(k).unwrap_or_default());
    let (file, pos) = fence.position.as_ref().map(|p| (p.file.as_str(), p.pos)).unwrap_or(("", 0));
    tx.exec_drop(
        "INSERT INTO dw_copier_streams (table_name, source_shard, copy_done, last_key, binlog_file, binlog_pos, gtid, \
         rows_copied, events_applied, phase, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6)) \
         ON DUPLICATE KEY UPDATE copy_done = VALUES(copy_done), last_key = VALUES(last_key), \
         binlog_file = VALUES(binlog_file), binlog_pos = VALUES(binlog_pos), gtid = VALUES(gtid), \
         rows_copied = VALUES(rows_copied), events_applied = VALUES(events_applied), phase = VALUES(phase), \
         error = NULL, error_kind = NULL, updated_at = VALUES(updated_at)",
        (
            table,
            source_shard,
            u8::from(fence.copy_done),
            last_key,
            file,
            pos,
            fence.gtid.as_str(),
            fence.rows_copied,
            fence.events_applied,
            phase.as_str(),
        ),
    )
    .await
}

/// The operator view of a stream, written to every target shard's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewUpdate {
    /// Current phase.
    pub phase: Phase,
    /// Source rows at the stream's first snapshot (for the ETA).
    pub rows_total: Option<u64>,
    /// Measured copy rate over the last interval.
    pub rows_per_sec: Option<f64>,
    /// Binlog events between the applied position and the source's end.
    pub lag_events: Option<u64>,
    /// Seconds behind the source (0 when caught up).
    pub lag_seconds: Option<f64>,
    /// Why the stream stopped, when it failed.
    pub error: Option<(String, String)>,
}

/// Writes the operator view to every target shard (it never touches the
/// fence columns; a shard without a row gets an empty fence, which covers nothing).
pub async fn write_view(pools: &[Pool], table: &str, source_shard: &str, view: &ViewUpdate) -> Result<(), CopierError> {
    let (error_kind, error) = match &view.error {
        Some((kind, text)) => (Some(kind.as_str()), Some(text.as_str())),
        None => (None, None),
    };
    let writes = pools.iter().map(|pool| async move {
        pool.get_conn()
            .await?
            .exec_drop(
                "INSERT INTO dw_copier_streams (table_name, source_shard, phase, rows_total, rows_per_sec, lag_events, \
                 lag_seconds, error, error_kind, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6)) \
                 ON DUPLICATE KEY UPDATE phase = VALUES(phase), rows_total = COALESCE(VALUES(rows_total), rows_total), \
                 rows_per_sec = VALUES(rows_per_sec), lag_events = VALUES(lag_events), \
                 lag_seconds = VALUES(lag_seconds), error = VALUES(error), error_kind = VALUES(error_kind), \
                 updated_at = VALUES(updated_at)",
                (
                    table,
                    source_shard,
                    view.phase.as_str(),
                    view.rows_total,
                    view.rows_per_sec,
                    view.lag_events,
                    view.lag_seconds,
                    error,
                    error_kind,
                ),
            )
            .await
    });
    for result in futures::future::join_all(writes).await {
        result?;
    }
    Ok(())
}

/// One `dw_copier_streams` row as stored on one target shard.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStream {
    /// The copied table.
    pub table: String,
    /// The old shard the stream reads.
    pub source_shard: String,
    /// This target shard's fence.
    pub fence: Fence,
    /// The operator view as last written to this shard.
    pub view: ViewUpdate,
    /// When the row was last written (UTC).
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// Every stream row of every target shard, shard by shard (a shard without
/// the table holds none: no stream ever wrote to it).
pub async fn read_all(pools: &[Pool]) -> Result<Vec<StoredStream>, CopierError> {
    let mut out = Vec::new();
    for pool in pools {
        let mut conn = pool.get_conn().await?;
        let rows: Vec<mysql_async::Row> = match conn
            .query(
                "SELECT table_name, source_shard, copy_done, last_key, binlog_file, binlog_pos, gtid, rows_copied, \
                 events_applied, phase, rows_total, rows_per_sec, lag_events, lag_seconds, error, error_kind, \
                 DATE_FORMAT(updated_at, '%Y-%m-%dT%H:%i:%s.%fZ') FROM dw_copier_streams",
            )
            .await
        {
            Ok(rows) => rows,
            Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE => continue,
            Err(e) => return Err(e.into()),
        };
        for row in rows {
            out.push(stored_stream(row)?);
        }
    }
    Ok(out)
}

/// MySQL's "table doesn't exist".
const ER_NO_SUCH_TABLE: u16 = 1146;

fn unexpected(why: impl Into<String>) -> CopierError {
    CopierError::Schema { table: "dw_copier_streams".into(), why: why.into() }
}

fn stored_stream(mut r: mysql_async::Row) -> Result<StoredStream, CopierError> {
    macro_rules! col {
        ($i:expr) => {
            r.take_opt($i)
                .and_then(Result::ok)
                .ok_or_else(|| unexpected(format!("column {} missing or mistyped", $i)))?
        };
    }
    let table: String = col!(0);
    let source_shard: String = col!(1);
    let copy_done: u8 = col!(2);
    let last_key: Option<String> = col!(3);
    let file: String = col!(4);
    let pos: u64 = col!(5);
    let gtid: String = col!(6);
    let rows_copied: u64 = col!(7);
    let events_applied: u64 = col!(8);
    let phase: String = col!(9);
    let updated: String = col!(16);
    let fence = Fence {
        copy_done: copy_done != 0,
        last_key: parse_key(last_key, None)?,
        position: (!file.is_empty()).then_some(Position { file, pos }),
        gtid,
        rows_copied,
        events_applied,
    };
    let error_text: Option<String> = col!(14);
    let error_kind: Option<String> = col!(15);
    let view = ViewUpdate {
        // An unknown phase (a newer copier's) reads as failed: never as healthy.
        phase: Phase::parse(&phase).unwrap_or(Phase::Failed),
        rows_total: col!(10),
        rows_per_sec: col!(11),
        lag_events: col!(12),
        lag_seconds: col!(13),
        error: error_text.map(|text| (error_kind.unwrap_or_default(), text)),
    };
    let updated_at =
        chrono::DateTime::parse_from_rfc3339(&updated).map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_default();
    Ok(StoredStream { table, source_shard, fence, view, updated_at })
}

/// A stored last key: the key's cells (`[{"uint":7},{"text":"ab"}]`), or
/// the object by column name an earlier copier wrote
/// (`{"database_id":7,"fingerprint":"ab"}`), read through the table's key
/// columns when `copied` is given (`status` has no table and does not need
/// the key: it shows no key, it reads such a fence as covering nothing).
fn parse_key(last_key: Option<String>, copied: Option<&CopiedTable>) -> Result<Option<Key>, CopierError> {
    let Some(json) = last_key else { return Ok(None) };
    let not_a_key = |why: String| unexpected(format!("last_key {json:?} is not a key: {why}"));
    let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| not_a_key(e.to_string()))?;
    let serde_json::Value::Object(named) = &value else {
        return serde_json::from_value(value).map(Some).map_err(|e| not_a_key(e.to_string()));
    };
    let Some(copied) = copied else { return Ok(None) };
    let mut cells = Vec::new();
    for (&p, name) in copied.key.iter().zip(copied.key_names()) {
        let v = named.get(name).ok_or_else(|| not_a_key(format!("no {name}")))?;
        let cell = match (copied.columns[p].kind, v) {
            (crate::row::Kind::UInt { .. }, serde_json::Value::Number(n)) => n.as_u64().map(Cell::UInt),
            (crate::row::Kind::Int { .. }, serde_json::Value::Number(n)) => n.as_i64().map(Cell::Int),
            (crate::row::Kind::Text, serde_json::Value::String(s)) => Some(Cell::Text(s.clone())),
            _ => None,
        };
        cells.push(cell.ok_or_else(|| not_a_key(format!("{name}: {v}")))?);
    }
    Ok(Some(Key(cells)))
}

/// Forgets a stream on every target shard, so the next `start` copies it from scratch.
pub async fn reset(pools: &[Pool], table: &str, source_shard: &str) -> Result<u64, CopierError> {
    let mut removed = 0;
    for pool in pools {
        let mut conn = pool.get_conn().await?;
        conn.exec_drop(
            "DELETE FROM dw_copier_streams WHERE table_name = ? AND source_shard = ?",
            (table, source_shard),
        )
        .await?;
        removed += conn.affected_rows();
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u64) -> Key {
        Key(vec![Cell::UInt(id), Cell::Text("f".into())])
    }

    #[test]
    fn last_keys_are_read_as_written_and_as_an_earlier_copier_wrote_them() {
        let table = crate::table::tests::insights();
        let written = serde_json::to_string(&key(7)).expect("json");
        assert_eq!(parse_key(Some(written), Some(&table)).expect("cells"), Some(key(7)));
        let legacy = r#"{"database_id":7,"fingerprint":"f"}"#.to_owned();
        assert_eq!(parse_key(Some(legacy.clone()), Some(&table)).expect("legacy"), Some(key(7)));
        assert_eq!(parse_key(Some(legacy), None).expect("status"), None);
        assert!(parse_key(Some("[1]".into()), Some(&table)).is_err());
    }

    #[test]
    fn fences_cover_keys_up_to_the_last_copied_one() {
        let empty = Fence::default();
        assert!(!empty.covers(&key(0)));
        assert!(!empty.covers_any());
        let partial = Fence { last_key: Some(key(10)), ..Fence::default() };
        assert!(partial.covers(&key(10)));
        assert!(!partial.covers(&key(11)));
        let done = Fence { copy_done: true, ..Fence::default() };
        assert!(done.covers(&key(u64::MAX)));
    }

    #[test]
    fn fences_skip_transactions_at_or_before_their_position() {
        let p = |pos| Position { file: "binlog.000002".into(), pos };
        let fence = Fence { position: Some(p(500)), ..Fence::default() };
        assert!(fence.has_applied(&p(500)));
        assert!(fence.has_applied(&Position { file: "binlog.000001".into(), pos: 9000 }));
        assert!(!fence.has_applied(&p(501)));
        assert!(!Fence::default().has_applied(&p(4)));
    }
}
