//! The checked description: what every job reads.

use std::time::Duration;

use crate::avro::Field;
use crate::merge::Merge;
use crate::sqltype::SqlType;

/// A whole pipeline: its topics and the tables fed from them.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Short name (`[a-z0-9_]+`): labels metrics and logs.
    pub name: String,
    pub sharding: Sharding,
    pub topics: Vec<Topic>,
    /// In the file's order, which is the DDL's.
    pub tables: Vec<Table>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharding {
    /// The column (and source field) every table is sharded by.
    pub column: String,
    pub vindex: Vindex,
}

/// How a sharding value becomes a keyspace id (Vitess' vindexes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vindex {
    /// Vitess `hash`: 3DES of the unsigned 64-bit value with a null key.
    /// Another vindex (e.g. `xxhash` of a string key) plugs in as a variant
    /// here and a case in `cluster::vindex::keyspace_id_of`; the key ranges
    /// and every job above them only see the 8-byte keyspace id.
    Hash,
}

#[derive(Debug, Clone)]
pub struct Topic {
    pub name: String,
    /// The reader schema's text (what the codec resolves writer schemas against).
    pub schema_text: String,
    /// The schema id of the reader schema, from its file name `<id>-<name>.avsc`
    /// (the Confluent wire format's id without a registry).
    pub schema_id: u32,
    /// Other versions of the record found beside the reader schema (by id):
    /// what older producers write, resolved against the reader.
    pub writers: Vec<(u32, apache_avro::Schema)>,
    pub schema: apache_avro::Schema,
    /// The record's full name (`namespace.name`).
    pub record: String,
    pub fields: Vec<Field>,
    /// The fields whose values decide the partition.
    pub key: Vec<String>,
    /// The event-time field.
    pub time: String,
}

impl Topic {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// One row per key and window; contributions merged by each column's rule.
    Rollup,
    /// One row per message; its identity is (partition, offset).
    Append,
    /// One row per key that never ages out (the copier's tables).
    Latest,
}

impl TableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Rollup => "rollup",
            TableKind::Append => "append",
            TableKind::Latest => "latest",
        }
    }
}

/// A table's time windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Window {
    /// A `[time]` setting of the cluster file: `minute_window` or `hour_window`.
    Named(String),
    Fixed(Duration),
}

/// How a table's rows are written, which follows from its merge rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePath {
    /// Every merge commutes exactly in SQL: `INSERT ... ON DUPLICATE KEY
    /// UPDATE` expressions, no read.
    Blind,
    /// Some merge does not (a sketch, a float sum): the stored rows are read
    /// under lock and the contributions folded in offset order.
    Fold,
    /// One row per message (append): a plain INSERT behind the fence.
    Insert,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// Index into [`Pipeline::topics`].
    pub topic: usize,
    pub kind: TableKind,
    /// Windowed tables (rollup, append): the window and the time column cut from the event time.
    pub window: Option<Window>,
    pub time_column: Option<String>,
    /// What identifies a row (rollup, latest: the merge key; append: partition and offset).
    pub key: Vec<String>,
    pub indexes: Vec<Index>,
    /// The read table group: tables switched together at cutover.
    pub group: String,
    /// Overrides `[time] retention` for this table.
    pub retention: Option<Duration>,
    pub columns: Vec<Column>,
    pub write_path: WritePath,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Positions of the key columns in [`Table::columns`].
    pub fn key_positions(&self) -> Vec<usize> {
        self.key.iter().filter_map(|k| self.column_index(k)).collect()
    }

    /// The primary key: the key, then the time column when the key lacks it
    /// (MySQL requires the partitioning column in every unique key).
    pub fn primary_key(&self) -> Vec<&str> {
        let mut pk: Vec<&str> = self.key.iter().map(String::as_str).collect();
        if let Some(t) = &self.time_column {
            if !pk.contains(&t.as_str()) {
                pk.push(t);
            }
        }
        pk
    }

    /// The `min_by` / `max_by` / `first` / `last` families, by column
    /// position, in first-member order: every writer (the consumer's merges,
    /// its SQL, the copier's image merges) applies the same ones.
    pub fn by_groups(&self) -> Vec<ByGroup> {
        let mut out: Vec<ByGroup> = Vec::new();
        for (i, c) in self.columns.iter().enumerate() {
            let (by, min) = match &c.merge {
                Some(Merge::MinBy(by)) => (by.as_str(), true),
                Some(Merge::MaxBy(by)) => (by.as_str(), false),
                m @ Some(Merge::First | Merge::Last) => match event_time_column(self, m) {
                    Some(t) => (t.name.as_str(), matches!(m, Some(Merge::First))),
                    None => continue,
                },
                _ => continue,
            };
            // Checked at load: `by` names a column of the table.
            let Some(by) = self.column_index(by) else { continue };
            match out.iter_mut().find(|g| g.by == by && g.min == min) {
                Some(g) => g.members.push(i),
                None => out.push(ByGroup { by, min, members: vec![i] }),
            }
        }
        out
    }

    /// Whether rows age out with their time partitions.
    pub fn is_windowed(&self) -> bool {
        self.window.is_some()
    }

    /// The time column holds one value per window (the window's start).
    pub fn time_is_window_start(&self) -> bool {
        self.time_column.as_deref().and_then(|t| self.column(t)).is_some_and(|c| c.source == Source::WindowStart)
    }
}

/// A `min_by`/`max_by` family: its members take the values of the
/// contribution with the smallest (`min`) or largest `by`, ties broken by the
/// members' own values in column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByGroup {
    pub by: usize,
    pub min: bool,
    pub members: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub sql_type: SqlType,
    pub source: Source,
    /// None for key columns and those derived from the key (the keyspace id).
    pub merge: Option<Merge>,
    pub nullable: bool,
    /// Text of 1 or more printable ASCII characters, no spaces (ids, fingerprints):
    /// anything else is a dead letter.
    pub printable: bool,
    /// Written above the column in the DDL.
    pub comment: Option<String>,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A field of the topic's record.
    Field(String),
    /// The start of the window the event time falls in.
    WindowStart,
    /// The event time itself.
    EventTime,
    /// The vindex of the sharding column: 8 bytes.
    KeyspaceId,
    /// Where the message sat in the topic (an append table's identity).
    Partition,
    Offset,
    Constant(Constant),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    Int(i64),
    Text(String),
}

/// The column `first` (min) or `last` (max) orders by: the event time's.
pub fn event_time_column<'a>(table: &'a Table, merge: &Option<Merge>) -> Option<&'a Column> {
    let want = match merge {
        Some(Merge::First) => Merge::Min,
        Some(Merge::Last) => Merge::Max,
        _ => return None,
    };
    table.columns.iter().find(|c| c.source == Source::EventTime && c.merge.as_ref() == Some(&want))
}
