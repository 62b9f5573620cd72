//! The pipeline description compiled for the hot path: per topic, how to
//! decode it and which tables it feeds; per table, where each column's value
//! comes from, how it is checked, rendered and merged, and the fixed parts of
//! its statements. Built once per process from the cluster's pipeline.

use std::collections::HashMap;
use std::sync::Arc;

use cluster::time::TimeConfig;
use pipeline::{Class, FieldKind, Merge, Pipeline, Source, Table, TableKind, WritePath};
use topics::record::RecordReader;

/// Values a single column may hold in one statement: the statement cap is
/// 4 MiB and a literal escapes to at most twice its bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// The compiled pipeline.
#[derive(Debug)]
pub struct Shape {
    pub pipeline: Arc<Pipeline>,
    pub topics: Vec<TopicShape>,
    pub tables: Vec<TableShape>,
    /// Topic name as consumed (with the deployment's prefix) -> index in `topics`.
    pub by_name: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct TopicShape {
    /// The topic's name as consumed (with prefix).
    pub name: String,
    pub reader: RecordReader,
    /// Reader position of the event-time field, and whether it counts microseconds.
    pub time_position: usize,
    pub time_is_micros: bool,
    pub time_field: String,
    /// Reader position of the sharding field.
    pub shard_position: usize,
    pub shard_field: String,
    /// Indexes into [`Shape::tables`] of the tables fed from this topic.
    pub tables: Vec<usize>,
    /// The smallest window of those tables (seconds): lateness is judged
    /// against the end of the earliest window the message's rows land in.
    pub late_window_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    Signed,
    Unsigned,
    Float,
    Text,
    Bytes,
    /// DATETIME with this many fractional digits (0, 3 or 6 rendered as is;
    /// others through 6 digits, the value already cut to the column's precision).
    Time(u32),
    /// A ddsketch column: stored as its encoding.
    Sketch,
}

#[derive(Debug, Clone)]
pub enum ColumnSource {
    Field { position: usize, kind: FieldKind, name: String },
    WindowStart,
    EventTime,
    KeyspaceId,
    Partition,
    Offset,
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct ColumnShape {
    pub name: String,
    pub source: ColumnSource,
    pub render: Render,
    pub nullable: bool,
    pub printable: bool,
    /// Bytes and characters a value may hold (strings, bytes).
    pub max_bytes: Option<usize>,
    pub max_chars: Option<usize>,
    pub ascii: bool,
    /// Integer bounds.
    pub range: Option<(i128, i128)>,
    pub merge: Option<Merge>,
    /// Columns of a topic's tables reading one field with the same checks
    /// share this number: the field is checked and turned into a cell once
    /// per message (a fingerprint feeding three tables, a sketch feeding two).
    pub check: u32,
}

#[derive(Debug)]
pub struct TableShape {
    pub name: String,
    pub kind: TableKind,
    pub write_path: WritePath,
    pub window_secs: i64,
    pub columns: Vec<ColumnShape>,
    /// Positions of the key columns.
    pub key: Vec<usize>,
    /// Positions of the columns a merge applies to, in order (not the by-groups' members).
    pub merged: Vec<usize>,
    pub groups: Vec<pipeline::ByGroup>,
    /// `INSERT INTO t (every column) VALUES `.
    pub insert_head: String,
    /// What follows the tuples: the blind merge, the fold's overwrite, or nothing.
    pub insert_tail: String,
    /// `SELECT <i>, <every column as read back> FROM t WHERE (<key>) IN (`: a fold's stored rows.
    pub select_head: String,
}

impl Shape {
    pub fn new(pipeline: Arc<Pipeline>, time: &TimeConfig, topic_prefix: &str) -> Self {
        let mut tables: Vec<TableShape> =
            pipeline.tables.iter().enumerate().map(|(i, t)| table_shape(i, t, &pipeline, time)).collect();
        // Per topic, one number per (field, checks): see `ColumnShape::check`.
        for ti in 0..pipeline.topics.len() {
            let mut seen: Vec<(usize, String)> = Vec::new();
            for (t, table) in pipeline.tables.iter().enumerate().filter(|(_, x)| x.topic == ti) {
                for (c, col) in table.columns.iter().enumerate() {
                    let ColumnSource::Field { position, .. } = tables[t].columns[c].source else { continue };
                    let render = tables[t].columns[c].render;
                    let signature = format!("{} {} {} {render:?}", col.sql_type, col.nullable, col.printable);
                    let id = match seen.iter().position(|s| *s == (position, signature.clone())) {
                        Some(id) => id,
                        None => {
                            seen.push((position, signature));
                            seen.len() - 1
                        }
                    };
                    tables[t].columns[c].check = id as u32;
                }
            }
        }
        let topics = pipeline
            .topics
            .iter()
            .enumerate()
            .map(|(ti, t)| {
                let fed: Vec<usize> =
                    pipeline.tables.iter().enumerate().filter(|(_, x)| x.topic == ti).map(|(i, _)| i).collect();
                let late_window_secs = fed
                    .iter()
                    .map(|i| tables[*i].window_secs)
                    .filter(|w| *w > 0)
                    .min()
                    .unwrap_or_else(|| time.minute_secs());
                let field = |name: &str| t.field(name).map(|f| (f.position, f.kind));
                let (time_position, time_kind) = field(&t.time).unwrap_or((0, FieldKind::Long));
                TopicShape {
                    name: format!("{topic_prefix}{}", t.name),
                    reader: RecordReader::new(t),
                    time_position,
                    time_is_micros: time_kind == FieldKind::TimestampMicros,
                    time_field: t.time.clone(),
                    shard_position: field(&pipeline.sharding.column).map_or(0, |(p, _)| p),
                    shard_field: pipeline.sharding.column.clone(),
                    tables: fed,
                    late_window_secs,
                }
            })
            .collect::<Vec<_>>();
        let by_name = topics.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Self { pipeline, topics, tables, by_name }
    }

    /// The cluster's pipeline and `[time]`, its topics under `topic_prefix`.
    pub fn for_cluster(cluster: &cluster::config::ClusterConfig, topic_prefix: &str) -> Self {
        Self::new(cluster.pipeline.pipeline.clone(), &cluster.time, topic_prefix)
    }

    /// The topic names as consumed.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.iter().map(|t| t.name.clone()).collect()
    }
}

fn table_shape(index: usize, t: &Table, pipeline: &Pipeline, time: &TimeConfig) -> TableShape {
    let topic = pipeline.topic_of(t);
    let columns: Vec<ColumnShape> = t
        .columns
        .iter()
        .map(|c| {
            let class = c.sql_type.class();
            let render = match (&c.merge, class) {
                (Some(Merge::DdSketch), _) => Render::Sketch,
                (_, Class::Integer) if c.sql_type.unsigned => Render::Unsigned,
                (_, Class::Integer) => Render::Signed,
                (_, Class::Float | Class::Decimal) => Render::Float,
                (_, Class::Text) => Render::Text,
                (_, Class::Bytes) => Render::Bytes,
                (_, Class::DateTime) => Render::Time(c.sql_type.fsp()),
            };
            let source = match &c.source {
                Source::Field(name) => match topic.field(name) {
                    Some(f) => ColumnSource::Field { position: f.position, kind: f.kind, name: name.clone() },
                    None => ColumnSource::Int(0),
                },
                Source::WindowStart => ColumnSource::WindowStart,
                Source::EventTime => ColumnSource::EventTime,
                Source::KeyspaceId => ColumnSource::KeyspaceId,
                Source::Partition => ColumnSource::Partition,
                Source::Offset => ColumnSource::Offset,
                Source::Constant(pipeline::Constant::Int(i)) => ColumnSource::Int(*i),
                Source::Constant(pipeline::Constant::Text(s)) => ColumnSource::Text(s.clone()),
            };
            let ascii = c.sql_type.charset.as_ref().is_some_and(|(cs, _)| cs.eq_ignore_ascii_case("ascii"));
            ColumnShape {
                name: c.name.clone(),
                source,
                render,
                nullable: c.nullable,
                printable: c.printable,
                max_bytes: c.sql_type.max_bytes().map(|b| b.min(MAX_VALUE_BYTES)),
                max_chars: c.sql_type.max_chars(),
                ascii,
                range: c.sql_type.int_range(),
                merge: c.merge.clone(),
                check: 0,
            }
        })
        .collect();
    let groups = t.by_groups();
    // Every other rule is applied column by column.
    let merged: Vec<usize> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(i, c)| c.merge.is_some() && !groups.iter().any(|g| g.members.contains(i)))
        .map(|(i, _)| i)
        .collect();
    let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    let insert_tail = match t.write_path {
        WritePath::Blind => pipeline::on_duplicate(t).unwrap_or_default(),
        // The row is folded onto the stored one already: the write overwrites.
        WritePath::Fold => {
            let set: Vec<String> =
                t.columns.iter().filter(|c| c.merge.is_some()).map(|c| format!("{0} = VALUES({0})", c.name)).collect();
            format!(" ON DUPLICATE KEY UPDATE {}", set.join(", "))
        }
        WritePath::Insert => String::new(),
    };
    let read_back: Vec<String> = t
        .columns
        .iter()
        .map(|c| match c.sql_type.class() {
            // Independent of the session's time zone.
            Class::DateTime => format!("TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {})", c.name),
            _ => c.name.clone(),
        })
        .collect();
    let key_names: Vec<&str> = t.key.iter().map(String::as_str).collect();
    TableShape {
        name: t.name.clone(),
        kind: t.kind,
        write_path: t.write_path,
        window_secs: time.table_window_secs(t),
        key: t.key_positions(),
        merged,
        groups,
        insert_head: format!("INSERT INTO {} ({}) VALUES ", t.name, names.join(", ")),
        insert_tail,
        select_head: format!(
            "SELECT {index}, {} FROM {} WHERE ({}) IN (",
            read_back.join(", "),
            t.name,
            key_names.join(", ")
        ),
        columns,
    }
}
