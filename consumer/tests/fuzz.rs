//! A seeded mutation loop: a million and more messages, mutated from the
//! valid and bad corpora, through decode + plan (and the sketch merges the
//! apply step does). No message may panic (a caught panic would show up as
//! a `decoder_panic` dead letter), and every rejection carries a known
//! reason code and a bounded detail. No server needed.

use std::collections::BTreeMap;
use std::sync::Arc;

use cluster::config::ClusterConfig;
use consumer::message::Fetched;
use consumer::plan::{plan, ItemBody, TimeRules, MAX_DETAIL_BYTES};
use consumer::rows::Cell;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use topics::corpus::{bad_messages, sample_query_stats, sample_slow_query};
use topics::{Codec, LatencySketch, QueryStats, SlowQuery, TopicKind};

const MESSAGES: usize = 1_000_000;
const BATCH: usize = 2_000;
const SEED: u64 = 0xf022_da7a_0011;

/// Every reason a planner may give (the codec's, plus the planner's own
/// `future_event`); anything else fails the test.
fn known_reason(reason: &str) -> bool {
    topics::DecodeError::REASONS.contains(&reason) || reason == "future_event"
}

fn cluster() -> ClusterConfig {
    let mut text = String::from("name = \"fuzz\"\n[auth]\nuser = \"u\"\n");
    for range in ["-40", "40-80", "80-c0", "c0-"] {
        text.push_str(&format!("[[shards]]\nrange = \"{range}\"\ndsn = \"mysql://u@127.0.0.1:1/fuzz\"\n"));
    }
    ClusterConfig::from_toml_str(&text, std::path::Path::new("."), &|_| None).expect("cluster file")
}

/// Bytes that make decoders take edge paths.
const INTERESTING: [u8; 8] = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff, 0x22];

/// One byte-level mutation of `bytes` (a few per message, so mutants stay
/// close enough to valid to get past the header and into Avro and the sketch).
fn mutate_bytes(rng: &mut StdRng, bytes: &mut Vec<u8>, donor: &[u8]) {
    let len = bytes.len();
    match rng.random_range(0..8) {
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            bytes[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        2 => {
            let i = rng.random_range(0..=len);
            let n = rng.random_range(1..16);
            let noise: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            bytes.splice(i..i, noise);
        }
        3 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(16));
            bytes.drain(i..i + n);
        }
        4 => bytes.truncate(rng.random_range(0..=len)),
        5 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(32));
            let chunk = bytes[i..i + n].to_vec();
            bytes.splice(i..i, chunk);
        }
        6 if !donor.is_empty() => {
            let i = rng.random_range(0..=len);
            let j = rng.random_range(0..donor.len());
            bytes.truncate(i);
            bytes.extend_from_slice(&donor[j..]);
        }
        _ if len > 5 => {
            // Past the Confluent header: an Avro varint made huge or negative.
            let i = rng.random_range(5..len);
            bytes[i] = if rng.random() { 0xff } else { 0x81 };
        }
        _ => bytes.push(rng.random()),
    }
}

fn mutate_sketch(rng: &mut StdRng, sketch: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..4) {
        mutate_bytes(rng, sketch, &[]);
    }
}

fn random_string(rng: &mut StdRng, max: usize) -> String {
    let n = rng.random_range(0..max);
    (0..n)
        .map(|_| match rng.random_range(0..6) {
            0 => '"',
            1 => '\\',
            2 => '\u{1}',
            3 => 'é',
            4 => '😀',
            _ => char::from(rng.random_range(b'a'..=b'z')),
        })
        .collect()
}

/// A structure-aware mutant: valid Avro, so it reaches the checks after the
/// codec (sketch contract, stored sizes, clocks).
fn mutate_stats(rng: &mut StdRng, q: &mut QueryStats) {
    match rng.random_range(0..8) {
        0..=2 => mutate_sketch(rng, &mut q.latency_sketch),
        3 => q.tables = (0..rng.random_range(0..4)).map(|_| random_string(rng, 40)).collect(),
        4 => q.tables = vec![random_string(rng, 2).repeat(rng.random_range(20_000..40_000))],
        5 => {
            q.interval_start =
                [i64::MIN, -1, 0, i64::MAX, 253_402_300_799_999, 4_102_444_800_000][rng.random_range(0..6)]
        }
        6 => q.interval_seconds = [i32::MIN, -1, 0, 1, i32::MAX][rng.random_range(0..5)],
        _ => q.fingerprint = random_string(rng, 70),
    }
}

fn mutate_slow(rng: &mut StdRng, s: &mut SlowQuery) {
    match rng.random_range(0..5) {
        0 => s.tables = vec![random_string(rng, 2).repeat(rng.random_range(20_000..40_000))],
        1 => s.error = Some("\"".repeat(rng.random_range(60_000..70_000))),
        2 => s.occurred_at = [i64::MIN, -1, i64::MAX, 4_102_444_800_000_000][rng.random_range(0..4)],
        3 => s.proxy_id = random_string(rng, 300),
        _ => s.query_text = random_string(rng, 200),
    }
}

/// Valid seeds: realistic workload events plus the corpus samples.
fn seeds(codec: &Codec) -> (Vec<QueryStats>, Vec<SlowQuery>) {
    let workload = loadtest::workload::Workload::new(loadtest::workload::WorkloadConfig::new(7, 1_714_564_800_000))
        .expect("workload");
    let (mut stats, mut slow) = (vec![sample_query_stats(7, "f00d")], vec![sample_slow_query(7, "f00d")]);
    for event in workload.take(400) {
        match event {
            loadtest::workload::Generated::Stats(q) => stats.push(q),
            loadtest::workload::Generated::Slow(s) => slow.push(s),
        }
    }
    assert!(codec.encode_query_stats(&stats[0]).is_ok() && stats.len() > 100 && !slow.is_empty());
    (stats, slow)
}

#[test]
fn a_million_mutated_messages_never_panic_and_every_rejection_has_a_reason() {
    let codec = Codec::embedded().expect("codec");
    let cluster = cluster();
    let shape = consumer::shape::Shape::for_cluster(&cluster, "");
    let topics: [Arc<str>; 2] = [Arc::from("query-stats"), Arc::from("slow-queries")];
    let rules = TimeRules { allowed_lateness_ms: 300_000, retention_ms: 8 * 86_400_000, ahead_ms: 3 * 86_400_000 };
    let (stats, slow) = seeds(&codec);
    let bad: Vec<(TopicKind, Vec<u8>)> =
        bad_messages(&codec).into_iter().filter_map(|b| Some((b.kind, b.payload?))).collect();
    let valid: Vec<(TopicKind, Vec<u8>)> = stats
        .iter()
        .filter_map(|q| Some((TopicKind::QueryStats, codec.encode_query_stats(q).ok()?)))
        .chain(slow.iter().filter_map(|s| Some((TopicKind::SlowQueries, codec.encode_slow_query(s).ok()?))))
        .collect();

    let mut rng = StdRng::seed_from_u64(SEED);
    let mut reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut routed, mut offset) = (0u64, 0i64);
    // Every accepted sketch is merged, as apply does, into one per shard.
    let mut merged: Vec<LatencySketch> = vec![LatencySketch::new(); cluster.shards.len()];
    let (mut sent, mut sketch_contract) = (0, 0u64);
    while sent < MESSAGES {
        let mut batch = Vec::with_capacity(BATCH);
        for _ in 0..BATCH {
            let (kind, payload) = match rng.random_range(0..10) {
                // Structure-aware: valid Avro around a mutated field.
                0..=3 => {
                    if rng.random_range(0..4) > 0 {
                        let mut q = stats[rng.random_range(0..stats.len())].clone();
                        mutate_stats(&mut rng, &mut q);
                        (TopicKind::QueryStats, codec.encode_query_stats(&q).ok())
                    } else {
                        let mut s = slow[rng.random_range(0..slow.len())].clone();
                        mutate_slow(&mut rng, &mut s);
                        (TopicKind::SlowQueries, codec.encode_slow_query(&s).ok())
                    }
                }
                // Byte-level: a valid or bad message with a few mutations.
                4..=8 => {
                    let pool = if rng.random_range(0..4) == 0 { &bad } else { &valid };
                    let (kind, mut bytes) = pool[rng.random_range(0..pool.len())].clone();
                    let donor = &valid[rng.random_range(0..valid.len())].1;
                    for _ in 0..rng.random_range(1..4) {
                        mutate_bytes(&mut rng, &mut bytes, donor);
                    }
                    (kind, Some(bytes))
                }
                // Unmutated, on the right or the wrong topic.
                _ => {
                    let (kind, bytes) = valid[rng.random_range(0..valid.len())].clone();
                    let kind = if rng.random_range(0..8) == 0 { other(kind) } else { kind };
                    (kind, Some(bytes))
                }
            };
            let topic = topics[usize::from(kind == TopicKind::SlowQueries)].clone();
            let timestamp_ms = match rng.random_range(0..6) {
                0 => None,
                1 => Some(rng.random()),
                _ => Some(1_714_564_800_000 + rng.random_range(-86_400_000..86_400_000)),
            };
            offset += 1;
            batch.push(Fetched { topic, partition: rng.random_range(0..4), offset, timestamp_ms, key: None, payload });
        }
        sent += batch.len();
        let out = plan(batch, &codec, &cluster, &shape, rules);
        for d in &out.dead_letters {
            assert_ne!(d.reason, "decoder_panic", "a message panicked the decoder: {}", d.detail);
            assert!(known_reason(d.reason), "unknown reason {} ({})", d.reason, d.detail);
            assert!(!d.detail.is_empty() && d.detail.len() <= MAX_DETAIL_BYTES + 64, "detail of {}", d.reason);
            *reasons.entry(d.reason).or_default() += 1;
            if d.detail.contains("outside the contract") {
                sketch_contract += 1;
            }
        }
        for (shard, items) in out.shards.iter().enumerate() {
            routed += items.len() as u64;
            for item in items {
                let ItemBody::Rows { rows, .. } = &item.body else { continue };
                for cell in rows.iter().flat_map(|r| &r.cells) {
                    if let Cell::Sketch(sketch) = cell {
                        merged[shard].merge(sketch).expect("accepted sketches merge");
                    }
                }
            }
        }
        assert_eq!(
            out.message_count(),
            (out.dead_letters.len() as u64) + out.shards.iter().map(|s| s.len() as u64).sum::<u64>()
        );
    }
    // A merged sketch is what gets stored and read back.
    for sketch in &merged {
        LatencySketch::decode(&sketch.encode()).expect("a stored merge decodes");
    }
    let rejected: u64 = reasons.values().sum();
    eprintln!("fuzz: {sent} messages, {routed} routed, {rejected} rejected: {reasons:?}");
    assert_eq!(routed + rejected, MESSAGES as u64);
    // Proves something: both verdicts are common and the deep checks are reached.
    assert!(routed > 100_000, "only {routed} routed");
    assert!(sketch_contract > 1_000, "only {sketch_contract} sketches broke the contract");
    for reason in ["avro_decode", "invalid_field", "future_event", "bad_magic", "wrong_record"] {
        assert!(reasons.get(reason).copied().unwrap_or(0) > 100, "{reason}: {reasons:?}");
    }
}

fn other(kind: TopicKind) -> TopicKind {
    match kind {
        TopicKind::QueryStats => TopicKind::SlowQueries,
        TopicKind::SlowQueries => TopicKind::QueryStats,
    }
}
