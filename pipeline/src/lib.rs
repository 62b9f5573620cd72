//! The pipeline description: which topics carry which Avro records, which
//! tables are fed from them, and for every column its source, SQL type and
//! merge rule. Every job derives from it: the DDL, the consumer's decode and
//! merges, the comparators, the copier, retention and the cutover groups.
//!
//! `pipelines/insights.toml` (Query Insights) is the default and is built
//! into every binary; `--pipeline FILE` or a cluster file's `pipeline = "..."`
//! selects another. docs/pipelines.md describes the file.

mod avro;
mod ddl;
mod load;
mod merge;
mod model;
mod raw;
mod sqltype;
mod upsert;

use std::path::Path;

pub use avro::{Field, FieldKind};
pub use ddl::{column_definition, create_table};
pub use load::{check_identifier, parse, Dir, PipelineError, SchemaSource};
pub use merge::Merge;
pub use model::*;
pub use sqltype::{Base, Class, SqlType};
pub use upsert::{insert_head, on_duplicate, upsert};

/// The default pipeline's file, as shipped.
pub const INSIGHTS_TOML: &str = include_str!("../../pipelines/insights.toml");

/// The schema files the built-in descriptions name, by their relative path.
const EMBEDDED_SCHEMAS: &[(&str, &str)] = &[
    ("../topics/schemas/1-query_stats.avsc", include_str!("../../topics/schemas/1-query_stats.avsc")),
    ("../topics/schemas/2-slow_query.avsc", include_str!("../../topics/schemas/2-slow_query.avsc")),
];

struct Embedded;

impl SchemaSource for Embedded {
    fn read(&self, relative: &str) -> Result<String, String> {
        EMBEDDED_SCHEMAS
            .iter()
            .find(|(p, _)| *p == relative)
            .map(|(_, text)| (*text).to_string())
            .ok_or_else(|| format!("{relative}: not a schema built into this binary"))
    }
}

/// Why a description file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("pipeline {path}: cannot read: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("pipeline {path}: {source}")]
    Invalid { path: String, source: PipelineError },
}

impl Pipeline {
    /// The built-in Query Insights pipeline.
    pub fn insights() -> Pipeline {
        // Checked by a unit test, so a build that ships a broken default fails its tests.
        #[allow(clippy::expect_used)]
        parse(INSIGHTS_TOML, &Embedded).expect("the built-in insights pipeline is valid")
    }

    /// Loads a description file; its schema paths are relative to it.
    pub fn load(path: &Path) -> Result<Pipeline, LoadError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: shown.clone(), source })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        parse(&text, &Dir(dir)).map_err(|source| LoadError::Invalid { path: shown, source })
    }

    /// The description at `path`, or the built-in default.
    pub fn load_or_default(path: Option<&Path>) -> Result<Pipeline, LoadError> {
        match path {
            Some(p) => Self::load(p),
            None => Ok(Self::insights()),
        }
    }

    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The topic a table is fed from.
    pub fn topic_of(&self, table: &Table) -> &Topic {
        &self.topics[table.topic]
    }

    /// Tables whose rows age out with their time partitions.
    pub fn windowed(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter().filter(|t| t.is_windowed())
    }

    /// Tables that never age out: the copier fills them before cutover.
    pub fn unbounded(&self) -> impl Iterator<Item = &Table> {
        self.tables.iter().filter(|t| !t.is_windowed())
    }

    /// The topics' names as consumed under a deployment's (or a test's) prefix.
    pub fn topic_names(&self, prefix: &str) -> Vec<String> {
        self.topics.iter().map(|t| format!("{prefix}{}", t.name)).collect()
    }

    /// The read table groups in first-appearance order, each with its tables.
    pub fn groups(&self) -> Vec<(&str, Vec<&Table>)> {
        let mut out: Vec<(&str, Vec<&Table>)> = Vec::new();
        for t in &self.tables {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, tables)) => tables.push(t),
                None => out.push((&t.group, vec![t])),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
