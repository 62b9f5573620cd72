//! Vitess key ranges: `-40`, `40-80`, `80-`, `-`.
//!
//! A shard owns the keyspace ids in `[start, end)`, compared as byte strings
//! (lexicographically, the way Vitess's `key.KeyRangeContains` does). An
//! empty start means "from the beginning", an empty end "to the end", so `-`
//! is the whole keyspace.
//!
//! Bounds that differ only by trailing zero bytes (`40` and `4000`) name the
//! same point for every keyspace id at least as long as the bound, which is
//! always the case for our 8-byte hash keyspace ids. Like Vitess (which strips
//! trailing zeros when it checks that ranges are contiguous), the partition
//! check treats them as equal, so `-40` followed by `4000-` is contiguous.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// The keyspace ids `[start, end)` owned by one shard.
///
/// Fields are public so callers can read the raw bounds; a range built by
/// hand rather than parsed is only checked by [`validate_partition`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyRange {
    /// First keyspace id in the range; empty = the beginning of the keyspace.
    pub start: Vec<u8>,
    /// First keyspace id past the range; empty = the end of the keyspace.
    pub end: Vec<u8>,
}

/// Why a shard name is not a key range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRangeError {
    /// No `-` separating start and end (Vitess's unsharded name `0` lands here).
    #[error("{0:?} is not a key range: expected START-END with hex bounds, like \"-40\", \"40-80\", \"80-\" or \"-\"")]
    MissingDash(String),

    /// A bound is not an even number of hex digits.
    #[error("{name:?}: {which} bound {bound:?} {reason}")]
    BadHex {
        /// The whole shard name.
        name: String,
        /// `start` or `end`.
        which: &'static str,
        /// The offending bound.
        bound: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The start is not below the end, so the range owns nothing.
    #[error("{0:?} is empty: its start is not below its end")]
    Empty(String),
}

/// Why a set of ranges is not a partition of the keyspace.
///
/// Indices refer to the slice given to [`validate_partition`], so callers can
/// name the offending config entries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// No ranges: nothing covers the keyspace.
    #[error("no key ranges: at least one is needed to cover the keyspace")]
    NoRanges,

    /// A range owns nothing (start not below end).
    #[error("\"{range}\" is empty: its start is not below its end")]
    EmptyRange {
        /// Position in the input.
        index: usize,
        /// The range.
        range: KeyRange,
    },

    /// Two ranges share keyspace ids. `index` is the later of the two in the
    /// input, `other` the earlier.
    #[error("\"{range}\" overlaps \"{other_range}\"")]
    Overlap {
        /// Position in the input of the later range.
        index: usize,
        /// The later range.
        range: KeyRange,
        /// Position in the input of the earlier range.
        other: usize,
        /// The earlier range.
        other_range: KeyRange,
    },

    /// Some keyspace ids are in no range. `lower` ends where the gap starts
    /// (none: the gap starts at the beginning); `upper` starts where it ends
    /// (none: it runs to the end). Each is `(input index, range)`.
    #[error("{}", gap_message(lower.as_ref(), upper.as_ref()))]
    Gap {
        /// The range just below the gap.
        lower: Option<(usize, KeyRange)>,
        /// The range just above the gap.
        upper: Option<(usize, KeyRange)>,
    },
}

fn gap_message(lower: Option<&(usize, KeyRange)>, upper: Option<&(usize, KeyRange)>) -> String {
    match (lower, upper) {
        (Some((_, l)), Some((_, u))) => format!(
            "gap between \"{l}\" and \"{u}\": keyspace ids from {} to {} are in no range",
            hex(&l.end),
            hex(&u.start)
        ),
        (None, Some((_, u))) => {
            format!("gap before \"{u}\": keyspace ids from the beginning to {} are in no range", hex(&u.start))
        }
        (Some((_, l)), None) => {
            format!("gap after \"{l}\": keyspace ids from {} to the end are in no range", hex(&l.end))
        }
        (None, None) => "gap: no range covers the keyspace".to_owned(),
    }
}

impl KeyRange {
    /// The whole keyspace, `-`: the only shard of an unsplit keyspace.
    pub fn full() -> Self {
        Self::default()
    }

    /// Parses a Vitess shard name such as `-40`, `40-80`, `80-`, `-` or
    /// `40-8000`. Hex digits may be upper or lower case.
    pub fn parse(name: &str) -> Result<Self, KeyRangeError> {
        let Some((start, end)) = name.split_once('-') else {
            return Err(KeyRangeError::MissingDash(name.to_owned()));
        };
        let range = Self { start: decode_bound(name, "start", start)?, end: decode_bound(name, "end", end)? };
        if range.is_empty() {
            return Err(KeyRangeError::Empty(name.to_owned()));
        }
        Ok(range)
    }

    /// Whether `keyspace_id` belongs to this range: `start <= id < end`,
    /// byte-wise, with empty bounds open (as Vitess's `KeyRangeContains`).
    pub fn contains(&self, keyspace_id: &[u8]) -> bool {
        let after_start = self.start.is_empty() || self.start.as_slice() <= keyspace_id;
        let before_end = self.end.is_empty() || keyspace_id < self.end.as_slice();
        after_start && before_end
    }

    /// The keyspace split evenly into `shards` ranges (a power of two from 1
    /// to 256), one byte per bound: `-80`, `80-` for two; `-` for one.
    pub fn even(shards: usize) -> Result<Vec<Self>, String> {
        if !(1..=256).contains(&shards) || !shards.is_power_of_two() {
            return Err(format!("shard count must be a power of two from 1 to 256, got {shards}"));
        }
        let step = 256 / shards;
        Ok((0..shards)
            .map(|i| Self {
                start: if i == 0 { Vec::new() } else { vec![(i * step) as u8] },
                end: if i + 1 == shards { Vec::new() } else { vec![((i + 1) * step) as u8] },
            })
            .collect())
    }

    /// Whether this is the whole keyspace (`-`).
    pub fn is_full(&self) -> bool {
        self.start.is_empty() && self.end.is_empty()
    }

    /// Whether the range owns no keyspace id (start at or past a non-empty
    /// end, trailing zero bytes ignored).
    pub fn is_empty(&self) -> bool {
        compare_end_to_start(&self.end, &self.start) != Ordering::Greater
    }
}

impl FromStr for KeyRange {
    type Err = KeyRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The canonical Vitess shard name: lowercase hex, `-` between the bounds.
impl fmt::Display for KeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", hex(&self.start), hex(&self.end))
    }
}

/// Checks that `ranges`, in any order, cover the whole keyspace with no gap
/// and no overlap: each keyspace id belongs to exactly one of them. That is
/// what lets a writer route a row to one shard without asking anyone.
pub fn validate_partition(ranges: &[KeyRange]) -> Result<(), PartitionError> {
    if ranges.is_empty() {
        return Err(PartitionError::NoRanges);
    }
    if let Some((index, range)) = ranges.iter().enumerate().find(|(_, r)| r.is_empty()) {
        return Err(PartitionError::EmptyRange { index, range: range.clone() });
    }

    let mut order: Vec<usize> = (0..ranges.len()).collect();
    // Stable: ranges with the same start keep their input order.
    order.sort_by(|&a, &b| significant(&ranges[a].start).cmp(significant(&ranges[b].start)));

    let entry = |i: usize| (i, ranges[i].clone());

    let first = order[0];
    if !significant(&ranges[first].start).is_empty() {
        return Err(PartitionError::Gap { lower: None, upper: Some(entry(first)) });
    }
    for pair in order.windows(2) {
        let (lo, hi) = (pair[0], pair[1]);
        match compare_end_to_start(&ranges[lo].end, &ranges[hi].start) {
            Ordering::Equal => {}
            Ordering::Greater => {
                let (later, earlier) = if lo > hi { (lo, hi) } else { (hi, lo) };
                return Err(PartitionError::Overlap {
                    index: later,
                    range: ranges[later].clone(),
                    other: earlier,
                    other_range: ranges[earlier].clone(),
                });
            }
            Ordering::Less => {
                return Err(PartitionError::Gap { lower: Some(entry(lo)), upper: Some(entry(hi)) });
            }
        }
    }
    let last = order[order.len() - 1];
    if !ranges[last].end.is_empty() {
        return Err(PartitionError::Gap { lower: Some(entry(last)), upper: None });
    }
    Ok(())
}

/// A bound without its trailing zero bytes: `40`, `4000` and `400000` are the
/// same point for keyspace ids at least as long as the bound. Lexicographic
/// order of the stripped forms is the order of the points.
fn significant(bound: &[u8]) -> &[u8] {
    let len = bound.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &bound[..len]
}

/// Compares an end bound (empty = past every id) with a start bound (empty =
/// before every id), trailing zeros ignored. `Greater` means the two ranges
/// share ids, `Less` that there is a gap between them.
fn compare_end_to_start(end: &[u8], start: &[u8]) -> Ordering {
    if end.is_empty() {
        return Ordering::Greater;
    }
    significant(end).cmp(significant(start))
}

fn decode_bound(name: &str, which: &'static str, bound: &str) -> Result<Vec<u8>, KeyRangeError> {
    let bad = |reason: String| KeyRangeError::BadHex { name: name.to_owned(), which, bound: bound.to_owned(), reason };
    if let Some(c) = bound.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(bad(format!("contains {c:?}, which is not a hex digit")));
    }
    // All ASCII hex digits from here on, so byte pairs are whole characters.
    let pairs = bound.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(bad("has an odd number of hex digits (bounds are whole bytes)".to_owned()));
    }
    Ok(pairs.map(|pair| (nibble(pair[0]) << 4) | nibble(pair[1])).collect())
}

/// Value of an ASCII hex digit; only called on checked digits.
fn nibble(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

use crate::sql::hex_digits as hex;

#[cfg(test)]
mod tests {
    use super::*;

    fn kr(name: &str) -> KeyRange {
        match KeyRange::parse(name) {
            Ok(r) => r,
            Err(e) => panic!("{name}: {e}"),
        }
    }

    fn ranges(names: &[&str]) -> Vec<KeyRange> {
        names.iter().map(|n| kr(n)).collect()
    }

    #[test]
    fn parses_vitess_shard_names() {
        assert_eq!(kr("-40"), KeyRange { start: vec![], end: vec![0x40] });
        assert_eq!(kr("40-80"), KeyRange { start: vec![0x40], end: vec![0x80] });
        assert_eq!(kr("80-"), KeyRange { start: vec![0x80], end: vec![] });
        assert_eq!(kr("-"), KeyRange::full());
        assert!(kr("-").is_full());
        assert_eq!(kr("40-8000"), KeyRange { start: vec![0x40], end: vec![0x80, 0x00] });
        assert_eq!(kr("-4000"), KeyRange { start: vec![], end: vec![0x40, 0x00] });
        assert_eq!(kr("AB-CDEF"), KeyRange { start: vec![0xab], end: vec![0xcd, 0xef] });
        assert_eq!("c0-".parse::<KeyRange>(), Ok(KeyRange { start: vec![0xc0], end: vec![] }));
    }

    #[test]
    fn displays_canonical_lowercase() {
        for (input, canonical) in
            [("-40", "-40"), ("40-80", "40-80"), ("80-", "80-"), ("-", "-"), ("AB-CDEF", "ab-cdef"), ("-4000", "-4000")]
        {
            assert_eq!(kr(input).to_string(), canonical);
            assert_eq!(kr(canonical), kr(input), "round trip of {input}");
        }
    }

    #[test]
    fn rejects_bad_hex() {
        let err = KeyRange::parse("4-80").expect_err("must be rejected");
        assert!(matches!(err, KeyRangeError::BadHex { which: "start", .. }), "{err}");
        assert!(err.to_string().contains("odd number of hex digits"), "{err}");

        let err = KeyRange::parse("40-8g").expect_err("must be rejected");
        assert!(matches!(err, KeyRangeError::BadHex { which: "end", .. }), "{err}");
        assert!(err.to_string().contains("'g'"), "{err}");

        assert!(matches!(KeyRange::parse("40-80-c0"), Err(KeyRangeError::BadHex { .. })));
        assert!(matches!(KeyRange::parse(" 40-80"), Err(KeyRangeError::BadHex { .. })));
        assert!(matches!(KeyRange::parse("0"), Err(KeyRangeError::MissingDash(_))));
        assert!(matches!(KeyRange::parse(""), Err(KeyRangeError::MissingDash(_))));
    }

    #[test]
    fn rejects_empty_ranges() {
        for name in ["80-40", "40-40", "40-4000", "-00"] {
            assert_eq!(KeyRange::parse(name), Err(KeyRangeError::Empty(name.to_owned())), "{name}");
        }
    }

    #[test]
    fn contains_is_start_inclusive_end_exclusive() {
        let r = kr("40-80");
        assert!(!r.contains(&[0x3f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
        assert!(r.contains(&[0x40, 0, 0, 0, 0, 0, 0, 0]));
        assert!(r.contains(&[0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
        assert!(!r.contains(&[0x80, 0, 0, 0, 0, 0, 0, 0]));

        assert!(kr("-40").contains(&[0; 8]));
        assert!(kr("c0-").contains(&[0xff; 8]));
        assert!(kr("-").contains(&[]));
        assert!(kr("-").contains(&[0xff; 8]));
        // Byte-string comparison, as Vitess: a shorter id sorts before its extensions.
        assert!(!kr("4000-").contains(&[0x40]));
    }

    #[test]
    fn accepts_partitions() {
        for set in [
            vec!["-"],
            vec!["-80", "80-"],
            vec!["80-", "-40", "40-80"],
            vec!["-40", "40-80", "80-c0", "c0-"],
            vec!["-20", "20-40", "40-60", "60-80", "80-a0", "a0-c0", "c0-e0", "e0-"],
            // Trailing zero bytes name the same point (Vitess strips them too).
            vec!["-40", "4000-80", "800000-"],
        ] {
            assert_eq!(validate_partition(&ranges(&set)), Ok(()), "{set:?}");
        }
    }

    #[test]
    fn reports_which_ranges_overlap() {
        let err = validate_partition(&ranges(&["-40", "40-90", "40-80", "80-"])).expect_err("must be rejected");
        assert_eq!(err, PartitionError::Overlap { index: 2, range: kr("40-80"), other: 1, other_range: kr("40-90") });
        assert_eq!(err.to_string(), "\"40-80\" overlaps \"40-90\"");

        let err = validate_partition(&ranges(&["-", "80-"])).expect_err("must be rejected");
        assert!(matches!(err, PartitionError::Overlap { index: 1, other: 0, .. }), "{err}");

        let err = validate_partition(&ranges(&["-80", "-80", "80-"])).expect_err("must be rejected");
        assert!(matches!(err, PartitionError::Overlap { index: 1, other: 0, .. }), "{err}");
    }

    #[test]
    fn reports_where_the_gap_is() {
        let err = validate_partition(&ranges(&["-40", "40-80", "90-"])).expect_err("must be rejected");
        assert_eq!(err, PartitionError::Gap { lower: Some((1, kr("40-80"))), upper: Some((2, kr("90-"))) });
        assert_eq!(err.to_string(), "gap between \"40-80\" and \"90-\": keyspace ids from 80 to 90 are in no range");

        let err = validate_partition(&ranges(&["40-80", "80-"])).expect_err("must be rejected");
        assert_eq!(err, PartitionError::Gap { lower: None, upper: Some((0, kr("40-80"))) });
        assert!(err.to_string().contains("from the beginning to 40"), "{err}");

        let err = validate_partition(&ranges(&["-40", "40-c0"])).expect_err("must be rejected");
        assert_eq!(err, PartitionError::Gap { lower: Some((1, kr("40-c0"))), upper: None });
        assert!(err.to_string().contains("from c0 to the end"), "{err}");
    }

    #[test]
    fn rejects_no_ranges_and_hand_built_empty_ones() {
        assert_eq!(validate_partition(&[]), Err(PartitionError::NoRanges));
        let inverted = KeyRange { start: vec![0x80], end: vec![0x40] };
        let err = validate_partition(&[kr("-80"), inverted.clone()]).expect_err("must be rejected");
        assert_eq!(err, PartitionError::EmptyRange { index: 1, range: inverted });
    }

    #[test]
    fn even_splits_name_the_vitess_ranges_and_partition_the_keyspace() {
        let names = |n: usize| KeyRange::even(n).expect("even").iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(names(1), ["-"]);
        assert_eq!(names(4), ["-40", "40-80", "80-c0", "c0-"]);
        for n in [1, 2, 8, 64, 256] {
            validate_partition(&KeyRange::even(n).expect("even")).expect("a partition");
        }
        assert!(KeyRange::even(3).is_err());
        assert!(KeyRange::even(512).is_err());
    }
}
