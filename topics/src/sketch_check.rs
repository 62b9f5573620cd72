//! Checks and reads a DDSketch encoding in one walk.
//!
//! `sketches-ddsketch` trusts what it reads: bins far apart make its store collapse
//! through code that panics (`assertion failed: k <= self.len()` for keys 0
//! and 2^31-1), counts are cast to `u64` (NaN and negatives become 0 or
//! saturate, fractions truncate) and index deltas wrap. This walks the same
//! format (sketches-java `DDSketchWithExactSummaryStatistics`, as the library
//! reads it, including its optional `0x02` prefix) and rejects anything the
//! contract's 2048-bin, 1% sketch cannot hold. What it accepts it returns as
//! [`Parsed`]: the same bins, counts and summary the library would decode (the
//! equivalence is tested in `crate::sketch`), without the library's dense stores.

use crate::sketch_contract::{contract_gamma, key_window, SketchError};
use crate::sketch_contract::{FLAG_COUNT, FLAG_INDEX_MAPPING_LOG, FLAG_MAX, FLAG_MIN, FLAG_SUM, FLAG_ZERO_COUNT};

/// Bins per store of the contract's sketch.
const MAX_BINS: u64 = 2048;
/// Largest |min|, |max| and |sum| of one sketch (milliseconds): far beyond
/// any latency, far below where merged sums could reach infinity.
const MAX_ABS_VALUE: f64 = 1e18;

fn contract(why: impl Into<String>) -> SketchError {
    SketchError::Contract(why.into())
}

fn eof() -> SketchError {
    SketchError::Decode("UnexpectedEof".into())
}

struct Reader<'a> {
    input: &'a [u8],
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, SketchError> {
        let (&b, rest) = self.input.split_first().ok_or_else(eof)?;
        self.input = rest;
        Ok(b)
    }

    fn f64_le(&mut self) -> Result<f64, SketchError> {
        let Some((bytes, rest)) = self.input.split_first_chunk::<8>() else { return Err(eof()) };
        self.input = rest;
        Ok(f64::from_le_bytes(*bytes))
    }

    /// The library's (and Java's) unsigned var-long: at most 9 bytes.
    fn var_u64(&mut self) -> Result<u64, SketchError> {
        let mut value: u64 = 0;
        let mut shift: u32 = 0;
        loop {
            let next = self.byte()?;
            if next < 0x80 || shift == 56 {
                return Ok(value | (u64::from(next) << shift));
            }
            value |= (u64::from(next) & 0x7F) << shift;
            shift += 7;
        }
    }

    fn var_i64(&mut self) -> Result<i64, SketchError> {
        let encoded = self.var_u64()?;
        Ok(((encoded >> 1) as i64) ^ -((encoded & 1) as i64))
    }

    fn var_f64(&mut self) -> Result<f64, SketchError> {
        let mut bits: u64 = 0;
        let mut shift: i32 = 57;
        loop {
            let next = self.byte()?;
            if shift == 1 {
                bits |= u64::from(next);
                break;
            }
            if next < 0x80 {
                bits |= u64::from(next) << shift;
                break;
            }
            bits |= (u64::from(next) & 0x7F) << shift;
            shift -= 7;
        }
        Ok(f64::from_bits(bits.rotate_right(6).wrapping_add(1.0f64.to_bits())) - 1.0)
    }
}

/// The library's test for the optional version prefix, reproduced so both
/// walks start at the same byte.
fn is_valid_flag_byte(b: u8) -> bool {
    if matches!(b, FLAG_ZERO_COUNT | FLAG_COUNT | FLAG_SUM | FLAG_MIN | FLAG_MAX | FLAG_INDEX_MAPPING_LOG) {
        return true;
    }
    let subflag = b >> 2;
    match b & 0x03 {
        1 | 3 => (1..=3).contains(&subflag),
        2 => subflag <= 4,
        _ => false,
    }
}

fn count_value(what: &str, v: f64) -> Result<f64, SketchError> {
    // From 2^53 on every f64 is a whole number; below, a round trip through
    // u64 tells (cheaper than `fract`, a libm call, on every bin).
    let whole = |v: f64| v >= 9_007_199_254_740_992.0 || (v as u64) as f64 == v;
    if !v.is_finite() || v < 0.0 || !whole(v) {
        return Err(contract(format!("{what} {v} is not a finite, non-negative integer")));
    }
    Ok(v)
}

fn summary_value(what: &str, v: f64) -> Result<f64, SketchError> {
    if !v.is_finite() || v.abs() > MAX_ABS_VALUE {
        return Err(contract(format!("{what} {v} is not finite or beyond {MAX_ABS_VALUE:e}")));
    }
    Ok(v)
}

/// What an accepted encoding holds, as the library would decode it: bins as
/// (index, count) in encoding order (indexes may repeat; counts may be 0),
/// the zero bucket, and the summary (the last value of a repeated flag wins).
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) positive: Vec<(i32, u64)>,
    pub(crate) negative: Vec<(i32, u64)>,
    /// Accumulated as f64 and cast at the end, as the library does.
    pub(crate) zero_count: f64,
    pub(crate) sum: f64,
    pub(crate) min: Option<f64>,
    pub(crate) max: Option<f64>,
}

/// One store's bins, appended to `bins`: returns their total count.
fn store(r: &mut Reader<'_>, subflag: u8, window: (i64, i64), bins: &mut Vec<(i32, u64)>) -> Result<f64, SketchError> {
    let num_bins = r.var_u64()?;
    if num_bins > MAX_BINS {
        return Err(contract(format!("{num_bins} bins in one store, more than {MAX_BINS}")));
    }
    let in_window = |index: Option<i64>| -> Result<i64, SketchError> {
        match index {
            Some(i) if (window.0..=window.1).contains(&i) => Ok(i),
            _ => Err(contract(format!(
                "bin index {} outside the contract's keys {}..={} (values 1e-9 ms to ~6.6e8 ms)",
                index.map_or_else(|| "overflowing".to_string(), |i| i.to_string()),
                window.0,
                window.1
            ))),
        }
    };
    // The window lies well inside i32 (the library's key type).
    let key = |index: i64| i32::try_from(index).unwrap_or(i32::MAX);
    let mut total = 0.0;
    // num_bins <= MAX_BINS, checked above.
    bins.reserve(num_bins as usize);
    match subflag {
        // Index deltas and counts.
        1 => {
            let mut index = 0i64;
            for _ in 0..num_bins {
                index = in_window(index.checked_add(r.var_i64()?))?;
                let count = count_value("bin count", r.var_f64()?)?;
                total += count;
                bins.push((key(index), count as u64));
            }
        }
        // Index deltas, each bin counted once.
        2 => {
            let mut index = 0i64;
            for _ in 0..num_bins {
                index = in_window(index.checked_add(r.var_i64()?))?;
                total += 1.0;
                bins.push((key(index), 1));
            }
        }
        // Contiguous counts from a start index with a fixed step.
        3 => {
            let start = r.var_i64()?;
            let step = r.var_i64()?;
            for k in 0..num_bins {
                let k = i64::try_from(k).unwrap_or(i64::MAX);
                let index = in_window(step.checked_mul(k).and_then(|d| start.checked_add(d)))?;
                let count = count_value("bin count", r.var_f64()?)?;
                total += count;
                bins.push((key(index), count as u64));
            }
        }
        other => return Err(SketchError::Decode(format!("unknown bin encoding mode {other}"))),
    }
    Ok(total)
}

/// Accepts exactly the encodings the library decodes into a sketch the
/// contract can hold, with a total count of at most `max_count`, and returns
/// what they hold.
pub(crate) fn parse(bytes: &[u8], max_count: f64) -> Result<Parsed, SketchError> {
    if bytes.is_empty() {
        return Err(eof());
    }
    let mut r = Reader { input: bytes };
    if bytes.len() >= 2 && bytes[0] == FLAG_INDEX_MAPPING_LOG && is_valid_flag_byte(bytes[1]) {
        r.input = &bytes[1..];
    }
    let window = key_window();
    let (mut total, mut stores) = (0.0, [false; 2]);
    let mut out = Parsed::default();
    while !r.input.is_empty() {
        let flag = r.byte()?;
        let subflag = flag >> 2;
        match flag & 0x03 {
            2 => {
                if subflag != 0 {
                    return Err(contract(format!("index mapping {subflag} is not the logarithmic one")));
                }
                let gamma = r.f64_le()?;
                let offset = r.f64_le()?;
                if gamma.to_bits() != contract_gamma().to_bits() {
                    return Err(SketchError::Accuracy);
                }
                if offset != 0.0 {
                    return Err(contract(format!("index offset {offset}, the contract's is 0")));
                }
            }
            0 => match flag {
                FLAG_ZERO_COUNT => {
                    let zeros = count_value("zero count", r.var_f64()?)?;
                    total += zeros;
                    out.zero_count += zeros;
                }
                FLAG_COUNT => {
                    count_value("count", r.var_f64()?)?;
                }
                FLAG_SUM => out.sum = summary_value("sum", r.f64_le()?)?,
                FLAG_MIN => out.min = Some(summary_value("min", r.f64_le()?)?),
                FLAG_MAX => out.max = Some(summary_value("max", r.f64_le()?)?),
                _ => return Err(SketchError::Decode(format!("InvalidFlag({flag})"))),
            },
            kind => {
                let seen = &mut stores[usize::from(kind == 3)];
                if std::mem::replace(seen, true) {
                    return Err(contract("a store appears twice"));
                }
                let bins = if kind == 3 { &mut out.negative } else { &mut out.positive };
                total += store(&mut r, subflag, window, bins)?;
            }
        }
        if total > max_count {
            return Err(contract(format!("total count {total} above {max_count}")));
        }
    }
    // Without them the library keeps +/-infinity, which would then be stored.
    if total > 0.0 && (out.min.is_none() || out.max.is_none()) {
        return Err(contract("a non-empty sketch without min and max"));
    }
    Ok(out)
}
