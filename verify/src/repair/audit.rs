//! The repair's state and audit (`dw_verify_repairs`, DDL in
//! `cluster::job_tables`, in the new cluster's control database beside the
//! comparators' history): one row per key of a run and direction, written
//! `pending` before anything is touched, `applying` with the target's
//! before-digest just before the target commits, then `repaired` (or
//! `equal`, `waiting`, `skipped`) with the after-digest. A repair started
//! again skips keys already `repaired` or `equal`; a key left `applying` by
//! a crash is looked at again (its rows are re-read, never trusted from the
//! audit) and keeps its first before-digest.

use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use serde::Serialize;

use crate::error::VerifyError;
use crate::spec::datetime;

/// A key's repair state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Recorded, not yet looked at.
    Pending,
    /// The target's transaction was about to commit (a crash leaves it here).
    Applying,
    /// Rewritten from the source.
    Repaired,
    /// Source and target already agreed (repaired before, or by the stream).
    Equal,
    /// The fences never lined up within the wait: run the repair again.
    Waiting,
    /// Not repaired: its window is not settled on both clusters, or the key is not one the repair can place.
    Skipped,
}

impl KeyState {
    pub const ALL: [KeyState; 6] = [
        KeyState::Pending,
        KeyState::Applying,
        KeyState::Repaired,
        KeyState::Equal,
        KeyState::Waiting,
        KeyState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Applying => "applying",
            KeyState::Repaired => "repaired",
            KeyState::Equal => "equal",
            KeyState::Waiting => "waiting",
            KeyState::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Nothing left to do for the key.
    pub fn is_final(self) -> bool {
        matches!(self, KeyState::Repaired | KeyState::Equal)
    }
}

/// One audit row, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepairRecord {
    pub run_id: u64,
    /// The authoritative cluster (`old` or `new`).
    pub source: String,
    pub tbl: String,
    pub window_start: Option<i64>,
    pub key: String,
    pub kinds: String,
    pub state: KeyState,
    pub action: Option<String>,
    pub before_digest: Option<String>,
    pub after_digest: Option<String>,
    pub fences: Option<serde_json::Value>,
    pub reverify_run_id: Option<u64>,
    pub detail: Option<String>,
    /// Epoch milliseconds.
    pub updated_at_ms: i64,
}

/// A key to record as pending.
#[derive(Debug, Clone)]
pub(crate) struct PendingKey<'a> {
    pub(crate) tbl: &'a str,
    pub(crate) window_start: Option<i64>,
    pub(crate) key: &'a str,
    pub(crate) kinds: String,
}

/// Records `keys` as pending unless they already have a row (a resumed repair).
pub(crate) async fn record_pending(
    pool: &Pool,
    run_id: u64,
    source: &str,
    keys: &[PendingKey<'_>],
) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    for chunk in keys.chunks(200) {
        let mut params: Vec<mysql_async::Value> = Vec::with_capacity(chunk.len() * 5);
        let values: Vec<String> = chunk
            .iter()
            .map(|k| {
                params.extend([k.tbl.into(), k.key.into(), k.key.into(), k.kinds.clone().into()]);
                format!(
                    "({run_id}, '{source}', ?, SHA2(?, 256), {}, ?, ?, 'pending', UTC_TIMESTAMP(3))",
                    k.window_start.map_or("NULL".to_string(), datetime)
                )
            })
            .collect();
        conn.exec_drop(
            format!(
                "INSERT IGNORE INTO dw_verify_repairs (run_id, source, tbl, key_id, window_start, key_text, kinds, \
                 state, updated_at) VALUES {}",
                values.join(", ")
            ),
            params,
        )
        .await
        .map_err(VerifyError::Control)?;
    }
    Ok(())
}

/// What happened to one key.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyUpdate {
    pub(crate) state: Option<KeyState>,
    pub(crate) action: Option<String>,
    pub(crate) before_digest: Option<String>,
    pub(crate) after_digest: Option<String>,
    pub(crate) fences: Option<serde_json::Value>,
    pub(crate) detail: Option<String>,
}

/// Updates a key's row; the before-digest is only ever set once.
pub(crate) async fn update(
    pool: &Pool,
    run_id: u64,
    source: &str,
    tbl: &str,
    key: &str,
    u: &KeyUpdate,
) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    conn.exec_drop(
        "UPDATE dw_verify_repairs SET state = IFNULL(?, state), action = IFNULL(?, action), \
         before_digest = IFNULL(before_digest, ?), after_digest = IFNULL(?, after_digest), \
         fences = IFNULL(?, fences), detail = ?, updated_at = UTC_TIMESTAMP(3) \
         WHERE run_id = ? AND source = ? AND tbl = ? AND key_id = SHA2(?, 256)",
        (
            u.state.map(KeyState::as_str),
            u.action.as_deref(),
            u.before_digest.as_deref(),
            u.after_digest.as_deref(),
            u.fences.as_ref().map(ToString::to_string),
            u.detail.as_deref(),
            run_id,
            source,
            tbl,
            key,
        ),
    )
    .await
    .map_err(VerifyError::Control)
}

/// Records the run that re-verified the repaired keys of `tbl` (and `window_start`, if windowed).
pub(crate) async fn set_reverified(
    pool: &Pool,
    run_id: u64,
    source: &str,
    tbl: &str,
    window_start: Option<i64>,
    reverify_run_id: u64,
) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let window = match window_start {
        Some(w) => format!("window_start = {}", datetime(w)),
        None => "window_start IS NULL".to_string(),
    };
    conn.exec_drop(
        format!(
            "UPDATE dw_verify_repairs SET reverify_run_id = ? WHERE run_id = ? AND source = ? AND tbl = ? AND {window} \
             AND state = 'repaired'"
        ),
        (reverify_run_id, run_id, source, tbl),
    )
    .await
    .map_err(VerifyError::Control)
}

const COLUMNS: &str = "run_id, source, tbl, TIMESTAMPDIFF(SECOND, '1970-01-01', window_start), key_text, kinds, \
    state, action, before_digest, after_digest, fences, reverify_run_id, detail, \
    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', updated_at) DIV 1000";

fn record(mut row: mysql_async::Row) -> Result<RepairRecord, VerifyError> {
    let bad = |i: usize| VerifyError::Unexpected(format!("dw_verify_repairs: column {i} missing or mistyped"));
    macro_rules! col {
        ($i:expr) => {
            row.take_opt($i).and_then(Result::ok).ok_or_else(|| bad($i))?
        };
    }
    let state: String = col!(6);
    let fences: Option<String> = col!(10);
    Ok(RepairRecord {
        run_id: col!(0),
        source: col!(1),
        tbl: col!(2),
        window_start: col!(3),
        key: col!(4),
        kinds: col!(5),
        state: KeyState::parse(&state)
            .ok_or_else(|| VerifyError::Unexpected(format!("dw_verify_repairs: state {state:?}")))?,
        action: col!(7),
        before_digest: col!(8),
        after_digest: col!(9),
        fences: fences.and_then(|f| serde_json::from_str(&f).ok()),
        reverify_run_id: col!(11),
        detail: col!(12),
        updated_at_ms: col!(13),
    })
}

/// Every key of a run's repair in `source`'s direction.
pub async fn keys_of_run(pool: &Pool, run_id: u64, source: &str) -> Result<Vec<RepairRecord>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            format!("SELECT {COLUMNS} FROM dw_verify_repairs WHERE run_id = ? AND source = ? ORDER BY tbl, window_start, key_text"),
            (run_id, source),
        )
        .await
        .map_err(VerifyError::Control)?;
    rows.into_iter().map(record).collect()
}

/// The newest `limit` audit rows of keys a repair touched (any state but
/// pending), newest first; none when no repair ever ran here.
pub async fn recent(pool: &Pool, limit: u32) -> Result<Vec<RepairRecord>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let rows: Result<Vec<mysql_async::Row>, _> = conn
        .query(format!(
            "SELECT {COLUMNS} FROM dw_verify_repairs WHERE state <> 'pending' ORDER BY updated_at DESC, tbl, key_text \
             LIMIT {limit}"
        ))
        .await;
    match rows {
        Err(mysql_async::Error::Server(e)) if e.code == cluster::retry::ER_NO_SUCH_TABLE => Ok(Vec::new()),
        rows => rows.map_err(VerifyError::Control)?.into_iter().map(record).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_stored_names() {
        for state in KeyState::ALL {
            assert_eq!(KeyState::parse(state.as_str()), Some(state));
        }
        assert!(KeyState::Repaired.is_final() && KeyState::Equal.is_final());
        assert!(!KeyState::Applying.is_final() && !KeyState::Waiting.is_final());
    }
}
