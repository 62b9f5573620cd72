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

/// `value`'s last `digits.len()` decimal digits, zero-padded, into `digits`.
fn put_digits(digits: &mut [u8], value: u32) {
    let mut v = value;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// [`lit`] of a string appended to `out`, without the intermediate
/// `Value` and `String`: the same escaping as `as_sql(false)` (NUL, `\n`,
/// `\r`, `\\`, `'`, `"` and `\x1a` backslash-escaped). Every byte it
/// escapes is ASCII, so runs between them are copied whole.
pub fn push_str_lit(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('\'');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            0 => '0',
            b'\n' => 'n',
            b'\r' => 'r',
            b'\\' | b'\'' | b'"' => char::from(b),
            0x1a => 'Z',
            _ => continue,
        };
        out.push_str(&s[run..i]);
        out.push('\\');
        out.push(escaped);
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('\'');
}

/// An unsigned integer's decimal digits appended to `out` (what
/// `write!(out, "{v}")` gives, without `core::fmt`).
pub fn push_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// A signed integer's decimal digits appended to `out`.
pub fn push_i64(out: &mut String, v: i64) {
    out.push_str(itoa::Buffer::new().format(v));
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
    let mut out = String::with_capacity(28);
    push_datetime(&mut out, epoch_seconds);
    out
}

/// UTC milliseconds as a DATETIME(3) literal.
pub fn datetime_ms(epoch_ms: i64) -> String {
    let mut out = String::with_capacity(28);
    push_datetime_ms(&mut out, epoch_ms);
    out
}

/// UTC microseconds as a DATETIME(6) literal.
pub fn datetime_us(epoch_us: i64) -> String {
    let mut out = String::with_capacity(28);
    push_datetime_us(&mut out, epoch_us);
    out
}

/// [`datetime`] appended to `out` (statements built in one buffer).
pub fn push_datetime(out: &mut String, epoch_seconds: i64) {
    push_datetime_literal(out, chrono::DateTime::from_timestamp(epoch_seconds, 0), 0, "'1970-01-01 00:00:00'");
}

/// [`datetime_ms`] appended to `out`.
pub fn push_datetime_ms(out: &mut String, epoch_ms: i64) {
    push_datetime_literal(out, chrono::DateTime::from_timestamp_millis(epoch_ms), 3, "'1970-01-01 00:00:00.000'");
}

/// [`datetime_us`] appended to `out`.
pub fn push_datetime_us(out: &mut String, epoch_us: i64) {
    push_datetime_literal(out, chrono::DateTime::from_timestamp_micros(epoch_us), 6, "'1970-01-01 00:00:00.000000'");
}

/// `'YYYY-MM-DD HH:MM:SS[.fff|.ffffff]'`, written field by field: these
/// literals are built for every row a consumer writes, and chrono's format
/// strings are parsed again on every call. Years outside 0..=9999 (which no
/// DATETIME holds) keep chrono's rendering, so the server rejects them as before.
fn push_datetime_literal(out: &mut String, t: Option<chrono::DateTime<chrono::Utc>>, digits: u32, fallback: &str) {
    use chrono::{Datelike, Timelike};
    let Some(t) = t else {
        out.push_str(fallback);
        return;
    };
    if !(0..=9999).contains(&t.year()) {
        let format = match digits {
            0 => "%Y-%m-%d %H:%M:%S",
            3 => "%Y-%m-%d %H:%M:%S%.3f",
            _ => "%Y-%m-%d %H:%M:%S%.6f",
        };
        out.push_str(&format!("'{}'", t.format(format)));
        return;
    }
    // One buffer, the fields written in place: `'YYYY-MM-DD HH:MM:SS.ffffff'`.
    let naive = t.naive_utc();
    let mut buf = *b"'0000-00-00 00:00:00.000000'";
    // The year was checked to be 0..=9999 above.
    put_digits(&mut buf[1..5], naive.year() as u32);
    for (at, value) in
        [(6, naive.month()), (9, naive.day()), (12, naive.hour()), (15, naive.minute()), (18, naive.second())]
    {
        put_digits(&mut buf[at..at + 2], value);
    }
    // Nanoseconds past 1e9 mark a leap second, which these never are.
    let nanos = naive.nanosecond() % 1_000_000_000;
    let end = match digits {
        0 => 20,
        3 => {
            put_digits(&mut buf[21..24], nanos / 1_000_000);
            24
        }
        _ => {
            put_digits(&mut buf[21..27], nanos / 1_000);
            27
        }
    };
    buf[end] = b'\'';
    out.push_str(std::str::from_utf8(&buf[..=end]).expect("digits and separators are ASCII"));
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
    fn pushed_literals_are_what_lit_gives() {
        let texts = [
            "",
            "a",
            "it's",
            "\\",
            "\"quoted\"",
            "nul\0in",
            "\n\r\x1a",
            "tab\tstays",
            "é漢字 and 'quotes'\\",
            "\0",
            "end\\",
            "''",
            "select * from t where a = 'x\\'y'",
        ];
        for t in texts {
            let mut out = String::from("(");
            push_str_lit(&mut out, t);
            assert_eq!(out, format!("({}", lit(t)), "{t:?}");
        }
        for v in [0u64, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, v);
            assert_eq!(out, lit(v), "{v}");
        }
        for v in [0i64, 1, -1, 10, -10, 987_654_321, i64::MIN, i64::MIN + 1, i64::MAX] {
            let mut out = String::new();
            push_i64(&mut out, v);
            assert_eq!(out, lit(v), "{v}");
        }
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
        // A sweep over four centuries, leap days and every fraction width.
        let mut us: i64 = -62_167_219_200_000_000; // 0000-01-01
        while us < 253_402_300_799_999_999 {
            let s = us.div_euclid(1_000_000);
            let ms = us.div_euclid(1_000);
            let t = |v: Option<chrono::DateTime<chrono::Utc>>, f: &str| {
                v.map(|t| format!("'{}'", t.format(f))).unwrap_or_default()
            };
            assert_eq!(datetime(s), t(chrono::DateTime::from_timestamp(s, 0), "%Y-%m-%d %H:%M:%S"));
            assert_eq!(datetime_ms(ms), t(chrono::DateTime::from_timestamp_millis(ms), "%Y-%m-%d %H:%M:%S%.3f"));
            assert_eq!(datetime_us(us), t(chrono::DateTime::from_timestamp_micros(us), "%Y-%m-%d %H:%M:%S%.6f"));
            us += 7_919_876_543_211;
        }
        let before_year_0 = -62_198_755_200 - 86_400;
        assert!(datetime(before_year_0).starts_with("'-"), "chrono's rendering outside 0..=9999");
    }
}
