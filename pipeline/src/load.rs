//! From the file to a checked [`Pipeline`]: every rule a job relies on is
//! checked here, once, with a one-line error naming the table, the column
//! and the field it is about.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use crate::avro::{record_fields, FieldKind};
use crate::merge::Merge;
use crate::model::*;
use crate::raw::{RawColumn, RawPipeline, RawTable};
use crate::sqltype::{Class, SqlType};

/// What is wrong with a description, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PipelineError {
    /// `topic T`, `table T`, `table T, column C`, or empty for the file as a whole.
    pub place: String,
    pub why: String,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.place.is_empty() {
            write!(f, "{}", self.why)
        } else {
            write!(f, "{}: {}", self.place, self.why)
        }
    }
}

fn err(place: impl Into<String>, why: impl Into<String>) -> PipelineError {
    PipelineError { place: place.into(), why: why.into() }
}

/// Reads a schema file named by the description (relative to it).
pub trait SchemaSource {
    fn read(&self, relative: &str) -> Result<String, String>;

    /// The other `<id>-<name>.avsc` files in the directory of `relative`
    /// (relative paths): earlier versions a producer may still write.
    fn siblings(&self, _relative: &str) -> Vec<String> {
        Vec::new()
    }
}

/// Schema files beside the description on disk.
pub struct Dir<'a>(pub &'a Path);

impl SchemaSource for Dir<'_> {
    fn read(&self, relative: &str) -> Result<String, String> {
        let path = self.0.join(relative);
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    fn siblings(&self, relative: &str) -> Vec<String> {
        let (dir, own) = relative.rsplit_once('/').unwrap_or(("", relative));
        let Ok(entries) = std::fs::read_dir(self.0.join(dir)) else { return Vec::new() };
        let mut out: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != own && n.ends_with(".avsc"))
            .map(|n| if dir.is_empty() { n } else { format!("{dir}/{n}") })
            .collect();
        out.sort();
        out
    }
}

/// Parses and checks a description's text.
pub fn parse(text: &str, schemas: &dyn SchemaSource) -> Result<Pipeline, PipelineError> {
    let raw: RawPipeline = toml::from_str(text).map_err(|e| err("", one_line(&e.to_string())))?;
    check_name(&raw.name).map_err(|why| err("name", why))?;
    let sharding = Sharding {
        column: raw.sharding.column.clone(),
        vindex: match raw.sharding.vindex.as_str() {
            "hash" => Vindex::Hash,
            other => {
                return Err(err(
                    "[sharding] vindex",
                    format!("unknown vindex {other:?} (hash: Vitess' hash of an unsigned 64-bit integer)"),
                ))
            }
        },
    };
    let mut topics = Vec::new();
    for t in &raw.topics {
        topics.push(topic(t, schemas, &sharding)?);
    }
    if topics.is_empty() {
        return Err(err("", "no [[topics]]"));
    }
    let mut seen = HashSet::new();
    for t in &topics {
        if !seen.insert(&t.name) {
            return Err(err(format!("topic {}", t.name), "named twice"));
        }
    }
    let mut tables = Vec::new();
    for t in &raw.tables {
        let resolved = resolve_like(t, &raw.tables)?;
        let table = table(&resolved, &topics, &sharding)?;
        if tables.iter().any(|x: &Table| x.name == table.name) {
            return Err(err(format!("table {}", table.name), "named twice"));
        }
        tables.push(table);
    }
    if tables.is_empty() {
        return Err(err("", "no [[tables]]"));
    }
    Ok(Pipeline { name: raw.name, sharding, topics, tables })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} must be 1-64 of a-z, 0-9 and _"))
    }
}

/// A plain SQL identifier, safe to splice into statements unquoted.
pub fn check_identifier(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && s.len() <= 64 {
        return Ok(());
    }
    Err(format!("{s:?} is not a plain identifier (letters, digits, _; at most 64)"))
}

fn topic(t: &crate::raw::RawTopic, schemas: &dyn SchemaSource, sharding: &Sharding) -> Result<Topic, PipelineError> {
    let place = format!("topic {}", t.name);
    let valid_name = !t.name.is_empty()
        && t.name.len() <= 200
        && t.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid_name {
        return Err(err(&place, "a topic name is 1-200 of letters, digits, '.', '_' and '-'"));
    }
    let file_name = t.schema.rsplit('/').next().unwrap_or_default();
    let schema_id: u32 = file_name.split_once('-').and_then(|(id, _)| id.parse().ok()).ok_or_else(|| {
        err(
            format!("{place}, schema"),
            format!("{file_name:?} is not named <id>-<name>.avsc (the id is the wire format's)"),
        )
    })?;
    let text = schemas.read(&t.schema).map_err(|why| err(format!("{place}, schema"), why))?;
    let schema = apache_avro::Schema::parse_str(&text)
        .map_err(|e| err(format!("{place}, schema {}", t.schema), one_line(&e.to_string())))?;
    let (record, fields) = record_fields(&schema).map_err(|why| err(format!("{place}, schema {}", t.schema), why))?;
    // Earlier versions of the record beside the reader schema: messages a
    // producer wrote before a field was added still decode (resolved to the reader).
    let mut writers = Vec::new();
    for other in schemas.siblings(&t.schema) {
        let name = other.rsplit('/').next().unwrap_or_default();
        let Some(id) = name.split_once('-').and_then(|(id, _)| id.parse::<u32>().ok()) else { continue };
        let Ok(text) = schemas.read(&other) else { continue };
        let Ok(parsed) = apache_avro::Schema::parse_str(&text) else { continue };
        if record_fields(&parsed).is_ok_and(|(r, _)| r == record) && id != schema_id {
            writers.push((id, parsed));
        }
    }
    let out = Topic {
        name: t.name.clone(),
        writers,
        schema_id,
        schema_text: text,
        schema,
        record,
        fields,
        key: t.key.clone(),
        time: t.time.clone(),
    };
    for k in &t.key {
        if out.field(k).is_none() {
            return Err(err(format!("{place}, key field {k}"), "not a field of the schema"));
        }
    }
    if !t.key.contains(&sharding.column) {
        return Err(err(
            format!("{place}, key"),
            format!("must hold the sharding field {} (a key's rows must land on one partition)", sharding.column),
        ));
    }
    match out.field(&t.time) {
        Some(f) if matches!(f.kind, FieldKind::TimestampMillis | FieldKind::TimestampMicros) && !f.nullable => {}
        Some(_) => {
            return Err(err(
                format!("{place}, time field {}", t.time),
                "must be a non-null timestamp-millis or timestamp-micros",
            ))
        }
        None => return Err(err(format!("{place}, time field {}", t.time), "not a field of the schema")),
    }
    match out.field(&sharding.column) {
        Some(f) if matches!(f.kind, FieldKind::Long | FieldKind::Int) && !f.nullable => {}
        _ => {
            return Err(err(
                format!("{place}, field {}", sharding.column),
                "the sharding field must be a non-null long (the hash vindex takes an unsigned 64-bit integer)",
            ))
        }
    }
    Ok(out)
}

/// A table with `like = "other"` takes the other's topic, kind, key, indexes
/// and columns, and keeps its own name, window, group and retention.
fn resolve_like(t: &RawTable, all: &[RawTable]) -> Result<RawTable, PipelineError> {
    let Some(like) = &t.like else {
        return Ok(RawTable { like: None, ..clone_raw(t) });
    };
    let base = all.iter().find(|b| &b.name == like && b.like.is_none()).ok_or_else(|| {
        err(format!("table {}", t.name), format!("like = {like:?} names no table (without a like of its own)"))
    })?;
    let mut out = clone_raw(base);
    out.name.clone_from(&t.name);
    out.like = None;
    if t.topic.is_some() || t.kind.is_some() || t.key.is_some() || t.columns.is_some() || t.indexes.is_some() {
        return Err(err(
            format!("table {}", t.name),
            "with like, only window, time_column, group and retention may be set",
        ));
    }
    out.window = t.window.clone().or(out.window);
    out.time_column = t.time_column.clone().or(out.time_column);
    out.group = t.group.clone().or(out.group);
    out.retention = t.retention.clone().or(out.retention);
    Ok(out)
}

fn clone_raw(t: &RawTable) -> RawTable {
    RawTable {
        name: t.name.clone(),
        like: t.like.clone(),
        topic: t.topic.clone(),
        kind: t.kind.clone(),
        window: t.window.clone(),
        time_column: t.time_column.clone(),
        key: t.key.clone(),
        indexes: t.indexes.clone(),
        group: t.group.clone(),
        retention: t.retention.clone(),
        columns: t.columns.clone(),
    }
}

fn table(t: &RawTable, topics: &[Topic], sharding: &Sharding) -> Result<Table, PipelineError> {
    let place = format!("table {}", t.name);
    check_identifier(&t.name).map_err(|why| err(&place, why))?;
    if t.name.starts_with("dw_") {
        return Err(err(&place, "names starting with dw_ are the tool's own tables"));
    }
    let topic_name = t.topic.as_deref().ok_or_else(|| err(&place, "topic is missing"))?;
    let topic_index = topics
        .iter()
        .position(|x| x.name == topic_name)
        .ok_or_else(|| err(format!("{place}, topic"), format!("{topic_name:?} is not a [[topics]] name")))?;
    let topic = &topics[topic_index];
    let kind = match t.kind.as_deref() {
        Some("rollup") => TableKind::Rollup,
        Some("append") => TableKind::Append,
        Some("latest") => TableKind::Latest,
        Some(other) => return Err(err(format!("{place}, kind"), format!("{other:?} is not rollup, append or latest"))),
        None => return Err(err(&place, "kind is missing (rollup, append or latest)")),
    };
    let mut columns = Vec::new();
    for c in t.columns.as_deref().unwrap_or_default() {
        let col = column(c, &place, topic)?;
        if columns.iter().any(|x: &Column| x.name == col.name) {
            return Err(err(format!("{place}, column {}", col.name), "named twice"));
        }
        columns.push(col);
    }
    if columns.is_empty() {
        return Err(err(&place, "no columns"));
    }
    let key = t.key.clone().unwrap_or_default();
    if key.is_empty() {
        return Err(err(&place, "key is missing"));
    }
    let window = match (&t.window, kind) {
        (None, TableKind::Latest) => None,
        (Some(_), TableKind::Latest) => {
            return Err(err(format!("{place}, window"), "a latest table never ages out: it has no window"))
        }
        (None, _) => return Err(err(&place, "window is missing (minute_window, hour_window or a duration)")),
        (Some(w), _) => Some(parse_window(w).map_err(|why| err(format!("{place}, window"), why))?),
    };
    let retention = match &t.retention {
        Some(_) if kind == TableKind::Latest => {
            return Err(err(format!("{place}, retention"), "a latest table never ages out"))
        }
        Some(r) => Some(humantime::parse_duration(r).map_err(|e| err(format!("{place}, retention"), e.to_string()))?),
        None => None,
    };
    let group = t.group.clone().unwrap_or_else(|| t.name.clone());
    // The routing tables hold a group's name in a VARCHAR(32).
    if check_identifier(&group).is_err() || group.len() > 32 {
        return Err(err(
            format!("{place}, group"),
            format!("{group:?} is not a plain identifier of at most 32 characters"),
        ));
    }
    let table = Table {
        name: t.name.clone(),
        topic: topic_index,
        kind,
        window,
        time_column: t.time_column.clone(),
        key,
        indexes: t
            .indexes
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|i| Index { name: i.name, columns: i.columns })
            .collect(),
        group,
        retention,
        columns,
        write_path: WritePath::Insert,
    };
    check_table(table, topic, sharding)
}

fn parse_window(w: &str) -> Result<Window, String> {
    match w {
        "minute_window" | "hour_window" => Ok(Window::Named(w.to_string())),
        literal => match humantime::parse_duration(literal) {
            Ok(d) if d.as_secs() > 0 && d.subsec_nanos() == 0 && 86_400 % d.as_secs() == 0 => Ok(Window::Fixed(d)),
            Ok(_) => Err(format!("{literal:?}: a window is whole seconds dividing a day")),
            Err(_) => Err(format!("{literal:?} is neither minute_window, hour_window nor a duration")),
        },
    }
}

fn column(c: &RawColumn, table: &str, topic: &Topic) -> Result<Column, PipelineError> {
    let place = format!("{table}, column {}", c.name);
    check_identifier(&c.name).map_err(|why| err(&place, why))?;
    let sql_type = SqlType::parse(&c.sql_type).map_err(|why| err(format!("{place}, type"), why))?;
    let source = match (&c.from, &c.derive, &c.value) {
        (Some(field), None, None) => Source::Field(field.clone()),
        (None, Some(d), None) => match d.as_str() {
            "window_start" => Source::WindowStart,
            "event_time" => Source::EventTime,
            "keyspace_id" => Source::KeyspaceId,
            "partition" => Source::Partition,
            "offset" => Source::Offset,
            other => {
                return Err(err(
                    format!("{place}, derive"),
                    format!("{other:?} is not window_start, event_time, keyspace_id, partition or offset"),
                ))
            }
        },
        (None, None, Some(v)) => Source::Constant(match v {
            toml::Value::Integer(i) => Constant::Int(*i),
            toml::Value::String(s) => Constant::Text(s.clone()),
            _ => return Err(err(format!("{place}, value"), "a constant is an integer or a string")),
        }),
        _ => return Err(err(&place, "exactly one of from (a field), derive or value")),
    };
    let merge = match &c.merge {
        Some(m) => Some(Merge::parse(m).map_err(|why| err(format!("{place}, merge"), why))?),
        None => None,
    };
    check_source_type(&source, &sql_type, c.nullable, topic).map_err(|why| err(&place, why))?;
    if let Some(m) = &merge {
        m.fits(sql_type.class()).map_err(|why| err(format!("{place}, merge {m}"), why))?;
    }
    if c.printable && sql_type.class() != Class::Text {
        return Err(err(format!("{place}, printable"), "only a text column can require printable text"));
    }
    Ok(Column {
        name: c.name.clone(),
        sql_type,
        source,
        merge,
        nullable: c.nullable,
        printable: c.printable,
        comment: c.comment.clone(),
    })
}

/// Whether the source's values can be stored in the column's type.
fn check_source_type(source: &Source, t: &SqlType, nullable: bool, topic: &Topic) -> Result<(), String> {
    let class = t.class();
    let need = |ok: bool, what: &str| if ok { Ok(()) } else { Err(format!("{what} cannot be stored as {t}")) };
    match source {
        Source::Field(name) => {
            let f = topic.field(name).ok_or_else(|| {
                format!("field {name}: not a field of {}'s schema (or of a type no column can hold)", topic.name)
            })?;
            if f.nullable && !nullable {
                return Err(format!("field {name}: nullable in the schema, so the column needs nullable = true"));
            }
            let ok = match f.kind {
                FieldKind::Int | FieldKind::Long | FieldKind::Boolean => {
                    class == Class::Integer || class == Class::Decimal
                }
                FieldKind::Double => matches!(class, Class::Float | Class::Decimal),
                FieldKind::String | FieldKind::StringArray => class == Class::Text,
                FieldKind::Bytes => class == Class::Bytes,
                FieldKind::TimestampMillis | FieldKind::TimestampMicros => class == Class::DateTime,
            };
            need(ok, &format!("field {name} ({:?})", f.kind))
        }
        Source::WindowStart | Source::EventTime => need(class == Class::DateTime, "a time"),
        Source::KeyspaceId => need(class == Class::Bytes && t.max_bytes() == Some(8), "a keyspace id (8 bytes)"),
        Source::Partition | Source::Offset => need(class == Class::Integer && !t.unsigned, "a partition or offset"),
        Source::Constant(Constant::Int(_)) => need(class == Class::Integer, "an integer constant"),
        Source::Constant(Constant::Text(_)) => need(class == Class::Text, "a text constant"),
    }
}

/// The rules that involve several columns, and the write path they give.
fn check_table(mut table: Table, topic: &Topic, sharding: &Sharding) -> Result<Table, PipelineError> {
    let place = format!("table {}", table.name);
    for k in &table.key {
        let c = table.column(k).ok_or_else(|| err(format!("{place}, key column {k}"), "not a column of the table"))?;
        if c.nullable {
            return Err(err(format!("{place}, key column {k}"), "a key column cannot be nullable"));
        }
        if c.merge.is_some() {
            return Err(err(format!("{place}, key column {k}"), "a key column has no merge rule"));
        }
    }
    // SQL's LEAST, GREATEST and + give NULL for a NULL operand: merges stay on values.
    if let Some(c) = table.columns.iter().find(|c| c.nullable && c.merge.is_some()) {
        return Err(err(format!("{place}, column {}", c.name), "a merged column cannot be nullable"));
    }
    let shard_col = table
        .columns
        .iter()
        .find(|c| c.source == Source::Field(sharding.column.clone()))
        .ok_or_else(|| err(&place, format!("no column holds the sharding field {}", sharding.column)))?;
    if !table.columns.iter().any(|c| c.source == Source::KeyspaceId) {
        return Err(err(&place, "needs a keyspace_id column (derive = \"keyspace_id\"): the comparators bucket by it"));
    }
    match table.kind {
        TableKind::Rollup | TableKind::Latest => {
            if !table.key.contains(&shard_col.name) {
                return Err(err(
                    format!("{place}, key"),
                    format!("the sharding column {} must be part of the key", shard_col.name),
                ));
            }
            // Every writer of a row must come from one partition: the fence
            // lock of that partition is what serializes them.
            for f in &topic.key {
                let in_key =
                    table.key.iter().any(|k| table.column(k).is_some_and(|c| c.source == Source::Field(f.clone())));
                if !in_key {
                    return Err(err(
                        format!("{place}, key"),
                        format!("must hold a column from topic key field {f} (rows of one key must come from one partition)"),
                    ));
                }
            }
            if table.kind == TableKind::Latest {
                // The copier re-applies whole row images over what the
                // consumer wrote: a merge applied twice must change nothing.
                if let Some(c) = table.columns.iter().find(|c| matches!(c.merge, Some(Merge::Sum | Merge::DdSketch))) {
                    return Err(err(
                        format!("{place}, column {}", c.name),
                        "a latest table is copied by row images: only idempotent merges (min, max, min_by, max_by, first, last)",
                    ));
                }
            }
            for c in &table.columns {
                let from_key = table.key.contains(&c.name) || c.source == Source::KeyspaceId;
                if !from_key && c.merge.is_none() {
                    return Err(err(
                        format!("{place}, column {}", c.name),
                        "needs a merge rule (it is not part of the key)",
                    ));
                }
                if matches!(c.source, Source::Partition | Source::Offset) {
                    return Err(err(
                        format!("{place}, column {}", c.name),
                        "partition and offset belong to append tables",
                    ));
                }
            }
        }
        TableKind::Append => {
            let identity: Vec<&Source> = table.key.iter().filter_map(|k| table.column(k)).map(|c| &c.source).collect();
            if identity != [&Source::Partition, &Source::Offset] {
                return Err(err(
                    format!("{place}, key"),
                    "an append table's key is its (partition, offset) columns, in that order",
                ));
            }
            if let Some(c) = table.columns.iter().find(|c| c.merge.is_some()) {
                return Err(err(
                    format!("{place}, column {}", c.name),
                    "an append table writes each message once: no merge",
                ));
            }
        }
    }
    // Windowed: the time column is cut from the event time.
    match (&table.window, &table.time_column) {
        (Some(_), Some(t)) => {
            let c =
                table.column(t).ok_or_else(|| err(format!("{place}, time_column {t}"), "not a column of the table"))?;
            let ok = match table.kind {
                TableKind::Rollup => c.source == Source::WindowStart && table.key.contains(t),
                _ => matches!(c.source, Source::EventTime | Source::WindowStart),
            };
            if !ok {
                return Err(err(
                    format!("{place}, time_column {t}"),
                    "a window needs a time column derived from the event time (rollup: derive = \"window_start\", in the key)",
                ));
            }
        }
        (Some(_), None) => return Err(err(&place, "a windowed table needs time_column")),
        (None, Some(_)) => return Err(err(format!("{place}, time_column"), "only windowed tables have one")),
        (None, None) => {}
    }
    if table.window.is_none() && table.columns.iter().any(|c| c.source == Source::WindowStart) {
        return Err(err(&place, "derive = \"window_start\" needs a window"));
    }
    // min_by / max_by name a column of the same table with min / max itself.
    for c in &table.columns {
        if let Some(Merge::MinBy(by) | Merge::MaxBy(by)) = &c.merge {
            let b = table.column(by).ok_or_else(|| {
                err(format!("{place}, column {}, merge", c.name), format!("{by} is not a column of the table"))
            })?;
            let want = if matches!(c.merge, Some(Merge::MinBy(_))) { Merge::Min } else { Merge::Max };
            if b.merge.as_ref() != Some(&want) {
                return Err(err(
                    format!("{place}, column {}, merge", c.name),
                    format!("{by} must itself merge with {want}"),
                ));
            }
        }
        if matches!(c.merge, Some(Merge::First | Merge::Last)) && event_time_column(&table, &c.merge).is_none() {
            return Err(err(
                format!("{place}, column {}, merge", c.name),
                "first/last need a column with derive = \"event_time\" merged with min (first) or max (last)",
            ));
        }
    }
    for i in &table.indexes {
        check_identifier(&i.name).map_err(|why| err(format!("{place}, index"), why))?;
        for c in &i.columns {
            if table.column(c).is_none() {
                return Err(err(format!("{place}, index {}", i.name), format!("{c} is not a column of the table")));
            }
        }
    }
    table.write_path = match table.kind {
        TableKind::Append => WritePath::Insert,
        _ if table.columns.iter().all(|c| c.merge.as_ref().is_none_or(|m| m.commutes_in_sql(c.sql_type.class()))) => {
            WritePath::Blind
        }
        _ => WritePath::Fold,
    };
    Ok(table)
}
