//! The comparators' history, in the new cluster's control database: runs,
//! the latest state of every window, every differing key, and the full
//! diff's resume point. Cutover reads it through [`latest_finished_run`]
//! and [`open_differences`]; the next run reads it to skip windows already
//! proven equal.

use std::collections::BTreeMap;

use cluster::retry::ER_NO_SUCH_TABLE;
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use serde::Serialize;

use crate::diff::{DiffKind, Difference};
use crate::error::VerifyError;
use crate::spec::datetime;

/// Creates the history tables (`cluster::job_tables::VERIFY_TABLES`) where missing.
pub async fn ensure_tables(pool: &Pool) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    cluster::schema::create_missing(&mut conn, &cluster::job_tables::VERIFY_TABLES)
        .await
        .map_err(VerifyError::Control)?;
    Ok(())
}

/// A window's state on both clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowVerdict {
    Equal,
    Different,
    NotSettled,
    NotCovered,
}

impl WindowVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowVerdict::Equal => "equal",
            WindowVerdict::Different => "different",
            WindowVerdict::NotSettled => "not_settled",
            WindowVerdict::NotCovered => "not_covered",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [WindowVerdict::Equal, WindowVerdict::Different, WindowVerdict::NotSettled, WindowVerdict::NotCovered]
            .into_iter()
            .find(|v| v.as_str() == text)
    }
}

/// How a run ended (or that it has not yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Started and not finished (or interrupted: `error` says so).
    #[default]
    Running,
    /// Every compared window (or the whole table) is equal.
    Equal,
    /// At least one difference was found.
    Different,
    /// The run could not finish; `error` says why.
    Error,
}

impl RunOutcome {
    /// Every outcome.
    pub const ALL: [RunOutcome; 4] = [RunOutcome::Running, RunOutcome::Equal, RunOutcome::Different, RunOutcome::Error];

    /// The name stored in `dw_verify_runs.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Equal => "equal",
            RunOutcome::Different => "different",
            RunOutcome::Error => "error",
        }
    }

    /// The outcome a stored name stands for.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == text)
    }

    /// The outcome of a run that got to its end: different if anything differed.
    pub fn of_finished(differences_found: bool) -> Self {
        if differences_found {
            RunOutcome::Different
        } else {
            RunOutcome::Equal
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run's outcome and counts, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunRecord {
    pub run_id: u64,
    pub kind: String,
    pub target: String,
    pub old_cluster: String,
    pub new_cluster: String,
    /// Epoch milliseconds.
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub outcome: RunOutcome,
    pub windows_equal: u64,
    pub windows_different: u64,
    pub windows_not_settled: u64,
    pub windows_not_covered: u64,
    pub rows_compared: u64,
    pub differences: u64,
    pub error: Option<String>,
    pub windows_checked: u64,
    pub windows_reused: u64,
    pub duration_ms: u64,
}

/// A window's latest state, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowRecord {
    pub tbl: String,
    pub window_start: i64,
    pub window_end: i64,
    pub state: WindowVerdict,
    pub old_rows: Option<u64>,
    pub new_rows: Option<u64>,
    pub run_id: u64,
    pub differences: u64,
    /// Late-message counts of the run that checked it (for re-check decisions).
    #[serde(skip)]
    pub late: (u64, u64),
    /// The (old, new) clusters of the run that checked it.
    #[serde(skip)]
    pub clusters: (String, String),
}

/// A recorded difference with the run that found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredDifference {
    pub run_id: u64,
    #[serde(flatten)]
    pub difference: Difference,
}

/// Opens a run (outcome `running`).
pub async fn start_run(
    pool: &Pool,
    kind: &str,
    target: &str,
    old: &str,
    new: &str,
    late: (u64, u64),
    range: Option<(i64, i64)>,
) -> Result<u64, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let (from, to) = match range {
        Some((from, to)) => (datetime(from), datetime(to)),
        None => ("NULL".to_string(), "NULL".to_string()),
    };
    conn.exec_drop(
        format!(
            "INSERT INTO dw_verify_runs (kind, target, old_cluster, new_cluster, started_at, outcome, late_old, late_new, \
             range_from, range_to) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(3), 'running', ?, ?, {from}, {to})"
        ),
        (kind, target, old, new, late.0, late.1),
    )
    .await
    .map_err(VerifyError::Control)?;
    Ok(conn.last_insert_id().unwrap_or(0))
}

/// Closes a run with its outcome and counts.
pub async fn finish_run(pool: &Pool, run: &RunRecord) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    conn.exec_drop(
        "UPDATE dw_verify_runs SET finished_at = UTC_TIMESTAMP(3), outcome = ?, windows_equal = ?, \
         windows_different = ?, windows_not_settled = ?, windows_not_covered = ?, rows_compared = ?, differences = ?, \
         error = ?, windows_checked = ?, windows_reused = ?, duration_ms = ? WHERE run_id = ?",
        (
            run.outcome.as_str(),
            run.windows_equal,
            run.windows_different,
            run.windows_not_settled,
            run.windows_not_covered,
            run.rows_compared,
            run.differences,
            run.error.as_deref(),
            run.windows_checked,
            run.windows_reused,
            run.duration_ms,
            run.run_id,
        ),
    )
    .await
    .map_err(VerifyError::Control)
}

const RUN_COLUMNS: &str = "run_id, kind, target, old_cluster, new_cluster, \
    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', started_at) DIV 1000, \
    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', finished_at) DIV 1000, outcome, IFNULL(windows_equal, 0), \
    IFNULL(windows_different, 0), IFNULL(windows_not_settled, 0), IFNULL(windows_not_covered, 0), \
    IFNULL(rows_compared, 0), IFNULL(differences, 0), error, IFNULL(windows_checked, 0), IFNULL(windows_reused, 0), \
    IFNULL(duration_ms, 0)";

fn run_from_row(mut row: mysql_async::Row) -> Result<RunRecord, VerifyError> {
    let bad = |i: usize| VerifyError::Unexpected(format!("dw_verify_runs: column {i} missing or mistyped"));
    macro_rules! col {
        ($i:expr) => {
            row.take_opt($i).and_then(Result::ok).ok_or_else(|| bad($i))?
        };
    }
    Ok(RunRecord {
        run_id: col!(0),
        kind: col!(1),
        target: col!(2),
        old_cluster: col!(3),
        new_cluster: col!(4),
        started_at_ms: col!(5),
        finished_at_ms: col!(6),
        outcome: {
            let text: String = col!(7);
            RunOutcome::parse(&text)
                .ok_or_else(|| VerifyError::Unexpected(format!("dw_verify_runs: outcome {text:?}")))?
        },
        windows_equal: col!(8),
        windows_different: col!(9),
        windows_not_settled: col!(10),
        windows_not_covered: col!(11),
        rows_compared: col!(12),
        differences: col!(13),
        error: col!(14),
        windows_checked: col!(15),
        windows_reused: col!(16),
        duration_ms: col!(17),
    })
}

/// The newest run of `kind` (`windows` or `table`) on `target` (`windows` or
/// the table name), whatever its outcome.
pub async fn latest_run(pool: &Pool, kind: &str, target: &str) -> Result<Option<RunRecord>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let row: Option<mysql_async::Row> = conn
        .exec_first(
            format!(
                "SELECT {RUN_COLUMNS} FROM dw_verify_runs WHERE kind = ? AND target = ? ORDER BY run_id DESC LIMIT 1"
            ),
            (kind, target),
        )
        .await
        .map_err(VerifyError::Control)?;
    row.map(run_from_row).transpose()
}

/// The newest *finished* run of `kind` on `target` (outcome equal,
/// different or error; never one still running): what cutover's gates
/// judge. `None` when there is none, also when the comparators never ran
/// against this control database (no history tables).
pub async fn latest_finished_run(pool: &Pool, kind: &str, target: &str) -> Result<Option<RunRecord>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let row: Result<Option<mysql_async::Row>, _> = conn
        .exec_first(
            format!(
                "SELECT {RUN_COLUMNS} FROM dw_verify_runs WHERE kind = ? AND target = ? AND finished_at IS NOT NULL \
                 AND outcome <> 'running' ORDER BY finished_at DESC, run_id DESC LIMIT 1"
            ),
            (kind, target),
        )
        .await;
    match row {
        Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE => Ok(None),
        row => row.map_err(VerifyError::Control)?.map(run_from_row).transpose(),
    }
}

/// A run by id.
pub async fn run(pool: &Pool, run_id: u64) -> Result<Option<RunRecord>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let row: Option<mysql_async::Row> = conn
        .exec_first(format!("SELECT {RUN_COLUMNS} FROM dw_verify_runs WHERE run_id = ?"), (run_id,))
        .await
        .map_err(VerifyError::Control)?;
    row.map(run_from_row).transpose()
}

/// A window currently marked different (one of [`DifferentWindows::first`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowRef {
    pub tbl: String,
    /// Seconds since the epoch.
    pub window_start: i64,
    /// The run that found it different.
    pub run_id: u64,
}

/// Windows whose latest state is `different`: how many, and the oldest few.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DifferentWindows {
    pub count: u64,
    pub first: Vec<WindowRef>,
}

/// Every window currently marked different (any table), with the oldest `limit`.
pub async fn different_windows(pool: &Pool, limit: u32) -> Result<DifferentWindows, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let count: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM dw_verify_windows WHERE state = 'different'")
        .await
        .map_err(VerifyError::Control)?;
    let first: Vec<(String, i64, u64)> = conn
        .exec(
            "SELECT tbl, TIMESTAMPDIFF(SECOND, '1970-01-01', window_start), run_id FROM dw_verify_windows \
             WHERE state = 'different' ORDER BY window_start, tbl LIMIT ?",
            (limit,),
        )
        .await
        .map_err(VerifyError::Control)?;
    Ok(DifferentWindows {
        count: count.unwrap_or(0),
        first: first.into_iter().map(|(tbl, window_start, run_id)| WindowRef { tbl, window_start, run_id }).collect(),
    })
}

/// A `dw_verify_windows` row joined with its run's late-message counts.
type WindowRow = (String, i64, i64, String, Option<u64>, Option<u64>, u64, u64, u64, u64, String, String);

/// The latest state of every window of `tbl` starting in `[from, to)`;
/// none when the comparators never ran against this control database.
pub async fn windows(pool: &Pool, tbl: &str, from: i64, to: i64) -> Result<BTreeMap<i64, WindowRecord>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let rows: Result<Vec<mysql_async::Row>, _> = conn
        .exec(
            format!(
                "SELECT w.tbl, TIMESTAMPDIFF(SECOND, '1970-01-01', w.window_start), \
                 TIMESTAMPDIFF(SECOND, '1970-01-01', w.window_end), w.state, w.old_rows, w.new_rows, w.run_id, \
                 w.differences, IFNULL(r.late_old, 0), IFNULL(r.late_new, 0), IFNULL(r.old_cluster, ''), \
                 IFNULL(r.new_cluster, '') \
                 FROM dw_verify_windows w LEFT JOIN dw_verify_runs r ON r.run_id = w.run_id \
                 WHERE w.tbl = ? AND w.window_start >= {} AND w.window_start < {} ORDER BY w.window_start",
                datetime(from),
                datetime(to)
            ),
            (tbl,),
        )
        .await;
    let rows = match rows {
        Err(mysql_async::Error::Server(e)) if e.code == ER_NO_SUCH_TABLE => return Ok(BTreeMap::new()),
        rows => rows.map_err(VerifyError::Control)?,
    };
    let mut out = BTreeMap::new();
    for row in rows {
        let (tbl, start, end, state, old_rows, new_rows, run_id, differences, late_old, late_new, old, new): WindowRow =
            mysql_async::from_row_opt(row).map_err(|e| VerifyError::Unexpected(format!("dw_verify_windows: {e}")))?;
        let state = WindowVerdict::parse(&state)
            .ok_or_else(|| VerifyError::Unexpected(format!("dw_verify_windows: state {state:?}")))?;
        out.insert(
            start,
            WindowRecord {
                tbl,
                window_start: start,
                window_end: end,
                state,
                old_rows,
                new_rows,
                run_id,
                differences,
                late: (late_old, late_new),
                clusters: (old, new),
            },
        );
    }
    Ok(out)
}

/// What a run learned about one window.
#[derive(Debug, Clone)]
pub struct WindowResult {
    pub tbl: String,
    pub window_start: i64,
    pub window_end: i64,
    pub state: WindowVerdict,
    pub old_rows: Option<u64>,
    pub new_rows: Option<u64>,
    pub old_digest: Option<String>,
    pub new_digest: Option<String>,
    pub differences: u64,
}

impl WindowResult {
    /// A window recorded without digesting it (reused proof, or not comparable now).
    pub fn without_digest(
        tbl: impl Into<String>,
        window_start: i64,
        size: i64,
        state: WindowVerdict,
        (old_rows, new_rows): (Option<u64>, Option<u64>),
    ) -> Self {
        Self {
            tbl: tbl.into(),
            window_start,
            window_end: window_start + size,
            state,
            old_rows,
            new_rows,
            old_digest: None,
            new_digest: None,
            differences: 0,
        }
    }
}

/// Records the latest state of `results` (one statement per 500 windows).
pub async fn save_windows(pool: &Pool, run_id: u64, results: &[WindowResult]) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let text = |v: &Option<String>| v.as_ref().map_or("NULL".to_string(), |s| format!("'{s}'"));
    let num = |v: Option<u64>| v.map_or("NULL".to_string(), |n| n.to_string());
    for chunk in results.chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|w| {
                format!(
                    "('{}', {}, {}, '{}', {}, {}, {run_id}, UTC_TIMESTAMP(3), {}, {}, {})",
                    w.tbl,
                    datetime(w.window_start),
                    datetime(w.window_end),
                    w.state.as_str(),
                    num(w.old_rows),
                    num(w.new_rows),
                    text(&w.old_digest),
                    text(&w.new_digest),
                    w.differences
                )
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO dw_verify_windows (tbl, window_start, window_end, state, old_rows, new_rows, run_id, \
             checked_at, old_digest, new_digest, differences) VALUES {} ON DUPLICATE KEY UPDATE \
             window_end = VALUES(window_end), state = VALUES(state), old_rows = VALUES(old_rows), \
             new_rows = VALUES(new_rows), run_id = VALUES(run_id), checked_at = VALUES(checked_at), \
             old_digest = VALUES(old_digest), new_digest = VALUES(new_digest), differences = VALUES(differences)",
            values.join(", ")
        ))
        .await
        .map_err(VerifyError::Control)?;
    }
    Ok(())
}

/// Records every difference of a run (one statement per 200 differences).
pub async fn save_differences(pool: &Pool, run_id: u64, differences: &[Difference]) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    insert_differences(&mut conn, run_id, differences).await
}

async fn insert_differences<Q: Queryable + Send>(
    conn: &mut Q,
    run_id: u64,
    differences: &[Difference],
) -> Result<(), VerifyError> {
    for chunk in differences.chunks(200) {
        let mut params: Vec<mysql_async::Value> = Vec::with_capacity(chunk.len() * 3);
        let values: Vec<String> = chunk
            .iter()
            .map(|d| {
                params.push(d.key.clone().into());
                params.push(d.kind.as_str().into());
                params.push(d.detail.to_string().into());
                format!("({run_id}, '{}', {}, ?, ?, ?)", d.tbl, d.window_start.map_or("NULL".to_string(), datetime))
            })
            .collect();
        conn.exec_drop(
            format!(
                "INSERT INTO dw_verify_differences (run_id, tbl, window_start, key_text, kind, detail) VALUES {}",
                values.join(", ")
            ),
            params,
        )
        .await
        .map_err(VerifyError::Control)?;
    }
    Ok(())
}

fn difference_from_row(row: mysql_async::Row) -> Result<StoredDifference, VerifyError> {
    let (run_id, tbl, window_start, key, kind, detail): (u64, String, Option<i64>, String, String, String) =
        mysql_async::from_row_opt(row).map_err(|e| VerifyError::Unexpected(format!("dw_verify_differences: {e}")))?;
    let kind = DiffKind::parse(&kind)
        .ok_or_else(|| VerifyError::Unexpected(format!("dw_verify_differences: kind {kind:?}")))?;
    let detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail));
    Ok(StoredDifference { run_id, difference: Difference { tbl, window_start, key, kind, detail } })
}

const DIFFERENCE_COLUMNS: &str =
    "d.run_id, d.tbl, TIMESTAMPDIFF(SECOND, '1970-01-01', d.window_start), d.key_text, d.kind, d.detail";

/// The differences of one run.
pub async fn differences_of_run(pool: &Pool, run_id: u64) -> Result<Vec<StoredDifference>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let rows: Vec<mysql_async::Row> = conn
        .exec(
            format!("SELECT {DIFFERENCE_COLUMNS} FROM dw_verify_differences d WHERE d.run_id = ? ORDER BY d.id"),
            (run_id,),
        )
        .await
        .map_err(VerifyError::Control)?;
    rows.into_iter().map(difference_from_row).collect()
}

/// Every difference still open: those of windows whose latest state is
/// `different` (as found by the run that set that state), and those of the
/// latest full diff of each unbounded table when it ended `different`.
pub async fn open_differences(pool: &Pool) -> Result<Vec<StoredDifference>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let mut rows: Vec<mysql_async::Row> = conn
        .query(format!(
            "SELECT {DIFFERENCE_COLUMNS} FROM dw_verify_differences d JOIN dw_verify_windows w \
             ON w.tbl = d.tbl AND w.window_start = d.window_start AND w.run_id = d.run_id \
             WHERE w.state = 'different' ORDER BY d.tbl, d.window_start, d.id"
        ))
        .await
        .map_err(VerifyError::Control)?;
    let tables: Vec<mysql_async::Row> = conn
        .query(format!(
            "SELECT {DIFFERENCE_COLUMNS} FROM dw_verify_differences d JOIN dw_verify_runs r ON r.run_id = d.run_id \
             WHERE d.window_start IS NULL AND r.outcome = 'different' AND r.run_id = (SELECT MAX(l.run_id) FROM \
             dw_verify_runs l WHERE l.kind = 'table' AND l.target = r.target AND l.outcome <> 'running') ORDER BY d.id"
        ))
        .await
        .map_err(VerifyError::Control)?;
    rows.extend(tables);
    rows.into_iter().map(difference_from_row).collect()
}

/// The most recent runs, newest first.
pub async fn recent_runs(pool: &Pool, limit: u32) -> Result<Vec<RunRecord>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let rows: Vec<mysql_async::Row> = conn
        .query(format!("SELECT {RUN_COLUMNS} FROM dw_verify_runs ORDER BY run_id DESC LIMIT {limit}"))
        .await
        .map_err(VerifyError::Control)?;
    rows.into_iter().map(run_from_row).collect()
}

/// Where an unbounded table's diff stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct TableProgress {
    pub run_id: u64,
    pub resume_key: Option<Vec<String>>,
    pub rows_compared: u64,
    pub differences: u64,
    pub done: bool,
}

pub async fn table_progress(
    pool: &Pool,
    tbl: &str,
    old: &str,
    new: &str,
) -> Result<Option<TableProgress>, VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let row: Option<(u64, Option<String>, u64, u64, u8)> = conn
        .exec_first(
            "SELECT run_id, resume_key, rows_compared, differences, done FROM dw_verify_table_progress \
             WHERE tbl = ? AND old_cluster = ? AND new_cluster = ?",
            (tbl, old, new),
        )
        .await
        .map_err(VerifyError::Control)?;
    Ok(row.map(|(run_id, key, rows_compared, differences, done)| TableProgress {
        run_id,
        resume_key: key.and_then(|k| serde_json::from_str(&k).ok()),
        rows_compared,
        differences,
        done: done != 0,
    }))
}

/// Records the differences found since the last checkpoint and the new
/// resume point in one transaction, so a crash between the two can neither
/// lose a difference nor record one twice. After a recheck, the run's stored
/// differences of the keys in `forget` (key texts) are replaced by these.
pub async fn checkpoint_table(
    pool: &Pool,
    tbl: &str,
    old: &str,
    new: &str,
    progress: &TableProgress,
    forget: &[String],
    differences: &[Difference],
) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    let mut tx = conn.start_transaction(mysql_async::TxOpts::default()).await.map_err(VerifyError::Control)?;
    for chunk in forget.chunks(200) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let mut params: Vec<mysql_async::Value> = vec![progress.run_id.into(), tbl.into()];
        params.extend(chunk.iter().map(|k| k.as_str().into()));
        tx.exec_drop(
            format!("DELETE FROM dw_verify_differences WHERE run_id = ? AND tbl = ? AND key_text IN ({marks})"),
            params,
        )
        .await
        .map_err(VerifyError::Control)?;
    }
    insert_differences(&mut tx, progress.run_id, differences).await?;
    let key = progress.resume_key.as_ref().map(|k| serde_json::Value::from(k.clone()).to_string());
    tx.exec_drop(
        "INSERT INTO dw_verify_table_progress (tbl, old_cluster, new_cluster, run_id, resume_key, rows_compared, \
         differences, done, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE \
         run_id = VALUES(run_id), resume_key = VALUES(resume_key), rows_compared = VALUES(rows_compared), \
         differences = VALUES(differences), done = VALUES(done), updated_at = VALUES(updated_at)",
        (tbl, old, new, progress.run_id, key, progress.rows_compared, progress.differences, u8::from(progress.done)),
    )
    .await
    .map_err(VerifyError::Control)?;
    tx.commit().await.map_err(VerifyError::Control)
}

/// Reopens an interrupted run to continue it.
pub async fn reopen_run(pool: &Pool, run_id: u64) -> Result<(), VerifyError> {
    let mut conn = pool.get_conn().await.map_err(VerifyError::Control)?;
    conn.exec_drop(
        "UPDATE dw_verify_runs SET outcome = 'running', finished_at = NULL, error = NULL WHERE run_id = ?",
        (run_id,),
    )
    .await
    .map_err(VerifyError::Control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_their_stored_names() {
        for outcome in RunOutcome::ALL {
            assert_eq!(RunOutcome::parse(outcome.as_str()), Some(outcome));
            assert_eq!(serde_json::to_string(&outcome).expect("json"), format!("\"{outcome}\""));
        }
        assert_eq!(RunOutcome::parse("EQUAL"), None);
        assert_eq!(RunOutcome::of_finished(true), RunOutcome::Different);
        assert_eq!(RunOutcome::of_finished(false), RunOutcome::Equal);
    }
}
