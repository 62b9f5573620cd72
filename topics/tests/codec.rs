//! The stream contract's codec: the bad message corpus, exact round trips,
//! schema evolution both ways, the header ids and the pinned Kafka key.

use std::path::{Path, PathBuf};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::types::Value;
use apache_avro::Schema;
use topics::corpus::{bad_messages, sample_query_stats, sample_slow_query, FAR_APART_SKETCH_NAME, RANDOM_BODY_NAME};
use topics::schemas::SchemaSet;
use topics::{message_key, Codec, DecodeError, Event, LatencySketch, QueryStats, SlowQuery, TopicKind};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

fn evolved_dir() -> PathBuf {
    fixtures().join("evolved")
}

fn read_schema(path: &Path) -> Schema {
    let text = std::fs::read_to_string(path).expect("read schema fixture");
    Schema::parse_str(&text).expect("parse schema fixture")
}

fn embedded_schema(id: u32) -> Schema {
    SchemaSet::embedded().expect("embedded schemas").by_id.get(&id).expect("embedded id").clone()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Confluent framing: magic 0, big-endian id, datum.
fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn every_corpus_message_gets_its_reason() {
    let codec = Codec::embedded().expect("codec");
    let corpus = bad_messages(&codec);
    let mut names: Vec<&str> = corpus.iter().map(|m| m.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), corpus.len(), "corpus names are unique");
    assert_eq!(corpus.len(), 20);

    for m in &corpus {
        let result = codec.decode(m.kind, m.payload.as_deref());
        if m.codec_accepts {
            assert!(result.is_ok(), "{}: codec must accept, got {result:?}", m.name);
        } else {
            let err = result.expect_err(m.name);
            assert_eq!(err.reason(), m.reason, "{}: {err}", m.name);
        }
    }
}

#[test]
fn corpus_errors_carry_exact_details() {
    let codec = Codec::embedded().expect("codec");
    let decode = |name: &str| {
        let m = bad_messages(&codec).into_iter().find(|m| m.name == name).expect(name);
        codec.decode(m.kind, m.payload.as_deref())
    };
    assert_eq!(decode("no_value"), Err(DecodeError::Empty));
    assert_eq!(decode("zero_length_value"), Err(DecodeError::Empty));
    assert_eq!(decode("three_bytes"), Err(DecodeError::TruncatedHeader(3)));
    assert_eq!(decode("bad_magic_byte"), Err(DecodeError::BadMagic(0x01)));
    assert_eq!(decode("unknown_schema_id_999"), Err(DecodeError::UnknownSchemaId(999)));
    assert_eq!(
        decode("slow_query_on_query_stats_topic"),
        Err(DecodeError::WrongRecord {
            id: 2,
            record: "dualwrite.insights.SlowQuery".to_string(),
            topic: "query-stats".to_string()
        })
    );
    assert_eq!(
        decode("stats_record_on_slow_topic"),
        Err(DecodeError::WrongRecord {
            id: 1,
            record: "dualwrite.insights.QueryStats".to_string(),
            topic: "slow-queries".to_string()
        })
    );
    assert_eq!(decode("trailing_garbage"), Err(DecodeError::TrailingBytes(2)));
    let invalid = |name: &str| match decode(name) {
        Err(DecodeError::Invalid { field, why }) => (field, why),
        other => panic!("{name}: expected an invalid field, got {other:?}"),
    };
    assert_eq!(invalid("negative_database_id"), ("database_id", "-1 is negative".to_string()));
    let fingerprint_rule = "must be 1..=64 printable ASCII characters".to_string();
    assert_eq!(invalid("fingerprint_65_chars"), ("fingerprint", fingerprint_rule.clone()));
    assert_eq!(invalid("fingerprint_with_space"), ("fingerprint", fingerprint_rule));
    assert_eq!(invalid("negative_query_count"), ("query_count", "-1 is negative".to_string()));
    assert_eq!(invalid("slow_query_negative_duration"), ("duration_us", "-1 is negative".to_string()));
    for name in ["avro_body_cut_in_half", "other_record_shape_under_query_stats_id", RANDOM_BODY_NAME] {
        assert!(matches!(decode(name), Err(DecodeError::Avro(_))), "{name}: {:?}", decode(name));
    }
}

#[test]
fn random_body_is_deterministic_and_rejected() {
    let codec = Codec::embedded().expect("codec");
    let pick = || bad_messages(&codec).into_iter().find(|m| m.name == RANDOM_BODY_NAME).expect("random entry");
    let m = pick();
    let payload = m.payload.clone().expect("payload");
    assert_eq!(payload.len(), 200);
    assert_eq!(payload[..5], [0, 0, 0, 0, 1]);
    assert_eq!(Some(payload), pick().payload, "same seed, same bytes");
    let err = codec.decode(m.kind, m.payload.as_deref()).expect_err("noise is not a QueryStats");
    assert_eq!(err.reason(), "avro_decode");
    assert_eq!(err.to_string(), "avro decode failed: Invalid utf-8 string");
}

#[test]
fn garbage_sketch_passes_the_codec_and_fails_the_sketch_decoder() {
    let codec = Codec::embedded().expect("codec");
    let accepted: Vec<_> = bad_messages(&codec).into_iter().filter(|m| m.codec_accepts).collect();
    let names: Vec<&str> = accepted.iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        ["garbage_latency_sketch", FAR_APART_SKETCH_NAME, "tables_longer_once_escaped", "interval_start_in_2100"]
    );
    let far = &accepted[1];
    let Ok(Event::QueryStats(q)) = codec.decode(far.kind, far.payload.as_deref()) else {
        panic!("codec must accept the far-apart sketch");
    };
    assert!(matches!(LatencySketch::decode_message(&q.latency_sketch), Err(topics::sketch::SketchError::Contract(_))));
    let m = &accepted[0];
    assert_eq!((m.name, m.reason), ("garbage_latency_sketch", "invalid_field"));
    let Ok(Event::QueryStats(q)) = codec.decode(m.kind, m.payload.as_deref()) else {
        panic!("codec must accept the garbage sketch");
    };
    assert_eq!(q.latency_sketch, vec![0xff, 0x00, 0x13, 0x37]);
    assert_eq!(q, QueryStats { latency_sketch: q.latency_sketch.clone(), ..sample_query_stats(7, "f00d") });
    assert!(LatencySketch::decode(&q.latency_sketch).is_err());
}

#[test]
fn valid_events_round_trip_exactly() {
    let codec = Codec::embedded().expect("codec");
    let stats = [
        sample_query_stats(0, "a"),
        sample_query_stats(i64::MAX, &"f".repeat(64)),
        QueryStats { tables: Vec::new(), latency_sketch: LatencySketch::new().encode(), ..sample_query_stats(1, "b") },
    ];
    for q in stats {
        let bytes = codec.encode_query_stats(&q).expect("encode");
        assert_eq!(codec.decode(TopicKind::QueryStats, Some(&bytes)), Ok(Event::QueryStats(q)));
    }
    let slow = [
        sample_slow_query(3, "c0ffee"),
        SlowQuery { error: Some("ERROR 1205: lock wait timeout".to_string()), ..sample_slow_query(3, "c0ffee") },
        SlowQuery { error: Some(String::new()), tables: Vec::new(), ..sample_slow_query(0, "~") },
    ];
    for s in slow {
        let bytes = codec.encode_slow_query(&s).expect("encode");
        assert_eq!(codec.decode(TopicKind::SlowQueries, Some(&bytes)), Ok(Event::SlowQuery(s)));
    }
}

#[test]
fn embedded_codec_writes_ids_1_and_2_in_the_header() {
    let codec = Codec::embedded().expect("codec");
    let q = codec.encode_query_stats(&sample_query_stats(1, "a")).expect("encode");
    let s = codec.encode_slow_query(&sample_slow_query(1, "a")).expect("encode");
    assert_eq!(q[..5], [0, 0, 0, 0, 1]);
    assert_eq!(s[..5], [0, 0, 0, 0, 2]);
}

#[test]
fn kafka_key_is_pinned() {
    // Changing this value re-partitions every topic: one pattern's messages
    // would then span two partitions and lose their total order.
    assert_eq!(hex(&message_key(42, "abc")), "c4138b38982df654");
}

#[test]
fn evolved_fixture_copies_match_the_shipped_schemas() {
    for (id, file) in [(1, "1-query_stats.avsc"), (2, "2-slow_query.avsc")] {
        let fixture = read_schema(&evolved_dir().join(file));
        assert_eq!(fixture.canonical_form(), embedded_schema(id).canonical_form(), "{file}");
    }
}

#[test]
fn old_reader_decodes_a_message_written_with_the_newer_schema() {
    let schema3 = read_schema(&evolved_dir().join("3-query_stats.avsc"));
    let q = sample_query_stats(42, "abc");
    let Value::Record(mut fields) = apache_avro::to_value(&q).expect("to value") else {
        panic!("a struct becomes a record");
    };
    fields.push(("region".to_string(), Value::Union(1, Box::new(Value::String("eu-west".to_string())))));
    let v3 = Value::Record(fields).resolve(&schema3).expect("conforms to schema 3");
    let message = framed(
        3,
        &apache_avro::writer::datum::GenericDatumWriter::builder(&schema3)
            .build()
            .and_then(|w| w.write_value_to_vec(v3))
            .expect("encode with schema 3"),
    );

    let evolved = Codec::from_dir(&evolved_dir()).expect("evolved codec");
    assert_eq!(evolved.decode(TopicKind::QueryStats, Some(&message)), Ok(Event::QueryStats(q.clone())));
    // This build still writes its own schema, under id 1.
    let own = evolved.encode_query_stats(&q).expect("encode");
    assert_eq!(own[..5], [0, 0, 0, 0, 1]);
    assert_eq!(evolved.decode(TopicKind::QueryStats, Some(&own)), Ok(Event::QueryStats(q)));
    // A build whose schema directory lacks id 3 dead-letters it instead.
    let embedded = Codec::embedded().expect("codec");
    assert_eq!(embedded.decode(TopicKind::QueryStats, Some(&message)), Err(DecodeError::UnknownSchemaId(3)));
}

#[test]
fn new_reader_reads_this_builds_messages_with_region_null() {
    let schema1 = embedded_schema(1);
    let schema3 = read_schema(&evolved_dir().join("3-query_stats.avsc"));
    let q = sample_query_stats(42, "abc");
    let message = Codec::embedded().expect("codec").encode_query_stats(&q).expect("encode");
    let mut body = &message[5..];
    let value = apache_avro::reader::datum::GenericDatumReader::builder(&schema1)
        .reader_schema(&schema3)
        .build()
        .and_then(|r| r.read_value(&mut body))
        .expect("resolve 1 -> 3");
    assert!(body.is_empty());
    let Value::Record(fields) = &value else { panic!("a record, got {value:?}") };
    assert_eq!(fields.len(), 15);
    assert_eq!(fields.last(), Some(&("region".to_string(), Value::Union(0, Box::new(Value::Null)))));

    #[derive(Debug, serde::Deserialize)]
    struct RegionOnly {
        database_id: i64,
        region: Option<String>,
    }
    let read: RegionOnly = apache_avro::from_value(&value).expect("from value");
    assert_eq!((read.database_id, read.region), (42, None));
    // The fields both schemas share come through unchanged.
    assert_eq!(apache_avro::from_value::<QueryStats>(&value).expect("from value"), q);
}

#[test]
fn schema_compatibility_is_checked_both_ways() {
    let schema1 = embedded_schema(1);
    let schema3 = read_schema(&evolved_dir().join("3-query_stats.avsc"));
    SchemaCompatibility::can_read(&schema1, &schema3).expect("3 reads data written with 1");
    SchemaCompatibility::can_read(&schema3, &schema1).expect("1 reads data written with 3");
    SchemaCompatibility::mutual_read(&schema1, &schema3).expect("mutually compatible");

    let required = read_schema(&fixtures().join("incompatible").join("4-query_stats.avsc"));
    let err = SchemaCompatibility::can_read(&schema1, &required)
        .expect_err("a required field without default cannot be read from old data");
    assert_eq!(err.to_string(), "Incompatible schemata! Field 'region' in reader schema must have a default value");
    // Old readers still skip the extra field, so only the new reader breaks.
    SchemaCompatibility::can_read(&required, &schema1).expect("1 reads data written with 4");
}

#[test]
fn a_registry_codec_learns_ids_one_by_one_and_says_why_it_cannot_decode_one() {
    let q = sample_query_stats(7, "beef");
    let producer = Codec::registered(7, 8).expect("producer codec");
    let bytes = producer.encode_query_stats(&q).expect("encode");
    assert_eq!(topics::codec::schema_id(Some(&bytes)), Some(7));
    assert_eq!(topics::codec::schema_id(Some(&[0, 0, 0])), None);
    assert_eq!(topics::codec::schema_id(Some(&[1, 0, 0, 0, 7])), None);

    let mut consumer = Codec::for_registry().expect("consumer codec");
    assert!(consumer.encode_query_stats(&q).is_err(), "a registry consumer's codec has no ids to write under");
    // Not even the embedded ids: only what the registry says counts.
    assert!(!consumer.knows(1) && !consumer.knows(7));
    assert_eq!(consumer.decode(TopicKind::QueryStats, Some(&bytes)), Err(DecodeError::UnknownSchemaId(7)));
    consumer.add_writer(7, embedded_schema(1));
    assert!(consumer.knows(7));
    assert_eq!(consumer.decode(TopicKind::QueryStats, Some(&bytes)), Ok(Event::QueryStats(q.clone())));

    let why = "schema id 9 is not in the registry http://r/".to_owned();
    consumer.add_unusable(9, why.clone());
    let unknown = framed(9, &bytes[5..]);
    let error = consumer.decode(TopicKind::QueryStats, Some(&unknown)).expect_err("unusable id");
    assert_eq!(error, DecodeError::UnusableSchemaId { id: 9, why: why.clone() });
    assert_eq!((error.reason(), error.to_string()), ("unknown_schema_id", why));
}
