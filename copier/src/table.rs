//! The copied table, derived from its pipeline description (a `latest`
//! table): its columns' kinds, its key, its sharding column, its merge rule
//! and the SQL that reads and writes it.
//!
//! [`CopiedTable::check_source`] refuses to start when the source table does
//! not look exactly like the description (columns and their order and types,
//! primary key, key collations), since every later step (key order,
//! position-mapped binlog rows, the merge rule) relies on that shape.

use cluster::sql;
use mysql_async::prelude::Queryable;
use pipeline::{Merge, Pipeline, Source, TableKind};

use crate::error::CopierError;
use crate::row::{Cell, Image, Key, Kind, MergeStep};

/// One column of the copied table.
#[derive(Debug, Clone)]
pub struct ColumnSpec {
    pub name: String,
    /// As the description writes it (error messages, the source check).
    pub sql_type: pipeline::SqlType,
    pub kind: Kind,
    /// What the snapshot reads of it and how the copy writes it.
    pub role: Role,
}

/// What a column is to the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Part of the primary key: read and decoded (fences, order, deletes).
    Key,
    /// The vindex of the sharding column: recomputed, never read.
    KeyspaceId,
    /// Any other column: read quoted by the source server, written as is.
    Value,
}

/// A `latest` table of a pipeline, as the copier reads and writes it.
#[derive(Debug, Clone)]
pub struct CopiedTable {
    pub name: String,
    /// Every column, in the table's order (the source's ordinal order).
    pub columns: Vec<ColumnSpec>,
    /// Positions of the primary key's columns, in key order.
    pub key: Vec<usize>,
    /// Index into the key of the sharding column (its value feeds the vindex).
    pub sharding: usize,
    /// The merge rule, on column positions (see [`Image::merge`]).
    pub merge: Vec<MergeStep>,
    /// Maximal runs of consecutive value columns, in column order: one
    /// server-quoted string each in a snapshot row.
    runs: Vec<Vec<usize>>,
    /// A snapshot row's `VALUES` tuple, part by part (runs collapsed).
    layout: Vec<Part>,
    /// The description's table (the upsert is `pipeline::upsert` of it).
    pub described: pipeline::Table,
}

fn config(why: String) -> CopierError {
    CopierError::Config(why)
}

impl CopiedTable {
    /// The table `name` of `pipeline`, or why it cannot be copied: not a
    /// table of the pipeline, not a `latest` one, or a column the copier
    /// cannot carry exactly.
    pub fn new(pipeline: &Pipeline, name: &str) -> Result<Self, CopierError> {
        let latest: Vec<&str> =
            pipeline.unbounded().filter(|t| t.kind == TableKind::Latest).map(|t| t.name.as_str()).collect();
        let described = pipeline.table(name).filter(|t| t.kind == TableKind::Latest).ok_or_else(|| {
            config(format!(
                "table {name:?} is not a latest table of pipeline {} (the copier copies {}; the other tables age in \
                 through dual writes)",
                pipeline.name,
                if latest.is_empty() { "none of its tables".to_owned() } else { latest.join(", ") }
            ))
        })?;
        let place = |c: &str| format!("table {name}, column {c}");
        let shard_column = described
            .columns
            .iter()
            .position(|c| c.source == Source::Field(pipeline.sharding.column.clone()))
            .ok_or_else(|| config(format!("table {name}: no column holds the sharding field")))?;
        let key: Vec<usize> = described.key_positions();
        let sharding = key
            .iter()
            .position(|&p| p == shard_column)
            .ok_or_else(|| config(format!("table {name}: the sharding column is not in the key")))?;
        let mut columns = Vec::new();
        for (i, c) in described.columns.iter().enumerate() {
            let kind = Kind::of(&c.sql_type).map_err(|why| config(format!("{}: {why}", place(&c.name))))?;
            if c.nullable {
                return Err(config(format!("{}: nullable columns are not copied", place(&c.name))));
            }
            let role = if key.contains(&i) {
                Role::Key
            } else if c.source == Source::KeyspaceId {
                Role::KeyspaceId
            } else {
                Role::Value
            };
            columns.push(ColumnSpec { name: c.name.clone(), sql_type: c.sql_type.clone(), kind, role });
        }
        if !matches!(columns[shard_column].kind, Kind::UInt { .. } | Kind::Int { .. }) {
            return Err(config(format!("{}: the hash vindex takes an integer", place(&columns[shard_column].name))));
        }
        let merge = merge_steps(described).map_err(config)?;
        if described.write_path != pipeline::WritePath::Blind {
            return Err(config(format!("table {name}: its merge rule is not written blind")));
        }
        let runs = value_runs(&columns);
        let layout = layout(&columns, &key, &runs);
        Ok(Self { name: name.to_owned(), columns, key, sharding, merge, runs, layout, described: described.clone() })
    }

    /// The primary key's column names, in key order.
    pub fn key_names(&self) -> Vec<&str> {
        self.key.iter().map(|&p| self.columns[p].name.as_str()).collect()
    }

    /// An image from every column's value in column order (a binlog row
    /// image, or a test's row). The keyspace id columns are not read: they
    /// are recomputed from the sharding column with the vindex.
    pub fn image(&self, values: Vec<mysql_async::Value>) -> Result<Image, String> {
        self.image_with(values, &mut KeyspaceIds::default())
    }

    /// [`Self::image`] with the vindex remembered over consecutive images
    /// (an update's before and after images share their sharding value).
    pub fn image_with(&self, values: Vec<mysql_async::Value>, ids: &mut KeyspaceIds) -> Result<Image, String> {
        if values.len() != self.columns.len() {
            return Err(format!("expected {} columns, got {}", self.columns.len(), values.len()));
        }
        let mut cells = Vec::with_capacity(values.len());
        for (c, v) in self.columns.iter().zip(values) {
            let cell = match c.role {
                Role::KeyspaceId => Cell::Bytes(Vec::new()),
                _ => c.kind.cell(v).map_err(|why| format!("{}: {why}", c.name))?,
            };
            cells.push(cell);
        }
        Ok(self.image_of_cells_with(cells, ids))
    }

    /// An image from its cells (the keyspace id columns' are left empty:
    /// [`Self::values_tuple`] writes the image's keyspace id there).
    pub fn image_of_cells(&self, cells: Vec<Cell>) -> Image {
        self.image_of_cells_with(cells, &mut KeyspaceIds::default())
    }

    fn image_of_cells_with(&self, mut cells: Vec<Cell>, ids: &mut KeyspaceIds) -> Image {
        let key = Key(self.key.iter().map(|&p| cells[p].clone()).collect());
        let keyspace_id = ids.of(key.0[self.sharding].as_u64().unwrap_or_default());
        for (c, cell) in self.columns.iter().zip(cells.iter_mut()) {
            if c.role == Role::KeyspaceId {
                *cell = Cell::Bytes(Vec::new());
            }
        }
        Image { key, cells, keyspace_id }
    }

    /// `cluster::vindex::keyspace_id` of the key's sharding column.
    pub fn keyspace_id(&self, key: &Key) -> [u8; 8] {
        cluster::vindex::keyspace_id(key.0[self.sharding].as_u64().unwrap_or_default())
    }

    /// The image as a `VALUES` tuple of every column.
    pub fn values_tuple(&self, image: &Image) -> String {
        let mut out = String::with_capacity(64 * image.cells.len());
        out.push('(');
        for (i, (cell, c)) in image.cells.iter().zip(&self.columns).enumerate() {
            if i > 0 {
                out.push(',');
            }
            if c.role == Role::KeyspaceId {
                sql::push_hex(&mut out, &image.keyspace_id);
            } else {
                cell.push_literal(&mut out);
            }
        }
        out.push(')');
        out
    }

    /// The merge-rule upsert of a batch of tuples: the consumer's statement
    /// (`pipeline::upsert` of the table's rules), so both writers apply one rule.
    pub fn upsert_sql(&self, tuples: &[String]) -> String {
        pipeline::upsert(&self.described, &tuples.join(",")).unwrap_or_default()
    }

    /// Deletes a batch of keys (`Key::tuple`s).
    pub fn delete_sql(&self, keys: &[String]) -> String {
        format!("DELETE FROM {} WHERE ({}) IN ({})", self.name, self.key_names().join(", "), keys.join(","))
    }

    /// The next chunk of the snapshot after `after` (everything when `None`),
    /// in primary-key order: the key columns, then each run of consecutive
    /// value columns as one string, quoted by the source server while it
    /// reads the row (`QUOTE()` for text and datetimes, `HEX()` for bytes,
    /// integers as they are): the copier then neither decodes those columns
    /// nor escapes them again, which was most of its CPU per row. `QUOTE()`
    /// escapes `\`, `'`, NUL and Ctrl-Z (the session's sql_mode never has
    /// NO_BACKSLASH_ESCAPES) and renders a DATETIME as the literal it is read
    /// back from, the same on MariaDB and MySQL 8. The row comparison is
    /// spelled out because MariaDB's range optimizer does not turn
    /// `(a, b) > (x, y)` into an index range.
    pub fn copy_chunk_sql(&self, after: Option<&Key>, limit: usize) -> String {
        let names = self.key_names();
        let filter = match after {
            None => String::new(),
            Some(key) => {
                let literals: Vec<String> = key
                    .0
                    .iter()
                    .map(|c| {
                        let mut s = String::new();
                        c.push_literal(&mut s);
                        s
                    })
                    .collect();
                let disjuncts: Vec<String> = (0..names.len())
                    .map(|i| {
                        let mut terms: Vec<String> =
                            (0..i).map(|j| format!("{} = {}", names[j], literals[j])).collect();
                        terms.push(format!("{} > {}", names[i], literals[i]));
                        if terms.len() == 1 {
                            terms.remove(0)
                        } else {
                            format!("({})", terms.join(" AND "))
                        }
                    })
                    .collect();
                format!("WHERE {} ", disjuncts.join(" OR "))
            }
        };
        let mut select: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        for run in &self.runs {
            let parts: Vec<String> = run.iter().map(|&p| quoted(&self.columns[p])).collect();
            select.push(format!("CONCAT_WS(',', {})", parts.join(", ")));
        }
        format!("SELECT {} FROM {} {filter}ORDER BY {} LIMIT {limit}", select.join(", "), self.name, names.join(", "))
    }

    /// A snapshot row as [`Self::copy_chunk_sql`] selects it, as the copy writes it.
    pub fn copy_row(&self, values: Vec<mysql_async::Value>, ids: &mut KeyspaceIds) -> Result<CopyRow, String> {
        let runs = self.runs.len();
        if values.len() != self.key.len() + runs {
            return Err(format!("expected {} columns, got {}", self.key.len() + runs, values.len()));
        }
        let mut values = values;
        let mut key = Vec::with_capacity(self.key.len());
        for (&p, v) in self.key.iter().zip(values.iter_mut()) {
            let c = &self.columns[p];
            key.push(
                c.kind
                    .cell(std::mem::replace(v, mysql_async::Value::NULL))
                    .map_err(|why| format!("{}: {why}", c.name))?,
            );
        }
        let key = Key(key);
        let keyspace_id = ids.of(key.0[self.sharding].as_u64().unwrap_or_default());
        let quoted = &values[self.key.len()..];
        let bytes: usize = quoted.iter().map(|v| if let mysql_async::Value::Bytes(b) = v { b.len() } else { 0 }).sum();
        let mut tuple = String::with_capacity(bytes + 24 * self.key.len() + 24);
        tuple.push('(');
        for (i, part) in self.layout.iter().enumerate() {
            if i > 0 {
                tuple.push(',');
            }
            match *part {
                Part::Key(at) => key.0[at].push_literal(&mut tuple),
                Part::KeyspaceId => sql::push_hex(&mut tuple, &keyspace_id),
                Part::Run(run) => {
                    let mysql_async::Value::Bytes(b) = &quoted[run] else {
                        return Err(format!("unexpected quoted columns {:?}", quoted[run]));
                    };
                    tuple.push_str(std::str::from_utf8(b).map_err(|_| "a quoted column is not UTF-8".to_owned())?);
                }
            }
        }
        tuple.push(')');
        Ok(CopyRow { key, keyspace_id, tuple })
    }

    /// Refuses a source table whose shape the copier cannot copy exactly: a
    /// missing table, other columns, column order or types, no primary key
    /// or a different one, or a key collation whose order Rust cannot reproduce.
    pub async fn check_source(&self, conn: &mut mysql_async::Conn, database: &str) -> Result<(), CopierError> {
        let table = self.name.as_str();
        let schema = |why: String| CopierError::Schema { table: table.to_owned(), why };
        type ColumnRow = (String, Option<String>, String, String, Option<u32>);
        let columns: Vec<ColumnRow> = conn
            .exec(
                "SELECT COLUMN_NAME, COLLATION_NAME, DATA_TYPE, COLUMN_TYPE, DATETIME_PRECISION \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            .await?;
        if columns.is_empty() {
            return Err(schema(format!("table {database}.{table} does not exist on the source")));
        }
        let names: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
        let expected: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        if names != expected {
            return Err(schema(format!("columns are {names:?}, the pipeline describes {expected:?} in this order")));
        }
        for ((name, _, data_type, column_type, precision), c) in columns.iter().zip(&self.columns) {
            let want = &c.sql_type;
            let base = want.to_string().split(['(', ' ']).next().unwrap_or_default().to_ascii_lowercase();
            let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
            let fsp_ok = !matches!(c.kind, Kind::DateTime { .. }) || precision.unwrap_or(0) == want.fsp();
            if data_type.to_ascii_lowercase() != base || unsigned != want.unsigned || !fsp_ok {
                return Err(schema(format!("column {name} is {column_type}, the pipeline describes {want}")));
            }
        }
        let key: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION",
                (database, table),
            )
            .await?;
        let expected_key = self.key_names();
        if key.is_empty() {
            return Err(CopierError::NoPrimaryKey { table: table.to_owned(), key: expected_key.join(", ") });
        }
        if key != expected_key {
            return Err(schema(format!("primary key is {key:?}, the pipeline describes {expected_key:?}")));
        }
        for (name, collation, ..) in &columns {
            let binary = collation.as_deref().is_none_or(|c| c.ends_with("_bin") || c == "binary");
            if expected_key.contains(&name.as_str()) && !binary {
                return Err(schema(format!(
                    "key column {name} has collation {collation:?}; only binary collations keep key order"
                )));
            }
        }
        Ok(())
    }

    /// Whether `other` (the new cluster's description of the table) stores
    /// the same columns: the copy writes every column by position.
    pub fn check_same(&self, other: &CopiedTable) -> Result<(), CopierError> {
        let shape = |t: &CopiedTable| -> Vec<(String, String)> {
            t.columns.iter().map(|c| (c.name.clone(), c.sql_type.to_string())).collect()
        };
        if shape(self) != shape(other) || self.key != other.key || self.merge != other.merge {
            return Err(config(format!(
                "table {}: the old and new clusters' pipelines describe it differently (columns, key or merge \
                 rules); both cluster files must name the same pipeline",
                self.name
            )));
        }
        Ok(())
    }
}

/// One part of a snapshot row's tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The key cell at this index of the key.
    Key(usize),
    KeyspaceId,
    /// The server-quoted string of this run of value columns.
    Run(usize),
}

/// The parts of a snapshot row's tuple, in column order (a run once).
fn layout(columns: &[ColumnSpec], key: &[usize], runs: &[Vec<usize>]) -> Vec<Part> {
    let mut parts = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        match c.role {
            Role::Key => parts.push(Part::Key(key.iter().position(|&p| p == i).unwrap_or_default())),
            Role::KeyspaceId => parts.push(Part::KeyspaceId),
            Role::Value => {
                if let Some(run) = runs.iter().position(|r| r.first() == Some(&i)) {
                    parts.push(Part::Run(run));
                }
            }
        }
    }
    parts
}

/// Maximal runs of consecutive value columns, in column order.
fn value_runs(columns: &[ColumnSpec]) -> Vec<Vec<usize>> {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    let mut previous_was_value = false;
    for (i, c) in columns.iter().enumerate() {
        let value = c.role == Role::Value;
        if value && previous_was_value {
            if let Some(run) = runs.last_mut() {
                run.push(i);
            }
        } else if value {
            runs.push(vec![i]);
        }
        previous_was_value = value;
    }
    runs
}

/// What the snapshot selects of a column of a run (see [`CopiedTable::copy_chunk_sql`]).
fn quoted(c: &ColumnSpec) -> String {
    match c.kind {
        Kind::Int { .. } | Kind::UInt { .. } => c.name.clone(),
        Kind::Bytes { .. } => format!("CONCAT('X''', HEX({}), '''')", c.name),
        Kind::Text | Kind::DateTime { .. } => format!("QUOTE({})", c.name),
    }
}

/// The table's merge rule as steps on column positions: min and max, and
/// the by-groups (`min_by`, `max_by`, `first`, `last`) as the SQL upsert
/// forms them. Rules a row image cannot be merged by twice (`sum`,
/// `ddsketch`) are refused (the description refuses them in latest tables too).
fn merge_steps(table: &pipeline::Table) -> Result<Vec<MergeStep>, String> {
    let groups = table.by_groups();
    let mut steps: Vec<MergeStep> =
        groups.iter().map(|g| MergeStep::Group { min: g.min, by: g.by, members: g.members.clone() }).collect();
    for (i, c) in table.columns.iter().enumerate() {
        match &c.merge {
            Some(Merge::Min) => steps.push(MergeStep::Min(i)),
            Some(Merge::Max) => steps.push(MergeStep::Max(i)),
            Some(Merge::MinBy(_) | Merge::MaxBy(_) | Merge::First | Merge::Last) | None => {}
            Some(other) => {
                return Err(format!(
                    "table {}, column {}: merge {other} cannot be applied to a row image twice",
                    table.name, c.name
                ))
            }
        }
    }
    Ok(steps)
}

/// A snapshot row as the copy writes it: its key, its keyspace id and its
/// `VALUES` tuple (the value columns quoted by the source server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRow {
    /// The primary key (fences).
    pub key: Key,
    /// The vindex's keyspace id of the sharding column (routing).
    pub keyspace_id: [u8; 8],
    /// Every column as SQL, for [`CopiedTable::upsert_sql`].
    pub tuple: String,
}

/// The vindex over a run of rows in key order, remembering the last id:
/// consecutive snapshot rows mostly share their sharding value (the sharding
/// column leads the key), and the 3DES behind each keyspace id was a fifth
/// of the copier's CPU per copied row.
#[derive(Debug, Default)]
pub struct KeyspaceIds {
    last: Option<(u64, [u8; 8])>,
}

impl KeyspaceIds {
    /// `cluster::vindex::keyspace_id(value)`.
    pub fn of(&mut self, value: u64) -> [u8; 8] {
        match self.last {
            Some((id, keyspace_id)) if id == value => keyspace_id,
            _ => {
                let keyspace_id = cluster::vindex::keyspace_id(value);
                self.last = Some((value, keyspace_id));
                keyspace_id
            }
        }
    }
}

/// Writes `Key::tuple` of each key (deletes).
pub fn key_tuples<'a>(keys: impl IntoIterator<Item = &'a Key>) -> Vec<String> {
    keys.into_iter().map(Key::tuple).collect()
}

#[cfg(test)]
pub(crate) mod tests;
