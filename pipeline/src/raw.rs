//! The description file as written (TOML), before it is checked.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPipeline {
    pub name: String,
    pub sharding: RawSharding,
    #[serde(default)]
    pub topics: Vec<RawTopic>,
    #[serde(default)]
    pub tables: Vec<RawTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSharding {
    pub column: String,
    #[serde(default = "default_vindex")]
    pub vindex: String,
}

fn default_vindex() -> String {
    "hash".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopic {
    pub name: String,
    /// The reader schema (`.avsc`), relative to the description file.
    pub schema: String,
    pub key: Vec<String>,
    /// The event-time field (timestamp-millis or timestamp-micros).
    pub time: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTable {
    pub name: String,
    /// Another table whose topic, kind, key, indexes and columns this one repeats.
    pub like: Option<String>,
    pub topic: Option<String>,
    pub kind: Option<String>,
    pub window: Option<String>,
    pub time_column: Option<String>,
    pub key: Option<Vec<String>>,
    pub indexes: Option<Vec<RawIndex>>,
    pub group: Option<String>,
    pub retention: Option<String>,
    pub columns: Option<Vec<RawColumn>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIndex {
    pub name: String,
    pub columns: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
    pub from: Option<String>,
    pub derive: Option<String>,
    /// A constant (integer or string).
    pub value: Option<toml::Value>,
    pub merge: Option<String>,
    #[serde(default)]
    pub nullable: bool,
    /// Text that must be 1 or more printable ASCII characters (identifiers).
    #[serde(default)]
    pub printable: bool,
    pub comment: Option<String>,
}
