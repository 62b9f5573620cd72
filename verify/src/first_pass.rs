//! The comparator's first pass: per window and keyspace-id bucket, a row
//! count and the exact sum of a 64-bit hash of every row, computed in the
//! shards and added across them. Only buckets whose sums differ are drilled
//! down with the full-row SHA-256 path ([`crate::drill`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::digest::{parse_sum, Digest, Side};
use crate::error::VerifyError;
use crate::spec::{ColumnSpec, TableSpec};

/// One group of the first pass, the same on any shard map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BucketKey {
    /// Start of the window (epoch seconds).
    pub window: i64,
    /// The row's exact time (epoch seconds) when the table's time column
    /// holds window starts, else the window again: a row whose time is not
    /// its window's start lands in a bucket of its own.
    pub time: i64,
    /// First nibble of the keyspace id (0-15), where the drill-down starts.
    pub nibble: i64,
}

/// What one side's first pass found.
#[derive(Debug, Default)]
pub struct FirstPass {
    pub buckets: BTreeMap<BucketKey, Digest>,
    /// Per shard, when its query ran (since the caller's clock).
    pub spans: Vec<(Duration, Duration)>,
}

/// SQL: the row's canonical encoding for the first pass.
///
/// `CONCAT(scalars..., lengths..., values...)` with `','` between them:
/// numbers and datetimes as text (no `,` in any; 'N' for NULL, which no
/// present one starts with), then the byte length
/// of every string and blob ('N' for NULL, whose value is then empty), then the
/// strings and blobs themselves; the last one needs no length when it
/// cannot be NULL (it runs to the end). A fixed number of scalars and known
/// lengths make it decodable, so two different rows never share an encoding.
/// The time column is left out where the pass groups by its exact value.
/// Reading and encoding the columns is what the first pass mostly pays for.
/// `CONCAT` with `','` arguments gives the bytes `CONCAT_WS(',', ..)` would
/// and costs ~10% less on MariaDB 10.11; it would be NULL if an argument
/// were, and none is: every column is `NOT NULL` except the nullable
/// ones, which are wrapped in `IFNULL`.
pub fn encoding_sql(table: &TableSpec) -> String {
    let time = table.window.as_ref().map(|(c, _)| c.as_str()).filter(|_| table.time_is_window_start);
    let (mut scalars, mut lengths, mut values) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_nullable = false;
    for ColumnSpec { name, col, nullable } in &table.columns {
        if Some(name.as_str()) == time {
            continue;
        }
        match (col.is_scalar(), nullable) {
            (true, false) => scalars.push(name.to_string()),
            (true, true) => scalars.push(format!("IFNULL({name}, 'N')")),
            (false, false) => {
                lengths.push(format!("LENGTH({name})"));
                values.push(name.to_string());
                last_nullable = false;
            }
            (false, true) => {
                lengths.push(format!("IFNULL(LENGTH({name}), 'N')"));
                values.push(format!("IFNULL({name}, '')"));
                last_nullable = true;
            }
        }
    }
    if !last_nullable {
        lengths.pop();
    }
    let parts: Vec<String> = scalars.into_iter().chain(lengths).chain(values).collect();
    format!("CONCAT({})", parts.join(", ',', "))
}

/// SQL: one shard's first pass over the rows matching `where_sql`.
///
/// Columns: window (or exact time), nibble, `COUNT(*)`, the lane, misplaced
/// rows.
///
/// # Why equal sums mean equal rows (false equality at most 2^-64)
///
/// Per bucket, each side gives the row count and one exact sum over its
/// rows: lane = Σ h(e), where e is the row's canonical encoding
/// ([`encoding_sql`]; the bucket's time and nibble come from the row too, so
/// within a bucket different rows have different encodings) and h(e) is the
/// first 64 bits of SHA1(e) read as an unsigned integer. The shards return
/// exact DECIMAL sums and the sides add them exactly (u128), with no
/// reduction modulo anything. A bucket is equal when count and lane are both
/// equal, and a window when every bucket of it is.
///
/// Two different multisets of rows in a bucket give a nonzero difference
/// vector c (row encoding -> copies on old minus copies on new). The lane
/// sums are equal exactly when Σ c_i·h(e_i) = 0 over the integers. Take SHA1 as a
/// random function of distinct inputs (the rows are telemetry, not inputs
/// crafted against SHA1; its known collision attacks need chosen prefixes):
/// fix every h except one with c_j ≠ 0; at most one of the 2^64 equally
/// likely values of h(e_j) solves the equation, so the probability is at most
/// 2^-64 for every differing window, whatever the difference (one changed
/// byte, a lost row, a duplicate, swapped columns, a row moved to another
/// window, which changes two windows), below the 2^-60 the comparator
/// promises. Sums, not XOR: a duplicate adds its hash twice instead of
/// cancelling (and always changes the count), and addition ignores row order
/// and which shard a row sits on, so 4 and 8 shards compare directly.
///
/// One lane, not two: a second lane of another hash (CRC32 until issue 14's
/// third session) needs the encoding computed a second time, the larger
/// part of the cost, and adds no bound of its own (CRC32 is linear, the same
/// edit in two rows can cancel); the one SHA1 lane carries the bound alone.
/// Digests of this pass leave `lane_b` at 0.
///
/// # Cost (see `docs/notes-copier-verify.md` for the per-expression table)
///
/// Per row: reading every column through the SQL layer and encoding it as
/// text (most of it), one SHA1 (SHA-NI), `CONV` + `CAST`, one DECIMAL sum
/// and the group lookup; `CAST(.. AS UNSIGNED)` measured ~5% cheaper than
/// `AS DECIMAL(20, 0)` (both exact). The stats tables group by the stored
/// `window_start` itself and compute its epoch seconds once per group, not
/// per row; the misplaced rows are a `COUNT` (integer), not a `SUM`
/// (DECIMAL). Cheaper 64-bit lanes that were measured and are slower: two
/// CRC32s (or CRC32 and MariaDB's CRC32C) of one SHA1 output, since the
/// server computes SHA1(e) once per reference.
///
/// # MariaDB and MySQL 8
///
/// Every function here (CONCAT, LENGTH, IFNULL, SHA1, CONV, LEFT, CAST AS
/// UNSIGNED, ASCII, TIMESTAMPDIFF, DIV, NULLIF, COUNT, SUM of BIGINT UNSIGNED
/// as an exact DECIMAL) exists with the same results on MariaDB 10.11 and MySQL
/// 8.0; both render integers and DATETIME(n) the same way, and both make the
/// encoding a binary string (every table has a binary column), so SHA1 sees
/// the same bytes. Selecting an expression of a grouped column (`t` of
/// `window_start`) and grouping by a select alias (`k`) are accepted by
/// MySQL 8's ONLY_FULL_GROUP_BY. Verified on MariaDB 10.11 (the local
/// stack); MySQL 8 could not be installed here.
pub fn shard_sql(table: &TableSpec, window_secs: i64, misplaced: &str, where_sql: &str) -> String {
    let column = table.window.as_ref().map_or("window_start", |(c, _)| c.as_str());
    let (time, group) = if table.time_is_window_start {
        (format!("TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', {column})"), column)
    } else {
        (table.window_sql(window_secs), "t")
    };
    let e = encoding_sql(table);
    format!(
        "SELECT {time} AS t, ASCII({ksid}) DIV 16 AS k, COUNT(*), \
         SUM(CAST(CONV(LEFT(SHA1({e}), 16), 16, 10) AS UNSIGNED)), COUNT(NULLIF({misplaced}, 0)) \
         FROM {name} WHERE {where_sql} GROUP BY {group}, k",
        ksid = table.keyspace_id(),
        name = table.name,
    )
}

/// The first pass of `table` over the windows in `ranges` (epoch seconds,
/// window-aligned): one query per shard, all shards at once, combined by
/// bucket. One scan per shard: splitting the windows into several queries
/// would scan the table once per query, since rows are clustered by key,
/// not time. Callers keep a shard busy by running several tables at once.
pub async fn first_pass(
    side: &Side,
    table: &TableSpec,
    window_secs: i64,
    ranges: &[(i64, i64)],
    clock: Instant,
) -> Result<FirstPass, VerifyError> {
    let where_sql = table.range_sql(ranges);
    let shards = side.config.shards.iter().enumerate().map(|(i, config)| {
        let sql = shard_sql(table, window_secs, &table.misplaced_sql(&config.range), &where_sql);
        async move {
            let begun = clock.elapsed();
            let mut conn = side.conn(i).await?;
            let rows: Vec<ShardRow> = conn.query(sql).await.map_err(|e| side.shard_error(i, e))?;
            Ok::<_, VerifyError>(((begun, clock.elapsed()), rows))
        }
    });
    let mut out = FirstPass::default();
    for result in futures::future::join_all(shards).await {
        let (span, rows) = result?;
        out.spans.push(span);
        for (time, nibble, count, lane, misplaced) in rows {
            let key = BucketKey { window: time.div_euclid(window_secs) * window_secs, time, nibble };
            let digest = Digest { rows: count, lane_a: parse_sum(&lane)?, lane_b: 0, misplaced };
            out.buckets.entry(key).or_default().add(&digest);
        }
    }
    Ok(out)
}

/// One row of [`shard_sql`]: time, nibble, count, lane (an exact DECIMAL
/// sum, as text), misplaced.
type ShardRow = (i64, i64, u64, String, u64);

/// Shard-seconds busy: per shard (by position), the time at least one of
/// the passes' queries ran on it, summed over the shards.
pub fn busy<'a>(passes: impl IntoIterator<Item = &'a FirstPass>) -> Duration {
    let mut per_shard: Vec<Vec<(Duration, Duration)>> = Vec::new();
    for pass in passes {
        for (i, span) in pass.spans.iter().enumerate() {
            if per_shard.len() <= i {
                per_shard.resize_with(i + 1, Vec::new);
            }
            per_shard[i].push(*span);
        }
    }
    per_shard.into_iter().map(union).sum()
}

/// Total length of the union of time spans.
fn union(mut spans: Vec<(Duration, Duration)>) -> Duration {
    spans.sort();
    let (mut total, mut reach) = (Duration::ZERO, Duration::ZERO);
    for (start, end) in spans {
        let start = start.max(reach);
        if end > start {
            total += end - start;
            reach = end;
        }
    }
    total
}

/// Per window, the nibbles whose buckets differ between the sides or hold a
/// misplaced row on either side.
pub fn differing(old: &FirstPass, new: &FirstPass) -> BTreeMap<i64, Vec<i64>> {
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for key in old.buckets.keys().chain(new.buckets.keys()) {
        let (o, n) =
            (old.buckets.get(key).copied().unwrap_or_default(), new.buckets.get(key).copied().unwrap_or_default());
        if !o.same_content(&n) || o.misplaced > 0 || n.misplaced > 0 {
            let nibbles = out.entry(key.window).or_default();
            if !nibbles.contains(&key.nibble) {
                nibbles.push(key.nibble);
            }
        }
    }
    for nibbles in out.values_mut() {
        nibbles.sort_unstable();
    }
    out
}

/// Per window, its buckets' digests added up (what the history records).
pub fn per_window(pass: &FirstPass) -> BTreeMap<i64, Digest> {
    let mut out: BTreeMap<i64, Digest> = BTreeMap::new();
    for (key, digest) in &pass.buckets {
        out.entry(key.window).or_default().add(digest);
    }
    out
}

#[cfg(test)]
mod tests;
