//! The latency sketch carried in `query-stats` and stored per window.
//!
//! DDSketch (relative accuracy 1%) from `sketches-ddsketch`, serialized in the
//! reference binary encoding (sketches-java `DDSketchWithExactSummaryStatistics`)
//! so producers in other languages can write it. The summary sum is an f64:
//! merges are exact for the bins, count, min and max, and the consumer folds a
//! row's sketches in offset order so even the sum is the same on every cluster.

use sketches_ddsketch::{Config, DDSketch};

/// 1% relative accuracy, 2048 bins: the crate's defaults, which are also what
/// the reference encoding decodes to, so decoded and fresh sketches merge.
fn contract_config() -> Config {
    Config::defaults()
}

#[derive(Debug, thiserror::Error)]
pub enum SketchError {
    #[error("latency_sketch is not a valid DDSketch encoding: {0}")]
    Decode(String),
    #[error("latency_sketch relative accuracy is not the contract's 1%")]
    Accuracy,
}

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

    pub fn add_ms(&mut self, value_ms: f64) {
        self.inner.add(value_ms);
    }

    /// Decodes and checks that the sketch uses the contract's accuracy: sketches
    /// with another gamma cannot be merged.
    pub fn decode(bytes: &[u8]) -> Result<Self, SketchError> {
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
    /// (or both from `new`), so their configurations agree.
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn garbage_and_foreign_accuracy_are_rejected() {
        assert!(matches!(LatencySketch::decode(&[0xff, 0x00, 0x13]), Err(SketchError::Decode(_))));
        let foreign = DDSketch::new(Config::new(0.05, 2048, 1e-9));
        assert!(matches!(LatencySketch::decode(&foreign.to_java_bytes()), Err(SketchError::Accuracy)));
    }
}
