//! A Confluent-compatible schema registry as the source of schema ids, in
//! place of the schema directory when a `[registry]` table is configured.
//!
//! - Producers register this build's schemas under each topic's value
//!   subject (`<topic>-value`, the TopicNameStrategy), after asking the
//!   registry whether they are compatible, and write the ids it answers.
//! - Consumers fetch a writer schema by id the first time a message carries
//!   it and keep it in their codec for the life of the process; an id the
//!   registry does not know (or a schema the codec cannot use) is kept too,
//!   as the reason its messages are dead letters. An unavailable registry is
//!   an error to retry, never a verdict on a message.

mod client;
mod config;

pub use client::{RegisteredSchema, Registry, RegistryError};
pub use config::{RegistryAuth, RegistryConfig, RegistryConfigError};

use apache_avro::Schema;

use crate::codec::Codec;
use crate::schemas::{record_name, SchemaError, SchemaSet, QUERY_STATS_RECORD, SLOW_QUERY_RECORD};
use crate::spec::TopicKind;

/// The subject a topic's values are registered under (Confluent's default
/// TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The record each topic carries.
fn record_of(kind: TopicKind) -> &'static str {
    match kind {
        TopicKind::QueryStats => QUERY_STATS_RECORD,
        TopicKind::SlowQueries => SLOW_QUERY_RECORD,
    }
}

/// The JSON text registered for `schema`: the full schema with defaults and
/// docs (Parsing Canonical Form drops defaults, which compatibility needs).
pub fn schema_text(schema: &Schema) -> String {
    serde_json::to_string(schema).unwrap_or_else(|_| schema.canonical_form())
}

/// One subject's registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub subject: String,
    pub record: String,
    pub id: u32,
}

/// Why the topics' schemas could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Schemas(#[from] SchemaError),
}

/// Registers, for every topic, the newest schema of its record in `schemas`
/// under `<topic>-value`. The registry is first asked whether each is
/// compatible with its subject's latest version; if any is not, nothing is
/// registered and the error carries the registry's explanation.
pub async fn register_topic_schemas(
    registry: &Registry,
    topic_prefix: &str,
    schemas: &SchemaSet,
) -> Result<Vec<Registered>, RegisterError> {
    let mut wanted = Vec::new();
    for kind in TopicKind::ALL {
        let record = record_of(kind);
        let (_, schema) = schemas.latest_for(record).ok_or(SchemaError::Missing(record))?;
        wanted.push((value_subject(&kind.topic_name(topic_prefix)), record.to_owned(), schema_text(schema)));
    }
    register_all(registry, wanted).await
}

/// Registers each topic of `pipeline` with its reader schema under
/// `<topic>-value`, all or nothing as [`register_topic_schemas`].
pub async fn register_pipeline_schemas(
    registry: &Registry,
    topic_prefix: &str,
    pipeline: &pipeline::Pipeline,
) -> Result<Vec<Registered>, RegisterError> {
    let wanted = pipeline
        .topics
        .iter()
        .map(|t| (value_subject(&format!("{topic_prefix}{}", t.name)), t.record.clone(), schema_text(&t.schema)))
        .collect();
    register_all(registry, wanted).await
}

/// Asks the registry about every (subject, record, schema) first; registers
/// them only if every one is compatible.
async fn register_all(
    registry: &Registry,
    wanted: Vec<(String, String, String)>,
) -> Result<Vec<Registered>, RegisterError> {
    for (subject, _, text) in &wanted {
        if let Err(message) = registry.check_compatibility(subject, text).await? {
            let url = registry.url().to_string();
            return Err(RegistryError::Incompatible { url, subject: subject.clone(), message }.into());
        }
    }
    let mut out = Vec::new();
    for (subject, record, text) in wanted {
        // The registry checks again (409): a schema registered meanwhile is still caught.
        let id = registry.register(&subject, &text).await?;
        tracing::info!(%subject, id, %record, "schema registered");
        out.push(Registered { subject, record, id });
    }
    Ok(out)
}

/// The producer's codec: this build's schemas, registered (compatibility
/// checked) under the topics' subjects, written with the registry's ids.
pub async fn producer_codec(registry: &Registry, topic_prefix: &str) -> Result<Codec, RegisterError> {
    let registered = register_topic_schemas(registry, topic_prefix, &SchemaSet::embedded()?).await?;
    let id_of = |record: &str| registered.iter().find(|r| r.record == record).map(|r| r.id);
    match (id_of(QUERY_STATS_RECORD), id_of(SLOW_QUERY_RECORD)) {
        (Some(query_stats), Some(slow_query)) => Ok(Codec::registered(query_stats, slow_query)?),
        _ => Err(SchemaError::Missing(QUERY_STATS_RECORD).into()),
    }
}

/// What an id's schema is to the codec.
#[derive(Debug, Clone)]
pub enum WriterSchema {
    /// An Avro schema messages may be decoded with.
    Avro(Schema),
    /// The registry does not know the id (404): why, in words.
    Unknown(String),
    /// Messages with this id cannot be decoded: why (not Avro, does not parse).
    Unusable(String),
}

/// Fetches the writer schema of `id` (`GET /schemas/ids/{id}`).
pub async fn fetch_writer(registry: &Registry, id: u32) -> Result<WriterSchema, RegistryError> {
    let Some(found) = registry.schema_by_id(id).await? else {
        return Ok(WriterSchema::Unknown(format!("schema id {id} is not in the registry {}", registry.url())));
    };
    Ok(writer_schema(id, &found))
}

fn writer_schema(id: u32, found: &RegisteredSchema) -> WriterSchema {
    let unusable = |why: String| WriterSchema::Unusable(format!("schema id {id} in the registry {why}"));
    match found.schema_type.as_deref() {
        None | Some("AVRO") => {}
        Some(other) => return unusable(format!("is a {other} schema, not Avro")),
    }
    if !found.references.is_empty() {
        return unusable("uses schema references, which this consumer does not resolve".to_owned());
    }
    match Schema::parse_str(&found.schema) {
        Ok(schema) => WriterSchema::Avro(schema),
        Err(e) => unusable(format!("does not parse as Avro: {e}")),
    }
}

/// Adds `schema` to `codec` under `id`.
pub fn add_to_codec(codec: &mut Codec, id: u32, schema: WriterSchema) {
    match schema {
        WriterSchema::Avro(schema) => codec.add_writer(id, schema),
        WriterSchema::Unknown(why) | WriterSchema::Unusable(why) => codec.add_unusable(id, why),
    }
}

/// A consumer's codec: no writer schema but the topics' latest ones (looked
/// up at start, which also proves the URL, the CA and the credentials),
/// every other id fetched when a message first carries it.
pub async fn consumer_codec(registry: &Registry, topics: &[String]) -> Result<Codec, RegisterError> {
    let mut codec = Codec::for_registry()?;
    preflight(registry, topics, &mut codec).await?;
    Ok(codec)
}

/// At start: one authenticated call per topic (`GET /subjects/<topic>-value/versions/latest`),
/// so wrong credentials, a wrong CA or a wrong URL fail in one line naming
/// the registry before anything is consumed; the latest schemas found are
/// added to `codec` (saving their first lookup).
async fn preflight(registry: &Registry, topics: &[String], codec: &mut Codec) -> Result<(), RegistryError> {
    for topic in topics {
        let subject = value_subject(topic);
        match registry.latest(&subject).await? {
            Some(found) => match found.id {
                Some(id) if !codec.knows(id) => add_to_codec(codec, id, writer_schema(id, &found)),
                _ => {}
            },
            None => tracing::info!(%subject, registry = %registry.url(), "no schema registered under this subject yet"),
        }
    }
    Ok(())
}

/// The record a schema describes, for logs.
pub fn describe(schema: &WriterSchema) -> String {
    match schema {
        WriterSchema::Avro(s) => record_name(s).unwrap_or_else(|| "a non-record schema".to_owned()),
        WriterSchema::Unknown(why) | WriterSchema::Unusable(why) => why.clone(),
    }
}
