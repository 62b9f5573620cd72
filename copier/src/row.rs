//! A row of a copied table, generic over its columns: values by column
//! position, each typed by its column's SQL class (integers, text, bytes,
//! datetimes), so that a snapshot row, a binlog row image and a key compare
//! and merge alike whatever the table.

use std::cmp::Ordering;
use std::fmt::Write as _;

use cluster::sql;
use mysql_async::Value;
use pipeline::{Base, Class, SqlType};
use serde::{Deserialize, Serialize};

/// One column's value. A column always holds the same variant (its
/// [`Kind`]'s), so the derived order is the column's order: integers
/// numerically, text and bytes byte-wise (what the binary collations the key
/// columns must have mean), datetimes in time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    /// A signed integer column.
    Int(i64),
    /// An unsigned integer column.
    #[serde(rename = "uint")]
    UInt(u64),
    /// A text column (UTF-8: utf8mb4 or ascii).
    Text(String),
    /// A binary column.
    Bytes(Vec<u8>),
    /// A DATETIME, microseconds since the epoch (UTC, as stored).
    DateTime(i64),
}

impl Cell {
    /// The value as the vindex takes it (the sharding column's).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Cell::UInt(v) => Some(*v),
            // The hash vindex reads the bits of a signed column as unsigned.
            Cell::Int(v) => Some(*v as u64),
            _ => None,
        }
    }

    /// Appends the value as an SQL literal.
    pub fn push_literal(&self, out: &mut String) {
        match self {
            // Writing to a String cannot fail.
            Cell::Int(v) => {
                let _ = write!(out, "{v}");
            }
            Cell::UInt(v) => {
                let _ = write!(out, "{v}");
            }
            Cell::Text(s) => sql::push_str_lit(out, s),
            Cell::Bytes(b) => sql::push_hex(out, b),
            Cell::DateTime(us) => out.push_str(&sql::datetime_us(*us)),
        }
    }
}

/// How a column's values are read and written: its SQL class, with what the
/// class needs of the exact type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Signed integers of `bits` bits.
    Int {
        bits: u32,
    },
    /// Unsigned integers of `bits` bits (a binlog image without
    /// `binlog_row_metadata=FULL` does not know it is unsigned: the bits are kept).
    UInt {
        bits: u32,
    },
    Text,
    /// `BINARY(n)` is padded to `n` with zero bytes (the binlog strips them).
    Bytes {
        pad_to: Option<usize>,
    },
    /// Fractional-second digits (0-6).
    DateTime {
        fsp: u32,
    },
}

impl Kind {
    /// The kind of a column of `sql_type`, or why the copier cannot copy it exactly.
    pub fn of(sql_type: &SqlType) -> Result<Kind, String> {
        let bits = match sql_type.base {
            Base::TinyInt => 8,
            Base::SmallInt => 16,
            Base::Int => 32,
            _ => 64,
        };
        Ok(match sql_type.class() {
            Class::Integer if sql_type.unsigned => Kind::UInt { bits },
            Class::Integer => Kind::Int { bits },
            Class::Text => match &sql_type.charset {
                Some((cs, _))
                    if !matches!(cs.to_ascii_lowercase().as_str(), "ascii" | "utf8mb4" | "utf8mb3" | "utf8") =>
                {
                    return Err(format!("{sql_type}: the copier copies ascii and utf8 text only"))
                }
                _ => Kind::Text,
            },
            Class::Bytes => {
                Kind::Bytes { pad_to: (sql_type.base == Base::Binary).then(|| sql_type.size.unwrap_or(1) as usize) }
            }
            Class::DateTime => Kind::DateTime { fsp: sql_type.fsp() },
            Class::Float | Class::Decimal => {
                return Err(format!(
                "{sql_type}: the copier copies integers, text, bytes and datetimes (a float's text form is not exact)"
            ))
            }
        })
    }

    /// A value read from the source: a snapshot's (text protocol: bytes) or
    /// a binlog row image's (typed, integers signed).
    pub fn cell(self, value: Value) -> Result<Cell, String> {
        match (self, value) {
            (Kind::UInt { bits }, Value::Int(v)) => Ok(Cell::UInt(v as u64 & mask(bits))),
            (Kind::UInt { .. }, Value::UInt(v)) => Ok(Cell::UInt(v)),
            (Kind::UInt { .. }, Value::Bytes(b)) => parse(&b).map(Cell::UInt),
            (Kind::Int { .. }, Value::Int(v)) => Ok(Cell::Int(v)),
            (Kind::Int { .. }, Value::UInt(v)) => Ok(Cell::Int(v as i64)),
            (Kind::Int { .. }, Value::Bytes(b)) => parse(&b).map(Cell::Int),
            (Kind::Text, Value::Bytes(b)) => String::from_utf8(b).map(Cell::Text).map_err(|_| "not UTF-8".to_owned()),
            (Kind::Bytes { pad_to }, Value::Bytes(mut bytes)) => {
                if let Some(n) = pad_to {
                    if bytes.len() < n {
                        bytes.resize(n, 0);
                    }
                }
                Ok(Cell::Bytes(bytes))
            }
            (Kind::DateTime { .. }, value) => micros(&value).map(Cell::DateTime),
            (kind, other) => Err(format!("unexpected value {other:?} for a {kind:?} column")),
        }
    }
}

fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

fn parse<T: std::str::FromStr>(b: &[u8]) -> Result<T, String> {
    std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).ok_or_else(|| "not an integer".to_owned())
}

fn micros(value: &Value) -> Result<i64, String> {
    let naive = match value {
        Value::Date(y, mo, d, h, mi, s, us) => {
            chrono::NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*mo), u32::from(*d))
                .and_then(|date| date.and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us))
        }
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()),
        _ => None,
    };
    naive.map(|t| t.and_utc().timestamp_micros()).ok_or_else(|| format!("not a datetime: {value:?}"))
}

/// A primary key: the key columns' values, in key order. The derived order
/// is the source's index order (see [`Cell`]); "key <= last copied key" is
/// decided with it, in Rust, for binlog rows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Key(pub Vec<Cell>);

impl Key {
    /// `(a,b)` as an SQL tuple.
    pub fn tuple(&self) -> String {
        let mut out = String::from("(");
        for (i, cell) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            cell.push_literal(&mut out);
        }
        out.push(')');
        out
    }
}

/// A full row image: every column by position, its key, and the keyspace id
/// of its sharding column (recomputed with the vindex: a binlog image of
/// `BINARY(8)` may lose trailing zero bytes, and the copy re-shards anyway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The primary key.
    pub key: Key,
    /// Every column, in the table's column order (the keyspace id columns included).
    pub cells: Vec<Cell>,
    /// The vindex of the sharding column: where the row goes.
    pub keyspace_id: [u8; 8],
}

/// One step of a table's merge rule, on column positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeStep {
    Min(usize),
    Max(usize),
    /// `min_by` / `max_by` / `first` / `last`: the members take the values of
    /// the image whose tuple (by column, then the members in column order) is
    /// the smallest (`min`) or largest; the by column merges by its own rule.
    Group {
        min: bool,
        by: usize,
        members: Vec<usize>,
    },
}

impl Image {
    /// Merges `other` into `self` by the table's rule, as its SQL upsert
    /// (`pipeline::upsert`) does: the groups first, against the stored by
    /// column, then min and max. Every step is a join (associative,
    /// commutative, idempotent), which lets copier and consumer writes land in
    /// any order and lets a replayed image change nothing.
    pub fn merge(&mut self, other: &Image, steps: &[MergeStep]) {
        debug_assert_eq!(self.key, other.key);
        for step in steps {
            if let MergeStep::Group { min, by, members } = step {
                // The tuples (by, members...) compared lexicographically, without building them.
                let order = std::iter::once(*by)
                    .chain(members.iter().copied())
                    .map(|p| other.cells[p].cmp(&self.cells[p]))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal);
                let wanted = if *min { Ordering::Less } else { Ordering::Greater };
                if order == wanted {
                    for &m in members {
                        self.cells[m].clone_from(&other.cells[m]);
                    }
                }
            }
        }
        for step in steps {
            match step {
                MergeStep::Min(p) if other.cells[*p] < self.cells[*p] => self.cells[*p].clone_from(&other.cells[*p]),
                MergeStep::Max(p) if other.cells[*p] > self.cells[*p] => self.cells[*p].clone_from(&other.cells[*p]),
                _ => {}
            }
        }
    }

    /// Whether `self` is what merging something into `before` could give:
    /// the only way group A changes a row. A source UPDATE that is not (a
    /// manual fix moving a max back, say) cannot be carried by the merge
    /// rule; the stream counts and logs it.
    pub fn is_merge_successor_of(&self, before: &Image, steps: &[MergeStep]) -> bool {
        // `merge(before, self) == self`, column by column, without building
        // the merge (it runs for every binlog UPDATE).
        let mut merged = vec![false; self.cells.len()];
        for step in steps {
            let ok = match step {
                MergeStep::Min(p) => {
                    merged[*p] = true;
                    self.cells[*p] <= before.cells[*p]
                }
                MergeStep::Max(p) => {
                    merged[*p] = true;
                    self.cells[*p] >= before.cells[*p]
                }
                MergeStep::Group { min, by, members } => {
                    let order = std::iter::once(*by)
                        .chain(members.iter().copied())
                        .map(|p| self.cells[p].cmp(&before.cells[p]))
                        .find(|o| o.is_ne())
                        .unwrap_or(Ordering::Equal);
                    let wanted = if *min { Ordering::Less } else { Ordering::Greater };
                    members.iter().for_each(|&m| merged[m] = true);
                    // Taken from `self`, or kept from `before` and then equal.
                    order == wanted || members.iter().all(|&m| self.cells[m] == before.cells[m])
                }
            };
            if !ok {
                return false;
            }
        }
        // Columns no rule touches keep `before`'s values.
        merged.iter().zip(self.cells.iter().zip(&before.cells)).all(|(m, (a, b))| *m || a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(t: &str) -> Kind {
        Kind::of(&SqlType::parse(t).expect(t)).expect(t)
    }

    #[test]
    fn binlog_and_text_values_read_alike() {
        let pairs: [(&str, Value, Value); 5] = [
            ("BIGINT UNSIGNED", Value::Int(-1), Value::Bytes(b"18446744073709551615".to_vec())),
            ("INT UNSIGNED", Value::Int(-1), Value::Bytes(b"4294967295".to_vec())),
            ("SMALLINT", Value::Int(-7), Value::Bytes(b"-7".to_vec())),
            (
                "DATETIME(3)",
                Value::Date(2026, 1, 2, 3, 4, 5, 123_000),
                Value::Bytes(b"2026-01-02 03:04:05.123".to_vec()),
            ),
            ("BINARY(4)", Value::Bytes(vec![1, 2]), Value::Bytes(vec![1, 2, 0, 0])),
        ];
        for (t, binlog, text) in pairs {
            let k = kind(t);
            assert_eq!(k.cell(binlog).expect(t), k.cell(text).expect(t), "{t}");
        }
        assert!(kind("VARCHAR(3)").cell(Value::Bytes(vec![0xff])).is_err());
        assert!(Kind::of(&SqlType::parse("DOUBLE").expect("double")).is_err());
    }

    #[test]
    fn literals_and_key_order() {
        let mut out = String::new();
        for c in [Cell::UInt(7), Cell::Text("a'b".into()), Cell::Bytes(vec![0, 0xab]), Cell::DateTime(1_000_123)] {
            c.push_literal(&mut out);
            out.push(' ');
        }
        assert_eq!(out, "7 'a\\'b' X'00ab' '1970-01-01 00:00:01.000123' ");
        for text in ["", "plain", "a'b\"c\\d\0e\nf\rg\x1ah", "é'ü"] {
            let mut out = String::new();
            Cell::Text(text.into()).push_literal(&mut out);
            assert_eq!(out, sql::lit(text), "{text:?}");
        }
        let k = |id, s: &str| Key(vec![Cell::UInt(id), Cell::Text(s.into())]);
        assert!(k(2, "a") < k(10, "a"));
        assert!(k(2, "B") < k(2, "a"));
        assert!(k(2, "a") < k(2, "ab"));
        let json = serde_json::to_string(&k(3, "x")).expect("json");
        assert_eq!(json, r#"[{"uint":3},{"text":"x"}]"#);
        assert_eq!(serde_json::from_str::<Key>(&json).expect("key"), k(3, "x"));
    }

    fn image(first: i64, last: i64, text: &str) -> Image {
        Image {
            key: Key(vec![Cell::UInt(7)]),
            cells: vec![Cell::UInt(7), Cell::Text(text.into()), Cell::DateTime(first), Cell::DateTime(last)],
            keyspace_id: [0; 8],
        }
    }

    /// The text of the earliest sighting (ties: the smaller text), first = min, last = max.
    fn steps() -> Vec<MergeStep> {
        vec![MergeStep::Group { min: true, by: 2, members: vec![1] }, MergeStep::Min(2), MergeStep::Max(3)]
    }

    #[test]
    fn merge_is_a_join() {
        let (a, b, c) = (image(10, 20, "select b"), image(5, 15, "select z"), image(5, 30, "select a"));
        let fold = |xs: &[&Image]| {
            let mut acc = xs[0].clone();
            for x in &xs[1..] {
                acc.merge(x, &steps());
            }
            acc
        };
        let abc = fold(&[&a, &b, &c]);
        assert_eq!(abc, fold(&[&c, &a, &b]));
        assert_eq!(abc, fold(&[&b, &c, &a, &a, &c]));
        assert_eq!(abc, image(5, 30, "select a"));
    }

    #[test]
    fn updates_by_merge_are_successors_and_rewinds_are_not() {
        let before = image(10, 20, "select b");
        assert!(image(10, 25, "select b").is_merge_successor_of(&before, &steps()));
        assert!(image(5, 20, "select z").is_merge_successor_of(&before, &steps()));
        assert!(!image(10, 15, "select b").is_merge_successor_of(&before, &steps()));
        assert!(!image(10, 20, "select c").is_merge_successor_of(&before, &steps()));
    }
}
