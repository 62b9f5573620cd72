//! The latency sketch carried in `query-stats` and stored per window.
//!
//! DDSketch (relative accuracy 1%) from `sketches-ddsketch`, serialized in the
//! reference binary encoding (sketches-java `DDSketchWithExactSummaryStatistics`)
//! so producers in other languages can write it. The summary sum is an f64:
//! merges are exact for the bins, count, min and max, and the consumer folds a
//! row's sketches in offset order so even the sum is the same on every cluster.

use sketches_ddsketch::DDSketch;

pub use crate::sketch_contract::SketchError;
// 1% relative accuracy, 2048 bins: the crate's defaults, which are also what
// the reference encoding decodes to, so decoded and fresh sketches merge.
use crate::sketch_contract::contract_config;

/// A mergeable latency distribution in milliseconds.
#[derive(Clone)]
pub struct LatencySketch {
    inner: DDSketch,
}

impl std::fmt::Debug for LatencySketch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencySketch").field("count", &self.inner.count()).finish()
    }
}

impl Default for LatencySketch {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencySketch {
    pub fn new() -> Self {
        Self { inner: DDSketch::new(contract_config()) }
    }

    /// Values above [`MAX_VALUE_MS`] are recorded as that value, so a sketch
    /// built here always passes [`LatencySketch::decode_message`].
    pub fn add_ms(&mut self, value_ms: f64) {
        self.inner.add(value_ms.min(MAX_VALUE_MS));
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

    /// Checks everything the library would trust before handing it the bytes,
    /// then checks that the sketch uses the contract's accuracy: sketches with
    /// another gamma cannot be merged.
    fn decode_bounded(bytes: &[u8], max_count: f64) -> Result<Self, SketchError> {
        crate::sketch_check::check(bytes, max_count)?;
        let inner = DDSketch::from_java_bytes(bytes).map_err(|e| SketchError::Decode(format!("{e:?}")))?;
        let mut probe = DDSketch::new(contract_config());
        if probe.merge(&inner).is_err() {
            return Err(SketchError::Accuracy);
        }
        Ok(Self { inner })
    }

    pub fn encode(&self) -> Vec<u8> {
        self.inner.to_java_bytes()
    }

    /// Merges `other` into `self`. Both come from [`LatencySketch::decode`]
    /// (or both from `new`), so their configurations agree and their bins lie
    /// in the contract's key window: the merged store never collapses.
    pub fn merge(&mut self, other: &LatencySketch) -> Result<(), SketchError> {
        self.inner.merge(&other.inner).map_err(|_| SketchError::Accuracy)
    }

    pub fn count(&self) -> u64 {
        self.inner.count() as u64
    }

    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.inner.quantile(q).ok().flatten()
    }
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
        fn var_u64(out: &mut Vec<u8>, mut v: u64) {
            let len = ((63 - v.leading_zeros() as i32) / 7).clamp(0, 8);
            for _ in 0..len {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
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
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1.5] {
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

    #[test]
    fn garbage_and_foreign_accuracy_are_rejected() {
        assert!(matches!(LatencySketch::decode(&[0xff, 0x00, 0x13]), Err(SketchError::Decode(_))));
        let foreign = DDSketch::new(Config::new(0.05, 2048, 1e-9));
        assert!(matches!(LatencySketch::decode(&foreign.to_java_bytes()), Err(SketchError::Accuracy)));
    }
}
