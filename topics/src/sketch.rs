//! The latency sketch carried in `query-stats` and stored per window.
//!
//! DDSketch (relative accuracy 1%), serialized in the reference binary encoding
//! (sketches-java `DDSketchWithExactSummaryStatistics`) so producers in other
//! languages can write it. The summary sum is an f64: merges are exact for the
//! bins, count, min and max, and the consumer folds a row's sketches in offset
//! order so even the sum is the same on every cluster.
//!
//! The consumer decodes, merges and re-encodes a sketch for every message, so
//! this type holds only the non-empty bins as sorted (index, count) lists and
//! merges them directly. It decodes, merges and encodes exactly as
//! `sketches-ddsketch` does (the library's dense stores, its `merge` and its
//! `to_java_bytes`; tested byte for byte below); the library is still what
//! answers quantiles.

use sketches_ddsketch::DDSketch;

pub use crate::sketch_contract::SketchError;
// 1% relative accuracy, 2048 bins: the crate's defaults, which are also what
// the reference encoding decodes to, so decoded and fresh sketches merge.
use crate::sketch_contract::{contract_config, contract_gamma};
use crate::sketch_contract::{FLAG_COUNT, FLAG_INDEX_MAPPING_LOG, FLAG_MAX, FLAG_MIN, FLAG_SUM, FLAG_ZERO_COUNT};

/// A mergeable latency distribution in milliseconds.
#[derive(Clone, PartialEq)]
pub struct LatencySketch {
    /// Positive values' bins: (index, count), indexes ascending, counts > 0.
    positive: Vec<(i32, u64)>,
    /// Negative values' bins (latencies have none, the encoding allows them).
    negative: Vec<(i32, u64)>,
    /// Values too close to 0 for a bin.
    zero_count: u64,
    /// Only meaningful when the sketch is not empty (as in the library).
    min: f64,
    max: f64,
    sum: f64,
}

impl std::fmt::Debug for LatencySketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySketch").field("count", &self.count()).finish()
    }
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self::new()
    }
}

/// Index deltas and counts (mode 1), positive and negative store.
const FLAG_POSITIVE_BINS: u8 = 0x05;
const FLAG_NEGATIVE_BINS: u8 = 0x07;

impl LatencySketch {
    pub fn new() -> Self {
        Self {
            positive: Vec::new(),
            negative: Vec::new(),
            zero_count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sum: 0.0,
        }
    }

    /// Values above [`MAX_VALUE_MS`] are recorded as that value, so a sketch
    /// built here always passes [`LatencySketch::decode_message`].
    pub fn add_ms(&mut self, value_ms: f64) {
        let v = value_ms.min(MAX_VALUE_MS);
        let config = contract_config();
        if v > config.min_possible() {
            add_to_bins(&mut self.positive, config.key(v), 1);
        } else if v < -config.min_possible() {
            add_to_bins(&mut self.negative, config.key(-v), 1);
        } else {
            self.zero_count += 1;
        }
        if v < self.min {
            self.min = v;
        }
        if self.max < v {
            self.max = v;
        }
        self.sum += v;
    }

    /// Decodes a sketch read back from the store (the result of merges):
    /// checked like a message's, with a total count bound only by `u64`.
    pub fn decode(bytes: &[u8]) -> Result<Self, SketchError> {
        Self::decode_bounded(bytes, MAX_STORED_COUNT)
    }

    /// Decodes a sketch carried by one message. Its total count is bounded
    /// far below `u64`, so no number of merges a window sees can overflow.
    pub fn decode_message(bytes: &[u8]) -> Result<Self, SketchError> {
        Self::decode_bounded(bytes, MAX_MESSAGE_COUNT)
    }

    /// Accepts exactly what the library would decode into a sketch of the
    /// contract's accuracy and keys (another gamma cannot be merged), and
    /// nothing it would mishandle (see `crate::sketch_check`).
    fn decode_bounded(bytes: &[u8], max_count: f64) -> Result<Self, SketchError> {
        let parsed = crate::sketch_check::parse(bytes, max_count)?;
        Ok(Self {
            positive: normalized(parsed.positive),
            negative: normalized(parsed.negative),
            zero_count: parsed.zero_count as u64,
            min: parsed.min.unwrap_or(f64::INFINITY),
            max: parsed.max.unwrap_or(f64::NEG_INFINITY),
            sum: parsed.sum,
        })
    }

    /// The reference encoding, byte for byte what the library's
    /// `to_java_bytes` writes for the same sketch.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + 4 * (self.positive.len() + self.negative.len()));
        self.encode_into(&mut out);
        out
    }

    /// [`LatencySketch::encode`] appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let count = self.count() as f64;
        if count != 0.0 {
            out.push(FLAG_COUNT);
            var_f64(out, count);
            out.push(FLAG_MIN);
            out.extend_from_slice(&self.min.to_le_bytes());
            out.push(FLAG_MAX);
            out.extend_from_slice(&self.max.to_le_bytes());
        }
        if self.sum != 0.0 {
            out.push(FLAG_SUM);
            out.extend_from_slice(&self.sum.to_le_bytes());
        }
        out.push(FLAG_INDEX_MAPPING_LOG);
        out.extend_from_slice(&contract_gamma().to_le_bytes());
        out.extend_from_slice(&0.0f64.to_le_bytes());
        if self.zero_count != 0 {
            out.push(FLAG_ZERO_COUNT);
            var_f64(out, self.zero_count as f64);
        }
        encode_bins(out, FLAG_POSITIVE_BINS, &self.positive);
        encode_bins(out, FLAG_NEGATIVE_BINS, &self.negative);
    }

    /// Merges `other` into `self`, as the library's `DDSketch::merge` does.
    /// Both passed the contract's checks, so their bins lie in its key
    /// window and the merge never collapses bins: it cannot fail.
    pub fn merge(&mut self, other: &LatencySketch) -> Result<(), SketchError> {
        let was_empty = self.count() == 0;
        merge_bins(&mut self.positive, &other.positive);
        merge_bins(&mut self.negative, &other.negative);
        self.zero_count += other.zero_count;
        if was_empty {
            self.min = other.min;
            self.max = other.max;
        } else if other.count() != 0 {
            if other.min < self.min {
                self.min = other.min;
            }
            if other.max > self.max {
                self.max = other.max;
            }
        }
        self.sum += other.sum;
        Ok(())
    }

    pub fn count(&self) -> u64 {
        let bins = |b: &[(i32, u64)]| b.iter().map(|(_, c)| *c).sum::<u64>();
        bins(&self.positive) + bins(&self.negative) + self.zero_count
    }

    /// Answered by the library, from the encoding.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        DDSketch::from_java_bytes(&self.encode()).ok()?.quantile(q).ok().flatten()
    }
}

/// Adds `count` to bin `index` of a sorted bin list.
fn add_to_bins(bins: &mut Vec<(i32, u64)>, index: i32, count: u64) {
    match bins.binary_search_by_key(&index, |(i, _)| *i) {
        Ok(at) => bins[at].1 += count,
        Err(at) => bins.insert(at, (index, count)),
    }
}

/// Bins in encoding order (indexes may repeat, counts may be 0) as the
/// library's store holds them: one count per index, empty bins dropped
/// (it never encodes them, and they cannot collapse anything in the window).
fn normalized(mut bins: Vec<(i32, u64)>) -> Vec<(i32, u64)> {
    if !bins.windows(2).all(|w| w[0].0 < w[1].0) {
        bins.sort_by_key(|(i, _)| *i);
        bins.dedup_by(|next, kept| {
            if next.0 == kept.0 {
                kept.1 += next.1;
                true
            } else {
                false
            }
        });
    }
    bins.retain(|(_, c)| *c > 0);
    bins
}

/// Adds `other`'s bins into `into` (both sorted, non-empty counts).
fn merge_bins(into: &mut Vec<(i32, u64)>, other: &[(i32, u64)]) {
    if other.is_empty() {
        return;
    }
    if into.is_empty() {
        into.extend_from_slice(other);
        return;
    }
    // Common case for a pattern's sketches: no bin that `into` lacks, so
    // the counts are added in place.
    let mut at = 0;
    let in_place = other.iter().all(|(index, _)| {
        while at < into.len() && into[at].0 < *index {
            at += 1;
        }
        at < into.len() && into[at].0 == *index
    });
    if in_place {
        let mut at = 0;
        for (index, count) in other {
            while into[at].0 < *index {
                at += 1;
            }
            into[at].1 += count;
        }
        return;
    }
    let mut merged = Vec::with_capacity(into.len() + other.len());
    let (mut a, mut b) = (0, 0);
    while a < into.len() && b < other.len() {
        let (x, y) = (into[a], other[b]);
        if x.0 == y.0 {
            merged.push((x.0, x.1 + y.1));
            a += 1;
            b += 1;
        } else if x.0 < y.0 {
            merged.push(x);
            a += 1;
        } else {
            merged.push(y);
            b += 1;
        }
    }
    merged.extend_from_slice(&into[a..]);
    merged.extend_from_slice(&other[b..]);
    *into = merged;
}

fn encode_bins(out: &mut Vec<u8>, flag: u8, bins: &[(i32, u64)]) {
    if bins.is_empty() {
        return;
    }
    out.push(flag);
    var_u64(out, bins.len() as u64);
    let mut previous = 0i64;
    for (index, count) in bins {
        let delta = i64::from(*index) - previous;
        var_u64(out, ((delta >> 63) ^ (delta << 1)) as u64);
        var_f64(out, *count as f64);
        previous = i64::from(*index);
    }
}

/// The reference encoding's unsigned var-long (as sketches-java writes it).
fn var_u64(out: &mut Vec<u8>, mut v: u64) {
    let len = ((63 - v.leading_zeros() as i32) / 7).clamp(0, 8);
    for _ in 0..len {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The reference encoding's var-double (as sketches-java writes it).
fn var_f64(out: &mut Vec<u8>, v: f64) {
    let mut bits = (v + 1.0).to_bits().wrapping_sub(1.0f64.to_bits()).rotate_left(6);
    for _ in 0..8 {
        let next = (bits >> 57) as u8;
        bits <<= 7;
        if bits == 0 {
            out.push(next);
            return;
        }
        out.push(next | 0x80);
    }
    out.push((bits >> 56) as u8);
}

/// Largest value a contract sketch holds in its own bin: the top of the
/// 2048-key window that starts at the mapping's smallest value (1e-9 ms), about
/// 6.6e8 ms (7.6 days). Latencies never come near it.
pub const MAX_VALUE_MS: f64 = 6.0e8;

/// Total count one message's sketch may carry (about 1.1e12 queries in one
/// aggregate): 2^24 such messages in one window still fit a `u64`.
const MAX_MESSAGE_COUNT: f64 = (1u64 << 40) as f64;
/// A stored (merged) sketch's total count.
const MAX_STORED_COUNT: f64 = (1u64 << 62) as f64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sketch_contract::key_window;
    use sketches_ddsketch::Config;

    #[test]
    fn roundtrip_merge_and_quantiles_stay_within_one_percent() {
        let mut a = LatencySketch::new();
        let mut b = LatencySketch::new();
        for i in 1..=1000 {
            a.add_ms(i as f64);
            b.add_ms((i + 1000) as f64);
        }
        let mut merged = LatencySketch::decode(&a.encode()).expect("decode a");
        merged.merge(&LatencySketch::decode(&b.encode()).expect("decode b")).expect("merge");
        assert_eq!(merged.count(), 2000);
        let p50 = merged.quantile(0.5).expect("p50");
        assert!((p50 - 1000.0).abs() / 1000.0 <= 0.011, "p50 {p50}");
        let p99 = merged.quantile(0.99).expect("p99");
        assert!((p99 - 1980.0).abs() / 1980.0 <= 0.011, "p99 {p99}");
    }

    #[test]
    fn merge_order_does_not_change_counts_or_quantiles() {
        let parts: Vec<LatencySketch> = (0..3)
            .map(|k| {
                let mut s = LatencySketch::new();
                for i in 0..50 {
                    s.add_ms(0.5 + (i * (k + 1)) as f64);
                }
                s
            })
            .collect();
        let mut ab = parts[0].clone();
        ab.merge(&parts[1]).expect("merge");
        ab.merge(&parts[2]).expect("merge");
        let mut ba = parts[2].clone();
        ba.merge(&parts[0]).expect("merge");
        ba.merge(&parts[1]).expect("merge");
        assert_eq!(ab.count(), ba.count());
        for q in [0.1, 0.5, 0.9, 0.99] {
            assert_eq!(ab.quantile(q), ba.quantile(q));
        }
    }

    /// Encodes `(index, count)` bins of a positive store in mode 1, behind
    /// the contract's index mapping and the given summary.
    fn encoded(bins: &[(i64, f64)], min: f64, max: f64, sum: f64) -> Vec<u8> {
        let mut out = vec![0x88];
        out.extend_from_slice(&min.to_le_bytes());
        out.push(0x8C);
        out.extend_from_slice(&max.to_le_bytes());
        out.push(0x84);
        out.extend_from_slice(&sum.to_le_bytes());
        out.push(0x02);
        out.extend_from_slice(&contract_config().gamma.to_le_bytes());
        out.extend_from_slice(&0.0f64.to_le_bytes());
        out.push(0x05);
        var_u64(&mut out, bins.len() as u64);
        let mut previous = 0i64;
        for (index, count) in bins {
            let delta = index.wrapping_sub(previous);
            var_u64(&mut out, ((delta >> 63) ^ (delta << 1)) as u64);
            var_f64(&mut out, *count);
            previous = *index;
        }
        out
    }

    fn rejected(bytes: &[u8]) -> String {
        match LatencySketch::decode_message(bytes) {
            Err(SketchError::Contract(why)) => why,
            other => panic!("expected a contract violation, got {other:?}"),
        }
    }

    #[test]
    fn the_encoding_helper_matches_the_library() {
        let ok = encoded(&[(100, 3.0), (101, 1.0)], 2.0, 2.1, 8.0);
        let s = LatencySketch::decode_message(&ok).expect("valid");
        assert_eq!(s.count(), 4);
    }

    #[test]
    fn far_apart_bins_that_panic_the_library_are_rejected_first() {
        let bytes = encoded(&[(0, 1.0), (i64::from(i32::MAX), 1.0)], 1.0, 2.0, 3.0);
        // The library alone panics on these bytes (the crash).
        let quiet = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let library = std::panic::catch_unwind(|| DDSketch::from_java_bytes(&bytes).map(|s| s.count()));
        std::panic::set_hook(quiet);
        assert!(library.is_err(), "the library no longer panics: the check may be relaxed");
        assert!(rejected(&bytes).contains("outside the contract's keys"));
        let (first, last) = key_window();
        assert_eq!(last - first + 1, 2048);
        assert!(LatencySketch::decode_message(&encoded(&[(first, 1.0), (last, 1.0)], 1.0, 2.0, 3.0)).is_ok());
        rejected(&encoded(&[(first - 1, 1.0)], 1.0, 2.0, 3.0));
        rejected(&encoded(&[(last + 1, 1.0)], 1.0, 2.0, 3.0));
        // Wrapping deltas are caught, not wrapped back into the window.
        rejected(&encoded(&[(i64::MAX, 1.0), (0, 1.0)], 1.0, 2.0, 3.0));
    }

    #[test]
    fn counts_must_be_finite_non_negative_integers() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1.5, 1_000_000.5, -0.5] {
            let why = rejected(&encoded(&[(10, bad)], 1.0, 2.0, 3.0));
            assert!(why.contains("bin count"), "{bad}: {why}");
        }
        rejected(&encoded(&[(10, 2e12)], 1.0, 2.0, 3.0));
        assert!(LatencySketch::decode(&encoded(&[(10, 2e12)], 1.0, 2.0, 3.0)).is_ok(), "stored rows may be large");
    }

    #[test]
    fn summary_must_be_finite_and_present() {
        for (min, max, sum) in [(f64::NAN, 1.0, 1.0), (1.0, f64::INFINITY, 1.0), (1.0, 2.0, f64::NEG_INFINITY)] {
            rejected(&encoded(&[(10, 1.0)], min, max, sum));
        }
        rejected(&encoded(&[(10, 1.0)], 1.0, 2.0, 1e300));
        // A non-empty sketch without min/max would be stored with infinities.
        let mut no_summary = encoded(&[(10, 1.0)], 1.0, 2.0, 3.0);
        no_summary.drain(..27);
        rejected(&no_summary);
    }

    #[test]
    fn more_bins_than_the_contract_holds_are_rejected() {
        let mut bytes = encoded(&[], 1.0, 2.0, 3.0);
        bytes.pop();
        bytes.extend_from_slice(&[0x81, 0x10]); // 2049 bins
        assert!(rejected(&bytes).contains("2049 bins"));
    }

    #[test]
    fn sketches_built_here_always_decode() {
        let mut s = LatencySketch::new();
        for v in [1e-12, 1e-9, 0.001, 1.0, 1e6, MAX_VALUE_MS, 1e12, f64::MAX] {
            s.add_ms(v);
        }
        let back = LatencySketch::decode_message(&s.encode()).expect("own sketch");
        assert_eq!(back.count(), 8);
    }

    /// A small deterministic generator (xorshift), so the cases are the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn value(&mut self) -> f64 {
            match self.next() % 10 {
                0 => 0.0,
                1 => -((self.next() % 1000) as f64) / 7.0,
                2 => 1e-10,
                3 => MAX_VALUE_MS,
                _ => (self.next() % 100_000) as f64 / 13.0,
            }
        }
    }

    /// What the library makes of a fold of encodings: decode each, merge in order, encode.
    fn library_fold(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut acc = DDSketch::from_java_bytes(&parts[0]).expect("library decodes");
        for p in &parts[1..] {
            acc.merge(&DDSketch::from_java_bytes(p).expect("library decodes")).expect("same config");
        }
        acc.to_java_bytes()
    }

    fn own_fold(parts: &[Vec<u8>]) -> (Vec<u8>, u64) {
        let mut acc = LatencySketch::decode(&parts[0]).expect("decodes");
        for p in &parts[1..] {
            acc.merge(&LatencySketch::decode(p).expect("decodes")).expect("merges");
        }
        (acc.encode(), acc.count())
    }

    #[test]
    fn decode_merge_encode_match_the_library_byte_for_byte() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..400 {
            let parts: Vec<Vec<u8>> = (0..1 + case % 7)
                .map(|_| {
                    let mut lib = DDSketch::new(contract_config());
                    let mut own = LatencySketch::new();
                    for _ in 0..rng.next() % 60 {
                        let v = rng.value();
                        lib.add(v);
                        own.add_ms(v);
                    }
                    assert_eq!(own.encode(), lib.to_java_bytes(), "add_ms builds what the library builds");
                    lib.to_java_bytes()
                })
                .collect();
            let (bytes, count) = own_fold(&parts);
            assert_eq!(bytes, library_fold(&parts), "case {case}");
            assert_eq!(count as usize, DDSketch::from_java_bytes(&bytes).expect("decodes").count());
        }
    }

    #[test]
    fn unusual_encodings_fold_like_the_library() {
        let first = key_window().0;
        let cases = [
            // Unsorted, repeated and empty bins.
            encoded(&[(first + 105, 2.0), (first + 100, 0.0), (first + 105, 1.0), (first + 90, 3.0)], 0.5, 9.0, 7.0),
            // Empty, but with a sum and a min/max that must not leak into a merge.
            encoded(&[], -5.0, 50.0, 3.5),
            encoded(&[(first + 7, 1.0)], 1.0, 1.0, 1.0),
            // A zero sum is not encoded; -0.0 neither.
            encoded(&[(first + 8, 2.0)], 1.0, 2.0, -0.0),
        ];
        for a in &cases {
            assert_eq!(own_fold(std::slice::from_ref(a)).0, library_fold(std::slice::from_ref(a)));
            for b in &cases {
                for c in &cases {
                    let parts = [a.clone(), b.clone(), c.clone()];
                    assert_eq!(own_fold(&parts).0, library_fold(&parts));
                }
            }
        }
    }

    #[test]
    fn garbage_and_foreign_accuracy_are_rejected() {
        assert!(matches!(LatencySketch::decode(&[0xff, 0x00, 0x13]), Err(SketchError::Decode(_))));
        let foreign = DDSketch::new(Config::new(0.05, 2048, 1e-9));
        assert!(matches!(LatencySketch::decode(&foreign.to_java_bytes()), Err(SketchError::Accuracy)));
    }
}
