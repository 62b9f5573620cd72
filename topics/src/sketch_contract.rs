//! The latency sketch's contract, shared by the sketch type ([`crate::sketch`])
//! and the byte-level check that runs before the library sees a message
//! ([`crate::sketch_check`]): a leaf, so neither imports the other.

use sketches_ddsketch::Config;

// Flag bytes of the reference encoding (sketches-java `Flag`): read by
// `crate::sketch_check`, written by `crate::sketch`.
pub(crate) const FLAG_INDEX_MAPPING_LOG: u8 = 0x02;
pub(crate) const FLAG_ZERO_COUNT: u8 = 0x04;
pub(crate) const FLAG_COUNT: u8 = 0xA0;
pub(crate) const FLAG_SUM: u8 = 0x84;
pub(crate) const FLAG_MIN: u8 = 0x88;
pub(crate) const FLAG_MAX: u8 = 0x8C;

/// The contract's sketch configuration: DDSketch defaults (1% relative
/// accuracy, 2048 bins).
pub(crate) fn contract_config() -> Config {
    Config::defaults()
}

#[derive(Debug, thiserror::Error)]
pub enum SketchError {
    #[error("latency_sketch is not a valid DDSketch encoding: {0}")]
    Decode(String),
    #[error("latency_sketch relative accuracy is not the contract's 1%")]
    Accuracy,
    /// Decodes, but holds what the contract's 2048-bin sketch cannot (and what
    /// the library would mishandle or panic on).
    #[error("latency_sketch is outside the contract: {0}")]
    Contract(String),
}

/// The keys a contract sketch may hold: `[first, first + 2047]`, where
/// `first` is the key of the mapping's smallest value. Bins outside it would
/// make the library collapse its store, whose code panics on far-apart keys.
pub(crate) fn key_window() -> (i64, i64) {
    let config = contract_config();
    let first = i64::from(config.key(config.min_possible()));
    (first, first + i64::from(config.max_num_bins) - 1)
}

pub(crate) fn contract_gamma() -> f64 {
    contract_config().gamma
}
