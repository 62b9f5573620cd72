//! A full diff of a table its writers still write (group A on the old
//! cluster; group B and the copier on the new one) reads each side at its own
//! moment, so a key written in between differs by lag alone: under steady
//! production every nightly run found a hundred such keys. Like the windows'
//! recheck ([`crate::confirm`]), and like VDiff, which compares both sides at
//! one stream position, each differing key is read again once both clusters
//! have applied every offset either had applied: a key both sides then show
//! equal was in flight; one that held still on both sides across two such
//! reads and still differs is different. A key still being written is read
//! again, up to [`ROUNDS`] times, and stays different if it never held still
//! nor showed equal: the diff never calls a key equal it has not seen equal.

use std::collections::{BTreeMap, HashMap};

use tokio_util::sync::CancellationToken;

use crate::confirm;
use crate::diff::{diff_rows, fetch, key_text, placement, Difference, FetchedRow};
use crate::digest::Side;
use crate::error::VerifyError;
use crate::repair::key::RepairKey;
use crate::spec::TableSpec;

/// Reads of a key still being written before it is left counted different.
const ROUNDS: usize = 5;
/// More differing keys than this are not lag: they are judged as found.
const MAX_KEYS: usize = 10_000;
/// Keys per statement.
const CHUNK: usize = 200;

/// What the recheck made of a diff's differences.
#[derive(Debug, Default)]
pub(super) struct Rechecked {
    /// The differences of the keys still different (as last read).
    pub(super) different: Vec<Difference>,
    /// Keys both sides showed equal on a later read.
    pub(super) resolved: usize,
    /// Keys that changed on every read and never showed equal (among `different`).
    pub(super) moving: usize,
}

type Reads = (Vec<FetchedRow>, Vec<FetchedRow>);

/// Reads the keys of `found` again (see the module's comment).
pub(super) async fn recheck(
    old: &Side,
    new: &Side,
    table: &TableSpec,
    found: Vec<Difference>,
    shutdown: &CancellationToken,
) -> Result<Rechecked, VerifyError> {
    let mut open: BTreeMap<String, Vec<Difference>> = BTreeMap::new();
    for d in found {
        open.entry(d.key.clone()).or_default().push(d);
    }
    if open.len() > MAX_KEYS {
        tracing::warn!(table = %table.name, keys = open.len(), "too many differing keys to read again: judged as found");
        return Ok(Rechecked { different: open.into_values().flatten().collect(), ..Rechecked::default() });
    }
    let mut out = Rechecked::default();
    let mut last: HashMap<String, Reads> = HashMap::new();
    for _ in 0..ROUNDS {
        if open.is_empty() {
            break;
        }
        confirm::both_caught_up(old, new, shutdown).await?;
        let keys: Vec<RepairKey> = open.keys().map(|k| RepairKey::parse(table, k)).collect::<Result<_, _>>()?;
        let (mut o, mut n) = futures::try_join!(read(old, table, &keys), read(new, table, &keys))?;
        let texts: Vec<String> = open.keys().cloned().collect();
        for key in texts {
            let reads = (o.remove(&key).unwrap_or_default(), n.remove(&key).unwrap_or_default());
            let mut now = Vec::new();
            placement(table, &old.config, &reads.0, None, &mut now);
            placement(table, &new.config, &reads.1, None, &mut now);
            diff_rows(table, None, &reads.0, &reads.1, &mut now);
            if now.is_empty() {
                open.remove(&key);
                out.resolved += 1;
            } else if last.get(&key) == Some(&reads) {
                open.remove(&key);
                out.different.extend(now);
            } else {
                last.insert(key.clone(), reads);
                open.insert(key, now);
            }
        }
    }
    out.moving = open.len();
    if out.moving > 0 {
        tracing::warn!(table = %table.name, keys = out.moving, rounds = ROUNDS, "keys changed on every read: still counted different");
    }
    out.different.extend(open.into_values().flatten());
    Ok(out)
}

/// The rows of `keys` on every shard of `side`, by key text, each key's rows
/// in one order (so two reads compare equal when nothing changed).
async fn read(
    side: &Side,
    table: &TableSpec,
    keys: &[RepairKey],
) -> Result<HashMap<String, Vec<FetchedRow>>, VerifyError> {
    let mut out: HashMap<String, Vec<FetchedRow>> = HashMap::new();
    for chunk in keys.chunks(CHUNK) {
        let condition: Vec<String> = chunk.iter().map(|k| format!("({})", k.where_sql)).collect();
        for row in fetch(side, table, &condition.join(" OR ")).await? {
            out.entry(key_text(table, &row.values)).or_default().push(row);
        }
    }
    for rows in out.values_mut() {
        rows.sort_by(|a, b| (a.shard, &a.values).cmp(&(b.shard, &b.values)));
    }
    Ok(out)
}
