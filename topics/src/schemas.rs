//! Schema ids and the schemas they name.
//!
//! Messages carry the Confluent wire framing: magic byte 0, then a 4-byte
//! big-endian schema id, then the Avro datum. Ids resolve against a schema
//! directory whose files are named `<id>-<record>.avsc` (the ones this build
//! ships are embedded, so a binary works without the source tree). A
//! Confluent-compatible registry can be mirrored into such a directory; the
//! ids must then be the registry's ids.

use std::collections::BTreeMap;
use std::path::Path;

use apache_avro::Schema;

/// Why a schema directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("schema file {0} is not named <id>-<name>.avsc")]
    BadFileName(String),
    #[error("schema file {0} does not parse: {1}")]
    Parse(String, String),
    #[error("schema id {0} appears twice")]
    DuplicateId(u32),
    #[error("no schema for record {0}")]
    Missing(&'static str),
}

/// The schemas this build was written against; the newest id per record is
/// what the codec writes.
const EMBEDDED: &[(&str, &str)] = &[
    ("1-query_stats.avsc", include_str!("../schemas/1-query_stats.avsc")),
    ("2-slow_query.avsc", include_str!("../schemas/2-slow_query.avsc")),
];

/// The record full names the codec knows how to turn into events.
pub const QUERY_STATS_RECORD: &str = "dualwrite.insights.QueryStats";
pub const SLOW_QUERY_RECORD: &str = "dualwrite.insights.SlowQuery";

/// All known writer schemas by id.
#[derive(Debug, Clone)]
pub struct SchemaSet {
    /// Every schema a message may have been written with.
    pub by_id: BTreeMap<u32, Schema>,
}

impl SchemaSet {
    pub fn embedded() -> Result<Self, SchemaError> {
        Self::from_files(EMBEDDED.iter().map(|(n, t)| (n.to_string(), t.to_string())))
    }

    /// Loads every `<id>-<name>.avsc` in `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self, SchemaError> {
        let entries = std::fs::read_dir(dir).map_err(|e| SchemaError::Io(dir.display().to_string(), e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| SchemaError::Io(dir.display().to_string(), e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".avsc") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path())
                .map_err(|e| SchemaError::Io(entry.path().display().to_string(), e))?;
            files.push((name, text));
        }
        Self::from_files(files)
    }

    fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Result<Self, SchemaError> {
        let mut by_id = BTreeMap::new();
        for (name, text) in files {
            let id: u32 = name
                .split_once('-')
                .and_then(|(id, _)| id.parse().ok())
                .ok_or_else(|| SchemaError::BadFileName(name.clone()))?;
            let schema = Schema::parse_str(&text).map_err(|e| SchemaError::Parse(name.clone(), e.to_string()))?;
            if by_id.insert(id, schema).is_some() {
                return Err(SchemaError::DuplicateId(id));
            }
        }
        Ok(Self { by_id })
    }

    /// The newest (highest) id whose record has this full name.
    pub fn latest_for(&self, record: &str) -> Option<(u32, &Schema)> {
        self.by_id.iter().rev().find(|(_, s)| record_name(s).as_deref() == Some(record)).map(|(id, s)| (*id, s))
    }
}

/// The full name of a record schema (`namespace.name`).
pub fn record_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(r) => Some(r.name.fullname(None)),
        _ => None,
    }
}
