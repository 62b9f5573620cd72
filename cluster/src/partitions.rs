//! Time partitions of the retention-bounded tables: names, bounds and the
//! initial layout, shared by the DDL and the retention job.
//!
//! Tables are `PARTITION BY RANGE COLUMNS (<time column>)` (MariaDB 10.11 and
//! MySQL 8 alike; `RANGE (TO_DAYS())` could not express sub-day partitions for
//! compressed time). Partition bounds are multiples of `[time] partition`
//! since the epoch, so a partition always holds whole windows. The layout is
//! `p_past` (catch-all below), the real partitions, `p_future` (catch-all
//! `MAXVALUE`): no insert ever fails for a missing partition, and the
//! retention job splits `p_future` ahead of time and drops real partitions
//! once they are wholly older than retention.

use chrono::DateTime;

use crate::time::TimeConfig;

/// The catch-all partitions; every other partition is a real, droppable one.
pub const PAST: &str = "p_past";
pub const FUTURE: &str = "p_future";

/// Name of the real partition starting at `lower` (seconds since the epoch):
/// `pYYYYMMDD` for whole-day partitions, `pYYYYMMDD_HHMMSS` otherwise.
pub fn name(lower: i64, width_secs: i64) -> String {
    let Some(t) = DateTime::from_timestamp(lower, 0) else { return format!("p{lower}") };
    if width_secs % 86_400 == 0 && lower % 86_400 == 0 {
        t.format("p%Y%m%d").to_string()
    } else {
        t.format("p%Y%m%d_%H%M%S").to_string()
    }
}

/// Parses a `PARTITION_DESCRIPTION` of a RANGE COLUMNS datetime partition:
/// `Some(secs)` for a bound, `None` for `MAXVALUE`.
pub fn parse_bound(description: &str) -> Result<Option<i64>, String> {
    let d = description.trim();
    if d.eq_ignore_ascii_case("MAXVALUE") {
        return Ok(None);
    }
    let inner = d.trim_matches('\'');
    // MySQL 8 may print fractional zeros for DATETIME(6) columns.
    let inner = inner.split('.').next().unwrap_or(inner);
    chrono::NaiveDateTime::parse_from_str(inner, "%Y-%m-%d %H:%M:%S")
        .map(|t| Some(t.and_utc().timestamp()))
        .map_err(|e| format!("partition bound {description:?}: {e}"))
}

/// Floor of `secs` to a multiple of `width`.
pub fn floor(secs: i64, width: i64) -> i64 {
    secs.div_euclid(width) * width
}

/// Upper bounds of the real partitions a table should have at `now_secs`:
/// from the partition holding `now - retention` through the one holding
/// `now + ahead`. The first real partition's lower bound is `p_past`'s upper.
pub fn wanted_uppers(time: &TimeConfig, now_secs: i64) -> (i64, Vec<i64>) {
    let width = time.partition_secs();
    let first_lower = floor(now_secs - secs(time.retention), width);
    let last_lower = floor(now_secs + secs(time.ahead), width);
    let uppers = (first_lower / width + 1..=last_lower / width + 1).map(|k| k * width).collect();
    (first_lower, uppers)
}

/// The `PARTITION BY` clause of a new table.
pub fn clause(column: &str, time: &TimeConfig, now_secs: i64) -> String {
    let width = time.partition_secs();
    let (first_lower, uppers) = wanted_uppers(time, now_secs);
    let mut parts = vec![format!("PARTITION {PAST} VALUES LESS THAN ({})", crate::sql::datetime(first_lower))];
    for upper in uppers {
        parts.push(format!(
            "PARTITION {} VALUES LESS THAN ({})",
            name(upper - width, width),
            crate::sql::datetime(upper)
        ));
    }
    parts.push(format!("PARTITION {FUTURE} VALUES LESS THAN (MAXVALUE)"));
    format!("PARTITION BY RANGE COLUMNS ({column}) (\n  {}\n)", parts.join(",\n  "))
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_219_200 + 13 * 3600 + 17; // 2026-11-21 13:00:17 UTC

    #[test]
    fn daily_layout_spans_retention_and_ahead() {
        let clause = clause("window_start", &TimeConfig::default(), NOW);
        assert!(clause.starts_with("PARTITION BY RANGE COLUMNS (window_start) (\n  PARTITION p_past VALUES LESS THAN ('2026-11-13 00:00:00')"), "{clause}");
        assert!(clause.contains("PARTITION p20261113 VALUES LESS THAN ('2026-11-14 00:00:00')"), "{clause}");
        assert!(clause.contains("PARTITION p20261124 VALUES LESS THAN ('2026-11-25 00:00:00')"), "{clause}");
        assert!(!clause.contains("p20261125"), "{clause}");
        assert!(clause.ends_with("PARTITION p_future VALUES LESS THAN (MAXVALUE)\n)"), "{clause}");
    }

    #[test]
    fn compressed_layout_uses_second_names() {
        let time = TimeConfig {
            minute_window: std::time::Duration::from_secs(2),
            hour_window: std::time::Duration::from_secs(10),
            partition: std::time::Duration::from_secs(10),
            retention: std::time::Duration::from_secs(40),
            ahead: std::time::Duration::from_secs(30),
            ..TimeConfig::default()
        };
        let (first, uppers) = wanted_uppers(&time, NOW);
        assert_eq!(first, NOW - 47); // floor(13:00:17 - 40 s) = 12:59:30
        assert_eq!(uppers.len(), 8); // 12:59:30 .. 13:00:40 inclusive lowers
        assert_eq!(name(first, 10), "p20261121_125930");
    }

    #[test]
    fn bounds_round_trip_through_information_schema_text() {
        assert_eq!(parse_bound("'2026-11-22 00:00:00'"), Ok(Some(1_795_219_200 + 86_400)));
        assert_eq!(parse_bound("'2026-11-22 00:00:00.000000'"), Ok(Some(1_795_219_200 + 86_400)));
        assert_eq!(parse_bound("MAXVALUE"), Ok(None));
        assert!(parse_bound("738000").is_err());
        assert_eq!(crate::sql::datetime(1_795_219_200), "'2026-11-21 00:00:00'");
    }
}
