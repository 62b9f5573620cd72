//! Full diff of an unbounded (`latest`) table of the pipeline: every shard of each
//! side is read in primary-key order, page by page, and merged (k-way) into
//! one ordered stream per side; the two streams are compared key by key.
//! After each page the differences found and the last key compared are
//! committed together, so an interrupted run resumes where it stopped.
//!
//! Differences found are read again before the run ends ([`recheck`]): a
//! key written between the two sides' reads differs by lag alone.
//!
//! The merge compares keys as the shards order them: integers by value,
//! strings and datetimes by their bytes, which is the order of the binary
//! collations the store's tables use (`utf8mb4_bin`, `ascii_bin`).

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use mysql_async::prelude::Queryable;
use tokio_util::sync::CancellationToken;

use crate::diff::{diff_rows, placement, text_values, Difference, FetchedRow};
use crate::digest::Side;
use crate::error::VerifyError;
use crate::history::{self, RunOutcome, RunRecord, TableProgress};
use crate::spec::{hex_literal, unhex, Col, TableSpec};

/// One `table` run.
#[derive(Debug, Clone)]
pub struct TableConfig {
    pub old: ClusterConfig,
    pub new: ClusterConfig,
    pub table: TableSpec,
    /// Rows read per shard per query.
    pub page_rows: usize,
    /// Start from the first key even if an earlier run was interrupted.
    pub restart: bool,
    /// Stop (as if interrupted) after comparing this many rows in this
    /// process: lets tests and operators split a long diff over several runs.
    pub stop_after_rows: Option<u64>,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct TableOutcome {
    pub run: RunRecord,
    /// The differences found by this process (a resumed run's earlier ones are in the history).
    pub differences: Vec<Difference>,
    /// Whether the diff reached the end of both sides.
    pub complete: bool,
    /// Whether this process continued an interrupted run.
    pub resumed: bool,
}

type Key = Vec<Option<String>>;

/// One shard's ordered stream.
struct Cursor {
    shard: usize,
    buffer: VecDeque<FetchedRow>,
    /// Key of the last row fetched: the next page starts after it.
    after: Option<Key>,
    exhausted: bool,
}

fn compare_keys(table: &TableSpec, a: &Key, b: &Key) -> Ordering {
    for (pos, &col) in table.key.iter().enumerate() {
        let (x, y) = (a.get(pos).cloned().flatten(), b.get(pos).cloned().flatten());
        let ord = match table.columns[col].col {
            Col::Int => {
                let parse = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<i128>().ok());
                parse(&x).cmp(&parse(&y))
            }
            Col::Float | Col::Decimal => {
                let parse = |v: &Option<String>| v.as_deref().and_then(|s| s.parse::<f64>().ok());
                parse(&x).partial_cmp(&parse(&y)).unwrap_or(Ordering::Equal)
            }
            _ => x.as_deref().map(str::as_bytes).cmp(&y.as_deref().map(str::as_bytes)),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

fn key_of(table: &TableSpec, row: &FetchedRow) -> Key {
    table.key.iter().map(|&i| row.values.get(i).cloned().flatten()).collect()
}

/// SQL literal of a key value.
fn literal(col: Col, value: &Option<String>) -> Result<String, VerifyError> {
    let Some(v) = value else { return Ok("NULL".to_string()) };
    match col {
        Col::Int => v
            .parse::<i128>()
            .map(|n| n.to_string())
            .map_err(|_| VerifyError::Unexpected(format!("resume key value {v:?} is not an integer"))),
        // Checked as a number, then written as the server printed it (exact for a DECIMAL).
        Col::Float | Col::Decimal => match v.parse::<f64>() {
            Ok(_) if v.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) => {
                Ok(v.clone())
            }
            _ => Err(VerifyError::Unexpected(format!("resume key value {v:?} is not a number"))),
        },
        // Read as hex (`select_list`): compared as the bytes themselves.
        Col::Bytes => unhex(v)
            .map(|bytes| hex_literal(&bytes))
            .ok_or_else(|| VerifyError::Unexpected(format!("resume key value {v:?} is not hex"))),
        Col::Text | Col::DateTime => Ok(mysql_async::Value::from(v.as_str()).as_sql(false)),
    }
}

/// SQL: rows whose key is after `after`, in key order (lexicographic).
fn after_sql(table: &TableSpec, after: &Key) -> Result<String, VerifyError> {
    let mut alternatives = Vec::new();
    for pos in 0..table.key.len() {
        let mut parts = Vec::new();
        for (p, &col) in table.key.iter().enumerate().take(pos + 1) {
            let column = &table.columns[col];
            let (name, kind) = (&column.name, column.col);
            let value = literal(kind, &after.get(p).cloned().flatten())?;
            let op = if p == pos { ">" } else { "=" };
            parts.push(format!("{name} {op} {value}"));
        }
        alternatives.push(format!("({})", parts.join(" AND ")));
    }
    Ok(alternatives.join(" OR "))
}

async fn refill(side: &Side, table: &TableSpec, cursor: &mut Cursor, page: usize) -> Result<(), VerifyError> {
    if !cursor.buffer.is_empty() || cursor.exhausted {
        return Ok(());
    }
    let condition = match &cursor.after {
        Some(after) => after_sql(table, after)?,
        None => "TRUE".to_string(),
    };
    let order: Vec<&str> = table.key.iter().map(|&i| table.columns[i].name.as_str()).collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE {condition} ORDER BY {} LIMIT {page}",
        table.select_list(),
        table.name,
        order.join(", ")
    );
    let i = cursor.shard;
    let mut conn = side.conn(i).await?;
    let rows: Vec<mysql_async::Row> = conn.query(sql).await.map_err(|e| side.shard_error(i, e))?;
    cursor.exhausted = rows.len() < page;
    cursor.buffer.extend(rows.into_iter().map(|row| FetchedRow { shard: i, values: text_values(row) }));
    if let Some(last) = cursor.buffer.back() {
        cursor.after = Some(key_of(table, last));
    }
    Ok(())
}

/// Estimated rows on a side (InnoDB statistics), for progress and ETA.
async fn estimate_rows(side: &Side, table: &TableSpec) -> u64 {
    let mut total = 0;
    for i in 0..side.config.shards.len() {
        let Ok(mut conn) = side.pools.shard(i).get_conn().await else { continue };
        let rows: Result<Option<u64>, _> = conn
            .exec_first(
                "SELECT IFNULL(table_rows, 0) FROM information_schema.tables WHERE table_schema = DATABASE() \
                 AND table_name = ?",
                (table.name.as_str(),),
            )
            .await;
        total += rows.ok().flatten().unwrap_or(0);
    }
    total
}

/// Runs (or resumes) the full diff.
pub async fn run_table(config: &TableConfig, shutdown: &CancellationToken) -> Result<TableOutcome, VerifyError> {
    let mut old = Side::new(config.old.clone());
    let mut new = Side::new(config.new.clone());
    (old.shutdown, new.shutdown) = (shutdown.clone(), shutdown.clone());
    let result = run_with(config, &old, &new, shutdown).await;
    old.pools.disconnect().await;
    new.pools.disconnect().await;
    result
}

async fn run_with(
    config: &TableConfig,
    old: &Side,
    new: &Side,
    shutdown: &CancellationToken,
) -> Result<TableOutcome, VerifyError> {
    let table = &config.table;
    crate::spec::check_same_pipeline(&config.old, &config.new)?;
    if table.window.is_some() {
        return Err(VerifyError::Usage(format!("{} is windowed: use the windows command", table.name)));
    }
    let control = new.pools.control().ok_or_else(|| VerifyError::NoControl(new.name().to_string()))?;
    history::ensure_tables(control).await?;
    let previous = history::table_progress(control, &table.name, old.name(), new.name()).await?;
    let (mut progress, resumed) = match previous {
        Some(p) if !p.done && !config.restart => {
            history::reopen_run(control, p.run_id).await?;
            tracing::info!(table = %table.name, run_id = p.run_id, rows = p.rows_compared, "resuming full diff");
            (p, true)
        }
        _ => {
            let run_id =
                history::start_run(control, "table", &table.name, old.name(), new.name(), (0, 0), None).await?;
            (TableProgress { run_id, resume_key: None, rows_compared: 0, differences: 0, done: false }, false)
        }
    };
    let started = Instant::now();
    let outcome = match merge(config, old, new, control, &mut progress, shutdown).await {
        Ok((found, true)) if !found.is_empty() => {
            rechecked(old, new, table, control, &mut progress, found, shutdown).await.map(|d| (d, true))
        }
        other => other,
    };
    let (differences, complete, error) = match outcome {
        Ok((differences, complete)) => (differences, complete, None),
        Err(e) => (Vec::new(), false, Some(e)),
    };
    let mut run = history::run(control, progress.run_id).await?.unwrap_or_default();
    run.rows_compared = progress.rows_compared;
    run.differences = progress.differences;
    run.duration_ms = run.duration_ms.saturating_add(u64::try_from(started.elapsed().as_millis()).unwrap_or(0));
    run.outcome = match (&error, complete) {
        (Some(_), _) => RunOutcome::Error,
        (None, false) => RunOutcome::Running,
        (None, true) => RunOutcome::of_finished(progress.differences > 0),
    };
    run.error = error.as_ref().map(ToString::to_string).or_else(|| (!complete).then(|| "interrupted".to_string()));
    history::finish_run(control, &run).await?;
    if complete {
        crate::metrics::record_run(&run);
    }
    tracing::info!(
        table = %table.name,
        run_id = run.run_id,
        outcome = %run.outcome,
        rows = run.rows_compared,
        differences = run.differences,
        complete,
        "full diff stopped"
    );
    if let Some(e) = error {
        return Err(e);
    }
    Ok(TableOutcome { run, differences, complete, resumed })
}

/// The differences of a finished merge that stand once read again; the
/// run's stored differences and count follow. If the recheck cannot read
/// (a shard down), the differences stand as found.
async fn rechecked(
    old: &Side,
    new: &Side,
    table: &TableSpec,
    control: &mysql_async::Pool,
    progress: &mut TableProgress,
    found: Vec<Difference>,
    shutdown: &CancellationToken,
) -> Result<Vec<Difference>, VerifyError> {
    let keys: Vec<String> = found.iter().map(|d| d.key.clone()).collect();
    let count = found.len();
    let result = match recheck::recheck(old, new, table, found.clone(), shutdown).await {
        Ok(result) => result,
        Err(VerifyError::Cancelled) => return Err(VerifyError::Cancelled),
        Err(error) => {
            tracing::warn!(table = %table.name, %error, "cannot read the differing keys again: they stand as found");
            return Ok(found);
        }
    };
    tracing::info!(
        table = %table.name,
        found = keys.len(),
        resolved = result.resolved,
        moving = result.moving,
        different = result.different.len(),
        "differing keys read again"
    );
    let before = progress.differences;
    progress.differences = before.saturating_sub(count as u64) + result.different.len() as u64;
    history::checkpoint_table(control, &table.name, old.name(), new.name(), progress, &keys, &result.different).await?;
    Ok(result.different)
}

/// The merge loop; returns the differences found and whether it reached the end.
async fn merge(
    config: &TableConfig,
    old: &Side,
    new: &Side,
    control: &mysql_async::Pool,
    progress: &mut TableProgress,
    shutdown: &CancellationToken,
) -> Result<(Vec<Difference>, bool), VerifyError> {
    let table = &config.table;
    let page = config.page_rows.max(1);
    let cursors = |side: &Side| -> Vec<Cursor> {
        (0..side.config.shards.len())
            .map(|shard| Cursor {
                shard,
                buffer: VecDeque::new(),
                after: progress.resume_key.as_ref().map(|k| k.iter().cloned().map(Some).collect()),
                exhausted: false,
            })
            .collect()
    };
    let (mut old_cursors, mut new_cursors) = (cursors(old), cursors(new));
    let estimate = estimate_rows(old, table).await + estimate_rows(new, table).await;
    let bar = indicatif::ProgressBar::with_draw_target(Some(estimate), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} rows {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(table.name.clone());
    bar.set_position(progress.rows_compared);
    let started = Instant::now();
    let start_rows = progress.rows_compared;
    let mut last_log = Instant::now();
    let mut all = Vec::new();
    let mut pending = Vec::new();
    let mut since_checkpoint = 0usize;
    let mut this_process = 0u64;
    loop {
        for c in old_cursors.iter_mut() {
            refill(old, table, c, page).await?;
        }
        for c in new_cursors.iter_mut() {
            refill(new, table, c, page).await?;
        }
        let smallest = old_cursors
            .iter()
            .chain(new_cursors.iter())
            .filter_map(|c| c.buffer.front().map(|r| key_of(table, r)))
            .min_by(|a, b| compare_keys(table, a, b));
        let Some(key) = smallest else { break };
        let take = |cursors: &mut Vec<Cursor>| -> Vec<FetchedRow> {
            let mut rows = Vec::new();
            for c in cursors.iter_mut() {
                while c.buffer.front().is_some_and(|r| compare_keys(table, &key_of(table, r), &key).is_eq()) {
                    rows.extend(c.buffer.pop_front());
                }
            }
            rows
        };
        let (old_rows, new_rows) = (take(&mut old_cursors), take(&mut new_cursors));
        let before = pending.len();
        placement(table, &old.config, &old_rows, None, &mut pending);
        placement(table, &new.config, &new_rows, None, &mut pending);
        diff_rows(table, None, &old_rows, &new_rows, &mut pending);
        let n = u64::try_from(old_rows.len() + new_rows.len()).unwrap_or(0);
        progress.rows_compared += n;
        progress.differences += u64::try_from(pending.len() - before).unwrap_or(0);
        progress.resume_key = Some(key.into_iter().map(Option::unwrap_or_default).collect());
        this_process += n;
        since_checkpoint += old_rows.len() + new_rows.len();
        bar.set_position(progress.rows_compared);
        let stop = config.stop_after_rows.is_some_and(|limit| this_process >= limit) || shutdown.is_cancelled();
        if since_checkpoint >= page || stop {
            history::checkpoint_table(control, &table.name, old.name(), new.name(), progress, &[], &pending).await?;
            all.append(&mut pending);
            since_checkpoint = 0;
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            let done = progress.rows_compared - start_rows;
            let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
            let left = estimate.saturating_sub(progress.rows_compared) as f64;
            tracing::info!(
                table = %table.name,
                rows = progress.rows_compared,
                estimate,
                rows_per_sec = rate.round(),
                eta_secs = (left / rate.max(1.0)).round(),
                differences = progress.differences,
                "full diff progress"
            );
        }
        if stop {
            bar.abandon();
            return Ok((all, false));
        }
    }
    progress.done = true;
    history::checkpoint_table(control, &table.name, old.name(), new.name(), progress, &[], &pending).await?;
    all.append(&mut pending);
    bar.finish_and_clear();
    Ok((all, true))
}

mod recheck;
#[cfg(test)]
mod tests;
