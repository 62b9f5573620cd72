//! Multi-row statements written as SQL text.
//!
//! Batches vary in size, so prepared statements would be re-prepared for
//! every row count; literal escaping through `mysql_common` keeps the text
//! protocol safe. The session's sql_mode (set by the pool) never includes
//! NO_BACKSLASH_ESCAPES, which is what `as_sql(false)` assumes.

use mysql_async::Value;

/// Rows per statement: well under max_allowed_packet for our row sizes, and
/// below MariaDB's IN-list-to-subquery threshold for the lookups.
pub const CHUNK_ROWS: usize = 400;

/// Statement size cap, well under MariaDB's default `max_allowed_packet` (16 MiB;
/// MySQL 8's is 64 MiB). The codec caps single fields far below this.
pub const MAX_STATEMENT_BYTES: usize = 4 << 20;

/// Rows per multi-row `VALUES` statement (an upsert has no IN list, so the
/// byte cap is what binds): fewer, larger statements load about twice as fast
/// as 400-row ones on MariaDB 10.11 (measured in `docs/notes-copier-verify.md`).
pub const VALUES_ROWS: usize = 10_000;

/// Splits value tuples so that no statement exceeds [`CHUNK_ROWS`] rows or
/// [`MAX_STATEMENT_BYTES`] bytes (a single larger tuple gets a statement of its own).
pub fn chunks(values: &[String]) -> Vec<&[String]> {
    chunks_of(values, CHUNK_ROWS)
}

/// [`chunks`] for multi-row `VALUES`: up to [`VALUES_ROWS`] rows, still
/// [`MAX_STATEMENT_BYTES`] at most.
pub fn values_chunks(values: &[String]) -> Vec<&[String]> {
    chunks_of(values, VALUES_ROWS)
}

fn chunks_of(values: &[String], max_rows: usize) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, v) in values.iter().enumerate() {
        if i > start && (i - start >= max_rows || bytes + v.len() > MAX_STATEMENT_BYTES) {
            out.push(&values[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += v.len() + 1;
    }
    if start < values.len() {
        out.push(&values[start..]);
    }
    out
}

/// Column `i` of a result row, or an error naming the table when it is
/// missing or of another type (a schema that drifted from this code).
pub fn column<T: mysql_async::prelude::FromValue>(
    row: &mut mysql_async::Row,
    i: usize,
    table: &str,
) -> Result<T, mysql_async::Error> {
    row.take_opt::<T, usize>(i)
        .and_then(Result::ok)
        .ok_or_else(|| mysql_async::Error::Other(format!("{table}: column {i} missing or mistyped").into()))
}

/// An SQL literal for `v`.
pub fn lit(v: impl Into<Value>) -> String {
    v.into().as_sql(false)
}

/// A binary literal (`X'..'`); `lit` would send valid UTF-8 bytes as a string.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2 + 3);
    push_hex(&mut out, bytes);
    out
}

/// [`hex`] appended to `out` (statements built in one buffer).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.push_str("X'");
    push_hex_digits(out, bytes);
    out.push('\'');
}

/// Lowercase hex digits of `bytes`, no prefix (key range bounds, digests).
pub fn hex_digits(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex_digits(&mut out, bytes);
    out
}

/// Lowercase hex digits of `bytes` appended to `out` (statements built in one buffer).
pub fn push_hex_digits(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // Through a byte buffer: pushing chars one by one was 7% of the
    // consumer's CPU (every sketch is written as hex).
    let mut buf = [0u8; 512];
    out.reserve(bytes.len() * 2);
    for chunk in bytes.chunks(buf.len() / 2) {
        for (pair, b) in buf.chunks_exact_mut(2).zip(chunk) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 0x0f)];
        }
        out.push_str(std::str::from_utf8(&buf[..chunk.len() * 2]).expect("hex digits are ASCII"));
    }
}

/// `value` in decimal, left-padded with zeros to `width` digits.
fn push_padded(out: &mut String, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut v = value;
    let mut at = digits.len();
    while v > 0 {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = at.min(digits.len() - width.min(digits.len()));
    out.push_str(std::str::from_utf8(&digits[start..]).expect("decimal digits are ASCII"));
}

/// `(a, b, c)` from literals.
pub fn tuple(values: &[String]) -> String {
    let mut out = String::with_capacity(values.iter().map(|v| v.len() + 2).sum::<usize>() + 2);
    out.push('(');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(v);
    }
    out.push(')');
    out
}

/// A UTC second count as a DATETIME literal (`'YYYY-MM-DD HH:MM:SS'`).
pub fn datetime(epoch_seconds: i64) -> String {
    datetime_literal(chrono::DateTime::from_timestamp(epoch_seconds, 0), 0, "'1970-01-01 00:00:00'")
}

/// UTC milliseconds as a DATETIME(3) literal.
pub fn datetime_ms(epoch_ms: i64) -> String {
    datetime_literal(chrono::DateTime::from_timestamp_millis(epoch_ms), 3, "'1970-01-01 00:00:00.000'")
}

/// UTC microseconds as a DATETIME(6) literal.
pub fn datetime_us(epoch_us: i64) -> String {
    datetime_literal(chrono::DateTime::from_timestamp_micros(epoch_us), 6, "'1970-01-01 00:00:00.000000'")
}

/// `'YYYY-MM-DD HH:MM:SS[.fff|.ffffff]'`, written field by field: these
/// literals are built for every row a consumer writes, and chrono's format
/// strings are parsed again on every call. Years outside 0..=9999 (which no
/// DATETIME holds) keep chrono's rendering, so the server rejects them as before.
fn datetime_literal(t: Option<chrono::DateTime<chrono::Utc>>, digits: u32, fallback: &str) -> String {
    use chrono::{Datelike, Timelike};
    let Some(t) = t else { return fallback.to_string() };
    if !(0..=9999).contains(&t.year()) {
        let format = match digits {
            0 => "%Y-%m-%d %H:%M:%S",
            3 => "%Y-%m-%d %H:%M:%S%.3f",
            _ => "%Y-%m-%d %H:%M:%S%.6f",
        };
        return format!("'{}'", t.format(format));
    }
    let mut out = String::with_capacity(28);
    out.push('\'');
    // The year was checked to be 0..=9999 above.
    push_padded(&mut out, t.year() as u32, 4);
    for (separator, value) in [('-', t.month()), ('-', t.day()), (' ', t.hour()), (':', t.minute()), (':', t.second())]
    {
        out.push(separator);
        push_padded(&mut out, value, 2);
    }
    // Nanoseconds past 1e9 mark a leap second, which these never are.
    let nanos = t.nanosecond() % 1_000_000_000;
    match digits {
        0 => {}
        3 => {
            out.push('.');
            push_padded(&mut out, nanos / 1_000_000, 3);
        }
        _ => {
            out.push('.');
            push_padded(&mut out, nanos / 1_000, 6);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_digits_match_format_across_buffer_boundaries() {
        for len in [0, 1, 255, 256, 257, 600] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut out = String::from("X'");
            push_hex_digits(&mut out, &bytes);
            assert_eq!(out, format!("X'{expected}"), "{len} bytes");
        }
    }

    #[test]
    fn chunks_respect_rows_and_bytes() {
        let small: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![400, 400, 200]);
        let big: Vec<String> = (0..5).map(|_| "x".repeat(MAX_STATEMENT_BYTES / 2)).collect();
        let sizes: Vec<usize> = chunks(&big).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1, 1]);
        assert!(chunks(&[]).is_empty());
        let many: Vec<String> = (0..25_000).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = values_chunks(&many).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_000]);
        let wide: Vec<String> = (0..3000).map(|_| "x".repeat(2000)).collect();
        assert!(values_chunks(&wide).iter().all(|c| c.len() * 2001 <= MAX_STATEMENT_BYTES), "bytes still bind");
    }

    #[test]
    fn literals_escape_quotes_and_bytes() {
        assert_eq!(lit("it's"), "'it\\'s'");
        assert_eq!(hex(&[0u8, 0x27]), "X'0027'");
        assert_eq!(hex(&[]), "X''");
        assert_eq!(lit(42u64), "42");
        assert_eq!(tuple(&[lit(1i64), lit("a")]), "(1,'a')");
        assert_eq!(datetime(0), "'1970-01-01 00:00:00'");
        assert_eq!(datetime_ms(1_500), "'1970-01-01 00:00:01.500'");
        assert_eq!(datetime_us(1_000_001), "'1970-01-01 00:00:01.000001'");
        // Field by field, exactly what chrono's format strings give.
        for (s, ms, us) in [(1_733_212_799, 1_733_212_799_123, 1_733_212_799_123_456), (253_402_300_799, 5, -1)] {
            let t = |v: Option<chrono::DateTime<chrono::Utc>>, f: &str| {
                v.map(|t| format!("'{}'", t.format(f))).unwrap_or_default()
            };
            assert_eq!(datetime(s), t(chrono::DateTime::from_timestamp(s, 0), "%Y-%m-%d %H:%M:%S"));
            assert_eq!(datetime_ms(ms), t(chrono::DateTime::from_timestamp_millis(ms), "%Y-%m-%d %H:%M:%S%.3f"));
            assert_eq!(datetime_us(us), t(chrono::DateTime::from_timestamp_micros(us), "%Y-%m-%d %H:%M:%S%.6f"));
        }
        let before_year_0 = -62_198_755_200 - 86_400;
        assert!(datetime(before_year_0).starts_with("'-"), "chrono's rendering outside 0..=9999");
    }
}
