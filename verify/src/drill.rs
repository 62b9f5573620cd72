//! Drill-down of a differing window: narrow it by keyspace-id buckets, which
//! mean the same thing on any shard map (the first pass already found the
//! differing buckets of the first keyspace-id nibble; the full-row SHA-256
//! digest then narrows them to the first byte, pushed down), then fetch and
//! diff only the rows of the buckets that differ.

use std::collections::BTreeMap;

use crate::diff::{diff_rows, fetch, placement, Difference};
use crate::digest::{grouped, Digest, Side};
use crate::error::VerifyError;
use crate::spec::TableSpec;

/// Groups whose content differs between the sides, or that hold a row on the
/// wrong shard on either side.
pub fn differing(old: &BTreeMap<i64, Digest>, new: &BTreeMap<i64, Digest>) -> Vec<i64> {
    let mut keys: Vec<i64> = old.keys().chain(new.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter(|k| {
            let (o, n) = (old.get(k).copied().unwrap_or_default(), new.get(k).copied().unwrap_or_default());
            !o.same_content(&n) || o.misplaced > 0 || n.misplaced > 0
        })
        .collect()
}

fn list(values: &[i64]) -> String {
    values.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// Every differing key of the window `[start, end)` of `table`, among the
/// rows whose keyspace id starts with one of `nibbles` (the buckets the first
/// pass found different).
pub async fn drill_window(
    old: &Side,
    new: &Side,
    table: &TableSpec,
    start: i64,
    end: i64,
    nibbles: &[i64],
) -> Result<Vec<Difference>, VerifyError> {
    if nibbles.is_empty() {
        return Ok(Vec::new());
    }
    let in_window = table.range_sql(&[(start, end)]);
    let byte = format!("ASCII({})", table.keyspace_id());
    let byte = byte.as_str();
    let narrowed = format!("{in_window} AND {byte} DIV 16 IN ({})", list(nibbles));
    let (o, n) = futures::try_join!(grouped(old, table, byte, &narrowed), grouped(new, table, byte, &narrowed))?;
    let bytes = differing(&o, &n);
    tracing::debug!(table = %table.name, start, nibbles = nibbles.len(), bytes = bytes.len(), "drilled down");
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let rows_of = format!("{in_window} AND {byte} IN ({})", list(&bytes));
    let (old_rows, new_rows) = futures::try_join!(fetch(old, table, &rows_of), fetch(new, table, &rows_of))?;
    let mut out = Vec::new();
    placement(table, &old.config, &old_rows, Some(start), &mut out);
    placement(table, &new.config, &new_rows, Some(start), &mut out);
    diff_rows(table, Some(start), &old_rows, &new_rows, &mut out);
    Ok(out)
}
