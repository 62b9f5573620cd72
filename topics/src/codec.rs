//! Confluent-framed Avro encoding and decoding of the two topics' events.
//!
//! Decoding is strict because a message that is accepted is applied to two
//! clusters: anything that does not frame, resolve or validate becomes a
//! [`DecodeError`] whose [`DecodeError::reason`] the consumer writes to the
//! dead letter table.

use std::collections::{BTreeMap, BTreeSet};

use apache_avro::reader::datum::{GenericDatumReader, SpecificDatumReader};
use apache_avro::schema::ResolvedSchema;
use apache_avro::Schema;

pub use crate::decode_error::DecodeError;
use crate::events::{Event, QueryStats, SlowQuery};
use crate::schemas::{record_name, SchemaError, SchemaSet, QUERY_STATS_RECORD, SLOW_QUERY_RECORD};
use crate::spec::TopicKind;

/// Confluent wire format: magic byte, then a big-endian u32 schema id.
const MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;
/// Caps what a hostile length prefix can make the Avro decoder allocate.
const MAX_AVRO_ALLOCATION: usize = 16 * 1024 * 1024;
const MAX_FINGERPRINT_LEN: usize = 64;
/// Column limits of the store (see cluster/src/schema.rs): a value beyond
/// them would make the shard reject the whole batch, forever, so it is a
/// dead letter instead.
const MAX_PROXY_ID_LEN: usize = 255;
/// SQL texts are MEDIUMTEXT (16 MiB) but must also fit a statement: the
/// column stores these bytes as they are (Avro strings are UTF-8, the
/// tables utf8mb4), and the escaped literal is at most twice as long, within
/// the consumer's 4 MiB statements. `tables` (stored as escaped JSON) and
/// `error` (TEXT) are measured as stored by the consumer (consumer::rows).
const MAX_SQL_LEN: usize = 1 << 20;
/// 9999-12-31T23:59:59.999Z: the last instant a DATETIME holds.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Encodes with this build's schemas; decodes anything in the schema set.
#[derive(Debug, Clone)]
pub struct Codec {
    /// Writer schemas by id: what messages on the topic may carry.
    writers: SchemaSet,
    /// Ids a registry answered for but that cannot decode anything (unknown
    /// to it, not Avro), with why: their messages are dead letters saying so.
    unusable: BTreeMap<u32, String>,
    /// This build's own schemas (what the structs mirror) and the ids they
    /// are written under (`None`: a registry consumer's codec, which only decodes).
    query_stats: (Option<u32>, Schema),
    slow_query: (Option<u32>, Schema),
    /// Writer ids whose schema is the reader's own (same canonical form): their
    /// data is laid out as the structs expect, so it is decoded straight into
    /// them (no `Value` tree, no resolution against the reader schema).
    same_as_reader: BTreeSet<u32>,
    /// Readers of this build's own records, resolved once (building one per
    /// message resolved the schema's names every time: ~6% of the CPU).
    own_readers: std::sync::Arc<OwnReaders>,
    /// Per writer id, a fingerprint of its canonical form: a pipeline topic's
    /// reader with the same one decodes it on the fast path.
    canonical: BTreeMap<u32, u64>,
}

struct OwnReaders {
    query_stats: SpecificDatumReader<QueryStats>,
    slow_query: SpecificDatumReader<SlowQuery>,
}

/// This build's schema of `record`, for the readers above (which take it
/// from the type). `with_writers` parsed the same schemas first, so this
/// cannot fail where it is used; `Null` would fail every decode, not panic.
fn own_schema(record: &'static str) -> Schema {
    SchemaSet::embedded().ok().and_then(|set| set.latest_for(record).map(|(_, s)| s.clone())).unwrap_or(Schema::Null)
}

impl apache_avro::AvroSchemaComponent for QueryStats {
    fn get_schema_in_ctxt(
        _: &mut std::collections::HashSet<apache_avro::schema::Name>,
        _: apache_avro::schema::NamespaceRef,
    ) -> Schema {
        own_schema(QUERY_STATS_RECORD)
    }
}

impl apache_avro::AvroSchemaComponent for SlowQuery {
    fn get_schema_in_ctxt(
        _: &mut std::collections::HashSet<apache_avro::schema::Name>,
        _: apache_avro::schema::NamespaceRef,
    ) -> Schema {
        own_schema(SLOW_QUERY_RECORD)
    }
}

impl std::fmt::Debug for OwnReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnReaders")
    }
}

impl Codec {
    /// Uses the schemas compiled into this build.
    pub fn embedded() -> Result<Self, SchemaError> {
        Self::with_writers(SchemaSet::embedded()?)
    }

    /// Resolves writer schema ids from `dir` (files `<id>-<name>.avsc`).
    pub fn from_dir(dir: &std::path::Path) -> Result<Self, SchemaError> {
        Self::with_writers(SchemaSet::from_dir(dir)?)
    }

    pub fn with_writers(writers: SchemaSet) -> Result<Self, SchemaError> {
        // Set once per process; later calls keep the first value, which is this one.
        apache_avro::util::max_allocation_bytes(MAX_AVRO_ALLOCATION);
        let own = SchemaSet::embedded()?;
        let own_id = |record: &'static str| -> Result<(u32, Schema), SchemaError> {
            let (_, schema) = own.latest_for(record).ok_or(SchemaError::Missing(record))?;
            // The id we write under is the id the writer set gives this exact schema.
            let id = writers
                .by_id
                .iter()
                .rev()
                .find(|(_, s)| s.canonical_form() == schema.canonical_form())
                .map(|(id, _)| *id)
                .ok_or(SchemaError::Missing(record))?;
            Ok((id, schema.clone()))
        };
        let (query_stats, slow_query) = (own_id(QUERY_STATS_RECORD)?, own_id(SLOW_QUERY_RECORD)?);
        let mut codec = Self {
            query_stats: (Some(query_stats.0), query_stats.1),
            slow_query: (Some(slow_query.0), slow_query.1),
            writers: SchemaSet { by_id: BTreeMap::new() },
            unusable: BTreeMap::new(),
            same_as_reader: BTreeSet::new(),
            canonical: BTreeMap::new(),
            own_readers: std::sync::Arc::new(OwnReaders {
                query_stats: SpecificDatumReader::builder()
                    .build()
                    .map_err(|e| SchemaError::Parse("this build's reader".into(), e.to_string()))?,
                slow_query: SpecificDatumReader::builder()
                    .build()
                    .map_err(|e| SchemaError::Parse("this build's reader".into(), e.to_string()))?,
            }),
        };
        for (id, schema) in writers.by_id {
            codec.add_writer(id, schema);
        }
        Ok(codec)
    }

    /// A decoder whose writer schemas come from a registry: it starts with
    /// none and learns each id through [`Codec::add_writer`]. It cannot encode.
    pub fn for_registry() -> Result<Self, SchemaError> {
        let mut codec = Self::embedded()?;
        codec.writers.by_id.clear();
        codec.same_as_reader.clear();
        codec.canonical.clear();
        codec.query_stats.0 = None;
        codec.slow_query.0 = None;
        Ok(codec)
    }

    /// This build's schemas under the ids a registry gave them (a producer's codec).
    pub fn registered(query_stats_id: u32, slow_query_id: u32) -> Result<Self, SchemaError> {
        let own = SchemaSet::embedded()?;
        let mut writers = SchemaSet { by_id: BTreeMap::new() };
        for (id, record) in [(query_stats_id, QUERY_STATS_RECORD), (slow_query_id, SLOW_QUERY_RECORD)] {
            let (_, schema) = own.latest_for(record).ok_or(SchemaError::Missing(record))?;
            if writers.by_id.insert(id, schema.clone()).is_some() {
                return Err(SchemaError::DuplicateId(id));
            }
        }
        Self::with_writers(writers)
    }

    /// Whether `id` was resolved already (to a schema or to why not).
    pub fn knows(&self, id: u32) -> bool {
        self.writers.by_id.contains_key(&id) || self.unusable.contains_key(&id)
    }

    /// Adds a writer schema fetched from a registry.
    pub fn add_writer(&mut self, id: u32, schema: Schema) {
        self.unusable.remove(&id);
        let form = schema.canonical_form();
        if [&self.query_stats.1, &self.slow_query.1].iter().any(|own| own.canonical_form() == form) {
            self.same_as_reader.insert(id);
        } else {
            self.same_as_reader.remove(&id);
        }
        self.canonical.insert(id, crate::record::canonical_hash(&schema));
        self.writers.by_id.insert(id, schema);
    }

    /// Adds every topic's reader schema of `pipeline` under its id where the
    /// writer set has no schema for that id (a codec without a registry then
    /// decodes what a producer of this description writes).
    pub fn with_pipeline(mut self, pipeline: &pipeline::Pipeline) -> Self {
        for t in &pipeline.topics {
            let versions = std::iter::once((t.schema_id, &t.schema)).chain(t.writers.iter().map(|(id, s)| (*id, s)));
            for (id, schema) in versions {
                if !self.knows(id) {
                    self.add_writer(id, schema.clone());
                }
            }
        }
        self
    }

    /// Decodes a message value of a pipeline topic into its fields' values.
    pub fn decode_record(
        &self,
        reader: &crate::record::RecordReader,
        payload: Option<&[u8]>,
    ) -> Result<Vec<crate::record::Value>, DecodeError> {
        let (id, writer, mut body) = self.frame_of(payload)?;
        if record_name(writer).as_deref() != Some(reader.record.as_str()) {
            let record = record_name(writer).unwrap_or_default();
            return Err(DecodeError::WrongRecord { id, record, topic: reader.topic.clone() });
        }
        let same = self.canonical.get(&id) == Some(&reader.canonical);
        let values = reader.read(writer, same, &mut body)?;
        if !body.is_empty() {
            return Err(DecodeError::TrailingBytes(body.len()));
        }
        Ok(values)
    }

    /// The schema id, its writer schema and the datum of a framed message.
    fn frame_of<'a>(&self, payload: Option<&'a [u8]>) -> Result<(u32, &Schema, &'a [u8]), DecodeError> {
        let bytes = payload.ok_or(DecodeError::Empty)?;
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TruncatedHeader(bytes.len()));
        }
        if bytes[0] != MAGIC {
            return Err(DecodeError::BadMagic(bytes[0]));
        }
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let Some(writer) = self.writers.by_id.get(&id) else {
            return Err(match self.unusable.get(&id) {
                Some(why) => DecodeError::UnusableSchemaId { id, why: why.clone() },
                None => DecodeError::UnknownSchemaId(id),
            });
        };
        Ok((id, writer, &bytes[HEADER_LEN..]))
    }

    /// Records that messages with `id` cannot be decoded, and why.
    pub fn add_unusable(&mut self, id: u32, why: String) {
        self.unusable.insert(id, why);
    }

    pub fn encode_query_stats(&self, event: &QueryStats) -> Result<Vec<u8>, DecodeError> {
        frame(&self.query_stats, event)
    }

    pub fn encode_slow_query(&self, event: &SlowQuery) -> Result<Vec<u8>, DecodeError> {
        frame(&self.slow_query, event)
    }

    /// Decodes a message value read from a topic of `kind`.
    pub fn decode(&self, kind: TopicKind, payload: Option<&[u8]>) -> Result<Event, DecodeError> {
        let (id, writer, body) = self.frame_of(payload)?;
        let record = record_name(writer).unwrap_or_default();
        let reader = match (kind, record.as_str()) {
            (TopicKind::QueryStats, QUERY_STATS_RECORD) => &self.query_stats.1,
            (TopicKind::SlowQueries, SLOW_QUERY_RECORD) => &self.slow_query.1,
            _ => return Err(DecodeError::WrongRecord { id, record, topic: kind.as_str().to_string() }),
        };
        let mut body = body;
        let avro = |e: apache_avro::Error| DecodeError::Avro(e.to_string());
        let event = if self.same_as_reader.contains(&id) {
            // The record name matched above, so an identical canonical form is
            // the reader's own schema: the datum decodes straight into the struct.
            let own = &self.own_readers;
            match kind {
                TopicKind::QueryStats => Event::QueryStats(own.query_stats.read(&mut body).map_err(avro)?),
                TopicKind::SlowQueries => Event::SlowQuery(own.slow_query.read(&mut body).map_err(avro)?),
            }
        } else {
            // Another version of the record: resolved against this build's schema.
            let datum = GenericDatumReader::builder(writer).reader_schema(reader).build().map_err(avro)?;
            let value = datum.read_value(&mut body).map_err(avro)?;
            match kind {
                TopicKind::QueryStats => Event::QueryStats(apache_avro::from_value(&value).map_err(avro)?),
                TopicKind::SlowQueries => Event::SlowQuery(apache_avro::from_value(&value).map_err(avro)?),
            }
        };
        if !body.is_empty() {
            return Err(DecodeError::TrailingBytes(body.len()));
        }
        validate(&event)?;
        Ok(event)
    }
}

/// The schema id of a Confluent-framed message, if it has the header.
pub fn schema_id(payload: Option<&[u8]>) -> Option<u32> {
    match payload? {
        [MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

fn frame<T: serde::Serialize>((id, schema): &(Option<u32>, Schema), event: &T) -> Result<Vec<u8>, DecodeError> {
    let id = id.ok_or_else(|| DecodeError::Invalid {
        field: "schema_id",
        why: "this codec only decodes (its schemas come from a registry and were not registered by it)".to_owned(),
    })?;
    let mut out = Vec::with_capacity(256);
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    let avro = |e: apache_avro::Error| DecodeError::Avro(e.to_string());
    let resolved = ResolvedSchema::try_from(schema).map_err(avro)?;
    apache_avro::write_avro_datum_ref(schema, resolved.get_names(), event, &mut out).map_err(avro)?;
    Ok(out)
}

/// Content rules both groups apply identically; a violation is a dead letter.
/// The latency sketch is checked where it is decoded for merging (the
/// consumer's plan), so it is decoded once per message.
fn validate(event: &Event) -> Result<(), DecodeError> {
    let invalid = |field: &'static str, why: String| DecodeError::Invalid { field, why };
    if event.database_id() < 0 {
        return Err(invalid("database_id", format!("{} is negative", event.database_id())));
    }
    let fp = event.fingerprint();
    if fp.is_empty() || fp.len() > MAX_FINGERPRINT_LEN || !fp.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("fingerprint", format!("must be 1..={MAX_FINGERPRINT_LEN} printable ASCII characters")));
    }
    let too_long = |field: &'static str, len: usize, max: usize| -> Result<(), DecodeError> {
        if len > max {
            return Err(invalid(field, format!("{len} bytes, more than the store's {max}")));
        }
        Ok(())
    };
    match event {
        Event::QueryStats(q) => {
            too_long("proxy_id", q.proxy_id.len(), MAX_PROXY_ID_LEN)?;
            too_long("normalized_sql", q.normalized_sql.len(), MAX_SQL_LEN)?;
            if q.interval_start > MAX_TIME_MS {
                return Err(invalid("interval_start", format!("{} is past year 9999", q.interval_start)));
            }
            let counters = [
                ("query_count", q.query_count),
                ("total_duration_us", q.total_duration_us),
                ("max_duration_us", q.max_duration_us),
                ("rows_read", q.rows_read),
                ("rows_returned", q.rows_returned),
                ("error_count", q.error_count),
                ("interval_start", q.interval_start),
            ];
            if let Some((field, v)) = counters.iter().find(|(_, v)| *v < 0) {
                return Err(invalid(field, format!("{v} is negative")));
            }
            if q.interval_seconds <= 0 {
                return Err(invalid("interval_seconds", format!("{} is not positive", q.interval_seconds)));
            }
        }
        Event::SlowQuery(s) => {
            too_long("proxy_id", s.proxy_id.len(), MAX_PROXY_ID_LEN)?;
            too_long("query_text", s.query_text.len(), MAX_SQL_LEN)?;
            if s.occurred_at / 1000 > MAX_TIME_MS {
                return Err(invalid("occurred_at", format!("{} is past year 9999", s.occurred_at)));
            }
            let fields = [
                ("occurred_at", s.occurred_at),
                ("duration_us", s.duration_us),
                ("rows_read", s.rows_read),
                ("rows_returned", s.rows_returned),
            ];
            if let Some((field, v)) = fields.iter().find(|(_, v)| *v < 0) {
                return Err(invalid(field, format!("{v} is negative")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod reason_tests {
    use super::DecodeError;

    #[test]
    fn every_reason_is_listed_once() {
        let all = [
            DecodeError::Empty,
            DecodeError::TruncatedHeader(1),
            DecodeError::BadMagic(1),
            DecodeError::UnknownSchemaId(9),
            DecodeError::UnusableSchemaId { id: 9, why: "w".into() },
            DecodeError::WrongRecord { id: 1, record: "r".into(), topic: "t".into() },
            DecodeError::Avro("x".into()),
            DecodeError::TrailingBytes(1),
            DecodeError::Invalid { field: "f", why: "w".into() },
        ];
        let mut reasons: Vec<&str> = all.iter().map(DecodeError::reason).collect();
        // Both unknown-id variants share one reason.
        reasons.dedup();
        assert_eq!(reasons, DecodeError::REASONS);
    }
}
