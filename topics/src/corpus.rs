//! Known-bad messages and valid sample events, shared by every crate's tests.
//!
//! Each [`BadMessage`] names the [`crate::DecodeError::reason`] the codec must
//! give it, so the codec's tests and the consumer's dead letter tests check the
//! same corpus and agree on the reason written to the dead letter table.

use crate::codec::Codec;
use crate::events::{QueryStats, SlowQuery};
use crate::sketch::LatencySketch;
use crate::spec::TopicKind;

/// A malformed message and the verdict it must get.
#[derive(Debug, Clone, PartialEq)]
pub struct BadMessage {
    /// Names the case in assertion messages.
    pub name: &'static str,
    /// The topic kind the message is read from (decides the reader schema).
    pub kind: TopicKind,
    /// The Kafka message value, `None` for a message without one.
    pub payload: Option<Vec<u8>>,
    /// The dead letter reason: the codec's, or the consumer planner's when
    /// `codec_accepts` is set.
    pub reason: &'static str,
    /// The codec decodes this message without error; the consumer's planner
    /// rejects it (the latency sketch is checked where it is decoded for merging).
    pub codec_accepts: bool,
}

/// A Kafka message value that is 200 bytes of noise behind a valid QueryStats header.
pub const RANDOM_BODY_NAME: &str = "random_body_after_valid_header";
const RANDOM_MESSAGE_LEN: usize = 200;
const RANDOM_SEED: u64 = 0x5eed_da7a_2024_0001;

/// A valid QueryStats for tests: all counters consistent, a real sketch.
pub fn sample_query_stats(database_id: i64, fingerprint: &str) -> QueryStats {
    let mut sketch = LatencySketch::new();
    for ms in [0.8, 1.2, 3.5, 3.5, 12.0, 40.0] {
        sketch.add_ms(ms);
    }
    QueryStats {
        database_id,
        fingerprint: fingerprint.to_string(),
        normalized_sql: "select * from orders where customer_id = ?".to_string(),
        tables: vec!["orders".to_string()],
        proxy_id: "proxy-a".to_string(),
        // 2024-05-01T12:00:00Z, a 15-second boundary.
        interval_start: 1_714_564_800_000,
        interval_seconds: 15,
        query_count: 6,
        total_duration_us: 61_000,
        max_duration_us: 40_000,
        rows_read: 120,
        rows_returned: 6,
        error_count: 0,
        latency_sketch: sketch.encode(),
    }
}

/// A valid SlowQuery for tests, without an error.
pub fn sample_slow_query(database_id: i64, fingerprint: &str) -> SlowQuery {
    SlowQuery {
        database_id,
        fingerprint: fingerprint.to_string(),
        proxy_id: "proxy-a".to_string(),
        // 2024-05-01T12:00:03.25Z.
        occurred_at: 1_714_564_803_250_000,
        duration_us: 2_500_000,
        rows_read: 1_000_000,
        rows_returned: 10,
        error: None,
        query_text: "select * from orders where note like ?".to_string(),
        tables: vec!["orders".to_string()],
    }
}

/// The corpus, framed with `codec`'s own schema ids.
///
/// A payload that fails to encode (which a working codec never does) is
/// `None`: it then decodes as `empty`, and the corpus test names the entry.
pub fn bad_messages(codec: &Codec) -> Vec<BadMessage> {
    let valid = sample_query_stats(7, "f00d");
    let valid_bytes = codec.encode_query_stats(&valid).ok();
    let stats = |event: &QueryStats| codec.encode_query_stats(event).ok();
    let slow = |event: &SlowQuery| codec.encode_slow_query(event).ok();
    let header = valid_bytes.as_ref().and_then(|b| b.get(..5)).map(<[u8]>::to_vec);

    let mut out = Vec::new();
    let mut push = |name, kind, payload, reason| {
        out.push(BadMessage { name, kind, payload, reason, codec_accepts: false });
    };

    push("no_value", TopicKind::QueryStats, None, "empty");
    push("zero_length_value", TopicKind::QueryStats, Some(Vec::new()), "empty");
    push("three_bytes", TopicKind::QueryStats, Some(vec![0, 0, 0]), "truncated_header");
    push(
        "bad_magic_byte",
        TopicKind::QueryStats,
        valid_bytes.clone().map(|mut b| {
            if let Some(magic) = b.first_mut() {
                *magic = 0x01;
            }
            b
        }),
        "bad_magic",
    );
    push(
        "unknown_schema_id_999",
        TopicKind::QueryStats,
        valid_bytes.clone().map(|mut b| {
            if let Some(id) = b.get_mut(1..5) {
                id.copy_from_slice(&999u32.to_be_bytes());
            }
            b
        }),
        "unknown_schema_id",
    );
    push("slow_query_on_query_stats_topic", TopicKind::QueryStats, slow(&sample_slow_query(7, "f00d")), "wrong_record");
    push("stats_record_on_slow_topic", TopicKind::SlowQueries, valid_bytes.clone(), "wrong_record");
    push(
        "avro_body_cut_in_half",
        TopicKind::QueryStats,
        valid_bytes.clone().map(|mut b| {
            b.truncate(b.len() / 2);
            b
        }),
        "avro_decode",
    );
    push(
        "other_record_shape_under_query_stats_id",
        TopicKind::QueryStats,
        header.clone().zip(impostor_body()).map(|(mut h, body)| {
            h.extend_from_slice(&body);
            h
        }),
        "avro_decode",
    );
    push(
        "trailing_garbage",
        TopicKind::QueryStats,
        valid_bytes.clone().map(|mut b| {
            b.extend_from_slice(&[0xde, 0xad]);
            b
        }),
        "trailing_bytes",
    );
    push(
        "negative_database_id",
        TopicKind::QueryStats,
        stats(&QueryStats { database_id: -1, ..valid.clone() }),
        "invalid_field",
    );
    push(
        "fingerprint_65_chars",
        TopicKind::QueryStats,
        stats(&QueryStats { fingerprint: "a".repeat(65), ..valid.clone() }),
        "invalid_field",
    );
    push(
        "fingerprint_with_space",
        TopicKind::QueryStats,
        stats(&QueryStats { fingerprint: "f0 0d".to_string(), ..valid.clone() }),
        "invalid_field",
    );
    push(
        "negative_query_count",
        TopicKind::QueryStats,
        stats(&QueryStats { query_count: -1, ..valid.clone() }),
        "invalid_field",
    );
    push(
        "slow_query_negative_duration",
        TopicKind::SlowQueries,
        slow(&SlowQuery { duration_us: -1, ..sample_slow_query(7, "f00d") }),
        "invalid_field",
    );
    // Pinned by the codec tests; see `random_body`.
    push(RANDOM_BODY_NAME, TopicKind::QueryStats, header.map(random_body), "avro_decode");

    // The codec accepts these; the consumer's planner rejects them where it
    // decodes the sketch, measures stored sizes and compares clocks.
    let mut planner = |name, payload, reason| {
        out.push(BadMessage { name, kind: TopicKind::QueryStats, payload, reason, codec_accepts: true });
    };
    planner(
        "garbage_latency_sketch",
        stats(&QueryStats { latency_sketch: vec![0xff, 0x00, 0x13, 0x37], ..valid.clone() }),
        "invalid_field",
    );
    planner(
        FAR_APART_SKETCH_NAME,
        stats(&QueryStats { latency_sketch: FAR_APART_SKETCH.to_vec(), ..valid.clone() }),
        "invalid_field",
    );
    // 40,000 bytes raw (under the old 60,000-byte check), 80,004 as stored JSON.
    planner(
        "tables_longer_once_escaped",
        stats(&QueryStats { tables: vec!["\"\\".repeat(20_000)], ..valid.clone() }),
        "invalid_field",
    );
    // Sent now (any test timestamp), dated 2100-01-01: beyond any `[time] ahead`.
    planner(
        "interval_start_in_2100",
        stats(&QueryStats { interval_start: 4_102_444_800_000, ..valid }),
        "future_event",
    );
    out
}

/// The corpus entry carrying [`FAR_APART_SKETCH`].
pub const FAR_APART_SKETCH_NAME: &str = "sketch_bins_0_and_2pow31";

/// A positive store of two bins, at indexes 0 and 2^31-1: the bytes that made
/// `sketches-ddsketch` panic (`assertion failed: k <= self.len()`).
pub const FAR_APART_SKETCH: [u8; 10] = [0x05, 0x02, 0x00, 0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0x02];

/// The Avro encoding of a record that is not QueryStats: its first field is
/// a string where QueryStats has a long. Read as QueryStats, the string's
/// length prefix becomes database_id and its text a string length that runs
/// past the end of the message.
fn impostor_body() -> Option<Vec<u8>> {
    let schema = apache_avro::Schema::parse_str(
        r#"{"type": "record", "name": "Impostor", "namespace": "elsewhere",
            "fields": [{"name": "label", "type": "string"}, {"name": "weight", "type": "long"}]}"#,
    )
    .ok()?;
    let value = apache_avro::types::Value::Record(vec![
        ("label".to_string(), apache_avro::types::Value::String("hello world".to_string())),
        ("weight".to_string(), apache_avro::types::Value::Long(-3)),
    ]);
    apache_avro::writer::datum::GenericDatumWriter::builder(&schema).build().ok()?.write_value_to_vec(value).ok()
}

/// `header` followed by deterministic noise (xorshift64 from a fixed seed)
/// up to 200 bytes.
fn random_body(header: Vec<u8>) -> Vec<u8> {
    let mut state = RANDOM_SEED;
    let mut out = header;
    while out.len() < RANDOM_MESSAGE_LEN {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend(state.to_le_bytes().iter().take(RANDOM_MESSAGE_LEN - out.len()));
    }
    out
}
