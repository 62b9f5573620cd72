//! The rows a batch writes, built from a decoded record by the table's
//! compiled shape, and the merge rules applied to them.
//!
//! Merges are folded per key in offset order starting from the stored row
//! where the table's rules are not exact in SQL (a sketch, a float sum), so
//! the result never depends on where batches were cut; where they are,
//! contributions are merged here in any order and again by the server
//! against the stored row.

use std::cmp::Ordering;
use std::sync::Arc;

use pipeline::{FieldKind, Merge};
use topics::record::Value;
use topics::LatencySketch;

use crate::shape::{ColumnShape, ColumnSource, Render, TableShape};

/// One column's value.
#[derive(Debug, Clone)]
pub enum Cell {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    /// Shared: a field feeding several tables (a fingerprint, a tenant's
    /// route) is one allocation for all of a message's rows.
    Text(Arc<str>),
    Bytes(Arc<[u8]>),
    /// A keyspace id (no allocation per row).
    Ksid([u8; 8]),
    /// Microseconds since the epoch, UTC, cut to the column's precision.
    Time(i64),
    /// Shared until a merge writes to it (copy on write).
    Sketch(Arc<LatencySketch>),
}

impl Cell {
    fn rank(&self) -> u8 {
        match self {
            Cell::Null => 0,
            Cell::Int(_) => 1,
            Cell::UInt(_) => 2,
            Cell::Float(_) => 3,
            Cell::Text(_) => 4,
            Cell::Bytes(_) => 5,
            Cell::Ksid(_) => 6,
            Cell::Time(_) => 7,
            Cell::Sketch(_) => 8,
        }
    }
}

/// A total order within a column (all of one variant, or NULL): what keys
/// sort by and min/max compare. Text compares by bytes, as the `_bin`
/// collations and `utf8mb4_bin` do.
impl Ord for Cell {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Cell::Int(a), Cell::Int(b)) | (Cell::Time(a), Cell::Time(b)) => a.cmp(b),
            (Cell::UInt(a), Cell::UInt(b)) => a.cmp(b),
            (Cell::Float(a), Cell::Float(b)) => a.total_cmp(b),
            (Cell::Text(a), Cell::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Cell::Bytes(a), Cell::Bytes(b)) => a.cmp(b),
            (Cell::Ksid(a), Cell::Ksid(b)) => a.cmp(b),
            (Cell::Sketch(_), Cell::Sketch(_)) | (Cell::Null, Cell::Null) => Ordering::Equal,
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Cell {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Cell {}

/// Every column's value of one row, in the table's column order.
#[derive(Debug, Clone)]
pub struct Row {
    /// Index into the shape's tables.
    pub table: u16,
    pub cells: Vec<Cell>,
}

/// A value no column can hold: the message is a dead letter (`invalid_field`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid field {field}: {why}")]
pub struct Invalid {
    pub field: String,
    pub why: String,
}

/// Fields already checked and turned into a cell for this message, by
/// [`ColumnShape::check`]: a string or a sketch feeding several tables is
/// checked (and a sketch decoded) once.
pub type Decoded = Vec<(u32, Cell)>;

/// What a row is built from besides the record.
pub struct Context {
    pub partition: i32,
    pub offset: i64,
    pub event_ms: i64,
    /// The event time in the field's own unit (microsecond fields keep their precision).
    pub event_us: i64,
    pub keyspace_id: [u8; 8],
}

/// The row `shape` takes from `values` (the record's fields by position).
pub fn build(
    index: u16,
    shape: &TableShape,
    values: &[Value],
    cx: &Context,
    decoded: &mut Decoded,
) -> Result<Row, Invalid> {
    let mut cells = Vec::with_capacity(shape.columns.len());
    for c in &shape.columns {
        cells.push(cell(c, shape.window_secs, values, cx, decoded)?);
    }
    Ok(Row { table: index, cells })
}

fn cell(
    c: &ColumnShape,
    window_secs: i64,
    values: &[Value],
    cx: &Context,
    decoded: &mut Decoded,
) -> Result<Cell, Invalid> {
    let invalid = |field: &str, why: String| Invalid { field: field.to_string(), why };
    let time = |us: i64| Cell::Time(cut(us, c.render));
    Ok(match &c.source {
        ColumnSource::WindowStart => {
            Cell::Time(cluster::time::window_start(cx.event_ms, window_secs).saturating_mul(1_000_000))
        }
        ColumnSource::EventTime => time(cx.event_us),
        ColumnSource::KeyspaceId => Cell::Ksid(cx.keyspace_id),
        ColumnSource::Partition => Cell::Int(i64::from(cx.partition)),
        ColumnSource::Offset => Cell::Int(cx.offset),
        ColumnSource::Int(i) => integer(c, *i).map_err(|why| invalid(&c.name, why))?,
        ColumnSource::Text(s) => Cell::Text(Arc::from(s.as_str())),
        ColumnSource::Field { position, kind, name } => {
            let Some(value) = values.get(*position) else {
                return Err(invalid(name, "absent from the record".into()));
            };
            match (value, kind) {
                (Value::Null, _) if c.nullable => Cell::Null,
                (Value::Null, _) => return Err(invalid(name, "null where the column needs a value".into())),
                (Value::Long(l), FieldKind::TimestampMillis) => {
                    time(timestamp(*l, 1_000).map_err(|why| invalid(name, why))?)
                }
                (Value::Long(l), FieldKind::TimestampMicros) => {
                    time(timestamp(*l, 1).map_err(|why| invalid(name, why))?)
                }
                (Value::Long(l), _) => integer(c, *l).map_err(|why| invalid(name, why))?,
                (Value::Bool(b), _) => integer(c, i64::from(*b)).map_err(|why| invalid(name, why))?,
                (Value::Double(d), _) if d.is_finite() => Cell::Float(*d),
                (Value::Double(d), _) => return Err(invalid(name, format!("{d} is not a finite number"))),
                (Value::Str(v), _) => {
                    if let Some((_, cell)) = decoded.iter().find(|(k, _)| *k == c.check) {
                        return Ok(cell.clone());
                    }
                    check_text(c, v).map_err(|why| invalid(name, why))?;
                    let cell = Cell::Text(v.clone());
                    decoded.push((c.check, cell.clone()));
                    cell
                }
                (Value::StrArray(items), _) => {
                    // Stored as its JSON array, measured as stored: quotes,
                    // backslashes and control characters are escaped.
                    let json = serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string());
                    check_text(c, &json).map_err(|why| invalid(name, why))?;
                    Cell::Text(Arc::from(json))
                }
                (Value::Bytes(b), _) if c.render == Render::Sketch => {
                    if let Some((_, cell)) = decoded.iter().find(|(k, _)| *k == c.check) {
                        cell.clone()
                    } else {
                        let s = LatencySketch::decode_message(b).map_err(|e| invalid(name, e.to_string()))?;
                        let cell = Cell::Sketch(Arc::new(s));
                        decoded.push((c.check, cell.clone()));
                        cell
                    }
                }
                (Value::Bytes(b), _) => {
                    fits(c, b.len()).map_err(|why| invalid(name, why))?;
                    Cell::Bytes(Arc::from(b.as_slice()))
                }
            }
        }
    })
}

/// 9999-12-31T23:59:59.999999Z: the last instant a DATETIME holds.
const MAX_TIME_US: i64 = 253_402_300_799_999_999;

fn timestamp(v: i64, to_us: i64) -> Result<i64, String> {
    if v < 0 {
        return Err(format!("{v} is negative"));
    }
    match v.checked_mul(to_us) {
        Some(us) if us <= MAX_TIME_US => Ok(us),
        _ => Err(format!("{v} is past year 9999")),
    }
}

/// A time cut to the column's fractional digits (MySQL would round them).
fn cut(us: i64, render: Render) -> i64 {
    let unit = match render {
        Render::Time(fsp) => 10i64.pow(6 - fsp.min(6)),
        _ => 1,
    };
    us.div_euclid(unit) * unit
}

#[inline]
fn integer(c: &ColumnShape, v: i64) -> Result<Cell, String> {
    if let Some((lo, hi)) = c.range {
        if i128::from(v) < lo {
            return Err(if v < 0 && lo == 0 { format!("{v} is negative") } else { format!("{v} is below {lo}") });
        }
        if i128::from(v) > hi {
            return Err(format!("{v} is above {hi}"));
        }
    }
    Ok(match c.render {
        Render::Unsigned => Cell::UInt(v.unsigned_abs()),
        Render::Float => Cell::Float(v as f64),
        _ => Cell::Int(v),
    })
}

fn check_text(c: &ColumnShape, s: &str) -> Result<(), String> {
    if c.printable && (s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic())) {
        let limit = c.max_chars.map_or(String::new(), |n| format!("={n}"));
        return Err(format!("must be 1..{limit} printable ASCII characters"));
    }
    if c.ascii && !s.is_ascii() {
        return Err("must be ASCII".into());
    }
    fits(c, s.len())?;
    if let Some(max) = c.max_chars {
        // Characters are counted only when the bytes alone do not settle it.
        if s.len() > max && s.chars().count() > max {
            return Err(format!("{} characters, more than the column's {max}", s.chars().count()));
        }
    }
    Ok(())
}

fn fits(c: &ColumnShape, bytes: usize) -> Result<(), String> {
    match c.max_bytes {
        Some(max) if bytes > max => Err(format!("{bytes} bytes as stored, more than the column's {max}")),
        _ => Ok(()),
    }
}

/// Merges `other` into `row` by the table's rules (`row` holds the earlier
/// contributions or the stored row). The by-groups decide first, on the
/// `by` values before their own merge moves them.
pub fn merge(shape: &TableShape, row: &mut Row, other: &Row) {
    for g in &shape.groups {
        let ord = std::iter::once(g.by)
            .chain(g.members.iter().copied())
            .map(|i| other.cells[i].cmp(&row.cells[i]))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal);
        let take = if g.min { ord == Ordering::Less } else { ord == Ordering::Greater };
        if take {
            for &i in &g.members {
                row.cells[i].clone_from(&other.cells[i]);
            }
        }
    }
    for &i in &shape.merged {
        let Some(rule) = &shape.columns[i].merge else { continue };
        let (mine, theirs) = (&mut row.cells[i], &other.cells[i]);
        match rule {
            Merge::Sum => match (mine, theirs) {
                (Cell::UInt(a), Cell::UInt(b)) => *a = a.saturating_add(*b),
                (Cell::Int(a), Cell::Int(b)) => *a = a.saturating_add(*b),
                (Cell::Float(a), Cell::Float(b)) => *a += *b,
                _ => {}
            },
            Merge::Min => {
                if *theirs < *mine {
                    mine.clone_from(theirs);
                }
            }
            Merge::Max => {
                if *theirs > *mine {
                    mine.clone_from(theirs);
                }
            }
            Merge::DdSketch => {
                if let (Cell::Sketch(a), Cell::Sketch(b)) = (mine, theirs) {
                    // Both passed the codec's accuracy check, so they always merge.
                    let _ = Arc::make_mut(a).merge(b);
                }
            }
            Merge::MinBy(_) | Merge::MaxBy(_) | Merge::First | Merge::Last => {}
        }
    }
}
