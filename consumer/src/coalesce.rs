//! A shard's part of a batch grouped per table and row key: what its
//! transaction reads and writes. Pure, so the benchmark's no-sink mode runs
//! the same code.
//!
//! A folded table's contributions are kept per key in offset order and
//! folded onto the stored row only once it has been read ([`fold`]): a
//! sketch's sum is a float, so the result depends on the order of merges,
//! and starting from the stored row makes it the same whatever the batch
//! boundaries. A blind table's contributions are merged here already (its
//! rules are order-free) and the server merges the result with the stored row.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use pipeline::WritePath;

use crate::plan::{ItemBody, ShardItem};
use crate::rows::{merge, Cell, Row};
use crate::shape::Shape;

/// Words of a key kept inline in [`KeyRef`].
const WORDS: usize = 5;

/// Words a text or bytes key column takes: 23 bytes and a length byte, so
/// a fingerprint of up to 23 bytes is held whole.
const TEXT_WORDS: usize = 3;

/// A row's key: its key columns, compared in key order.
///
/// The leading key columns are also kept inline, as order-preserving
/// words (integers and times as themselves, text as its first bytes and
/// its length): a batch's maps compare keys many times per row, and
/// comparing words in the map's own nodes spares following the row to its
/// cells and strings (cache misses, not instructions, were what made the
/// generic maps slower than typed keys). Words never contradict the key
/// order: they are compared up to the first column they do not hold
/// whole, then the key columns themselves.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    pub row: &'a Row,
    pub key: &'a [usize],
    inline: [u64; WORDS],
    /// Words of `inline` in use.
    words: u8,
    /// Whether the words hold every key column whole (equal words, equal keys).
    exact: bool,
}

impl<'a> KeyRef<'a> {
    pub fn new(row: &'a Row, key: &'a [usize]) -> Self {
        let mut inline = [0u64; WORDS];
        let (mut n, mut exact) = (0, true);
        for &i in key {
            match row.cells.get(i) {
                Some(Cell::UInt(v)) if n < WORDS => inline[n] = *v,
                Some(Cell::Int(v) | Cell::Time(v)) if n < WORDS => inline[n] = (*v as u64) ^ (1 << 63),
                Some(Cell::Ksid(b)) if n < WORDS => inline[n] = u64::from_be_bytes(*b),
                Some(Cell::Text(s)) if n + TEXT_WORDS <= WORDS => {
                    let whole = text_words(s.as_bytes(), &mut inline[n..n + TEXT_WORDS]);
                    n += TEXT_WORDS;
                    if !whole {
                        exact = false;
                        break;
                    }
                    continue;
                }
                Some(Cell::Bytes(b)) if n + TEXT_WORDS <= WORDS => {
                    let whole = text_words(b, &mut inline[n..n + TEXT_WORDS]);
                    n += TEXT_WORDS;
                    if !whole {
                        exact = false;
                        break;
                    }
                    continue;
                }
                _ => {
                    exact = false;
                    break;
                }
            }
            n += 1;
        }
        Self { row, key, inline, words: n as u8, exact }
    }
}

/// `bytes` as big-endian words: its first bytes zero-padded, then its
/// length (`u8::MAX` when longer than the words hold). Byte order of
/// strings is the order of these words wherever they differ; returns
/// whether they hold `bytes` whole (equal words, equal bytes).
fn text_words(bytes: &[u8], words: &mut [u64]) -> bool {
    let mut buf = [0u8; TEXT_WORDS * 8];
    let cap = buf.len() - 1;
    let take = bytes.len().min(cap);
    buf[..take].copy_from_slice(&bytes[..take]);
    let whole = bytes.len() <= cap;
    buf[cap] = if whole { bytes.len() as u8 } else { u8::MAX };
    for (word, chunk) in words.iter_mut().zip(buf.chunks_exact(8)) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        *word = u64::from_be_bytes(eight);
    }
    whole
}

impl Ord for KeyRef<'_> {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        let n = usize::from(self.words.min(other.words));
        match self.inline[..n].cmp(&other.inline[..n]) {
            Ordering::Equal if self.exact && other.exact && self.words == other.words => Ordering::Equal,
            Ordering::Equal => compare_keys(self.row, other.row, self.key),
            unequal => unequal,
        }
    }
}

impl PartialOrd for KeyRef<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for KeyRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KeyRef<'_> {}

/// Two rows of one table compared on its key columns.
#[inline]
pub fn compare_keys(a: &Row, b: &Row, key: &[usize]) -> Ordering {
    key.iter().map(|&i| a.cells[i].cmp(&b.cells[i])).find(|o| *o != Ordering::Equal).unwrap_or(Ordering::Equal)
}

/// Per-range message counts of one shard's transaction.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    /// Messages applied, per batch range (index into the plan's ranges).
    pub applied: Vec<u64>,
    /// Below the fence: applied by an earlier attempt or another owner.
    pub skipped: Vec<u64>,
    /// Applied, but later than the allowed lateness.
    pub late: Vec<u64>,
    /// Older than retention: counted, not written.
    pub expired: Vec<u64>,
}

/// What one table receives in one shard's transaction.
#[derive(Debug)]
pub enum TableWrites<'a> {
    /// Sorted, so that rows are locked in one order by every writer.
    Fold(BTreeMap<KeyRef<'a>, Vec<&'a Row>>),
    /// A key's contributions merged; a key with one contribution borrows
    /// it (cloned only when a second one merges in).
    Blind(BTreeMap<KeyRef<'a>, Cow<'a, Row>>),
    Insert(Vec<&'a Row>),
}

impl TableWrites<'_> {
    pub fn len(&self) -> usize {
        match self {
            TableWrites::Fold(m) => m.len(),
            TableWrites::Blind(m) => m.len(),
            TableWrites::Insert(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one shard's transaction writes, per table of the pipeline.
#[derive(Debug)]
pub struct Coalesced<'a> {
    /// Indexed like the shape's tables.
    pub tables: Vec<TableWrites<'a>>,
    pub counts: Counts,
}

impl Coalesced<'_> {
    /// Rows written per table, in the shape's table order.
    pub fn rows(&self) -> Vec<u64> {
        self.tables.iter().map(|t| t.len() as u64).collect()
    }
}

/// Groups `items` (in offset order) per table and key, skipping those below
/// their range's fence (`fences[item.range]`) and counting what happens to each.
pub fn coalesce<'a>(shape: &'a Shape, items: &[&'a ShardItem], fences: &[i64]) -> Coalesced<'a> {
    let ranges = fences.len();
    let mut out = Coalesced {
        tables: shape
            .tables
            .iter()
            .map(|t| match t.write_path {
                WritePath::Fold => TableWrites::Fold(BTreeMap::new()),
                WritePath::Blind => TableWrites::Blind(BTreeMap::new()),
                WritePath::Insert => TableWrites::Insert(Vec::new()),
            })
            .collect(),
        counts: Counts {
            applied: vec![0; ranges],
            skipped: vec![0; ranges],
            late: vec![0; ranges],
            expired: vec![0; ranges],
        },
    };
    for item in items {
        let c = &mut out.counts;
        if item.offset < fences[item.range] {
            c.skipped[item.range] += 1;
            continue;
        }
        let rows = match &item.body {
            ItemBody::Expired => {
                c.expired[item.range] += 1;
                continue;
            }
            ItemBody::Rows { rows, late } => {
                if *late {
                    c.late[item.range] += 1;
                }
                rows
            }
        };
        c.applied[item.range] += 1;
        for row in rows {
            let t = usize::from(row.table);
            let table = &shape.tables[t];
            let key = KeyRef::new(row, &table.key);
            match &mut out.tables[t] {
                TableWrites::Fold(m) => m.entry(key).or_default().push(row),
                TableWrites::Blind(m) => match m.entry(key) {
                    Entry::Occupied(e) => merge(table, e.into_mut().to_mut(), row),
                    Entry::Vacant(e) => {
                        e.insert(Cow::Borrowed(row));
                    }
                },
                TableWrites::Insert(v) => v.push(row),
            }
        }
    }
    out
}

/// A key's row after this batch: its stored row (if any) with the batch's
/// contributions merged in offset order. A new key with one contribution
/// is that contribution, borrowed.
pub fn fold<'r>(shape: &Shape, stored: Option<Row>, contributions: &[&'r Row]) -> Option<Cow<'r, Row>> {
    let (mut merged, rest) = match stored {
        Some(existing) => (existing, contributions),
        // Never empty: a key exists because something contributed to it.
        None => match contributions {
            [only] => return Some(Cow::Borrowed(*only)),
            _ => {
                let (first, rest) = contributions.split_first()?;
                ((*first).clone(), rest)
            }
        },
    };
    let table = &shape.tables[usize::from(merged.table)];
    for r in rest {
        merge(table, &mut merged, r);
    }
    Some(Cow::Owned(merged))
}

#[cfg(test)]
mod tests;
