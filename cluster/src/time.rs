//! The store's clock: window sizes, allowed lateness, retention and the
//! width of the time partitions, from the cluster file's optional `[time]`.
//!
//! ```toml
//! [time]                      # every field optional; production defaults shown
//! minute_window = "1m"        # tables with window = "minute_window"
//! hour_window = "1h"          # tables with window = "hour_window"
//! allowed_lateness = "5m"     # a window settles this long after its end
//! retention = "8d"            # windows older than this are dropped / expired
//! partition = "1d"            # width of one time partition
//! ahead = "3d"                # partitions kept ready ahead of now
//! ```
//!
//! Compressed time (rehearsals, tests) is the same file with seconds:
//! `minute_window = "10s"`, `hour_window = "60s"`, `partition = "60s"`,
//! `retention = "80s"`. Both clusters of a move must agree on the windows and
//! the lateness (comparators refuse otherwise): they decide which row an event
//! folds into, so they are part of "same input, same state".

use std::time::Duration;

use serde::Deserialize;

/// Most time partitions a table may need at once.
pub const MAX_PARTITIONS: u64 = 1000;

/// Validated `[time]` section. All durations are whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeConfig {
    pub minute_window: Duration,
    pub hour_window: Duration,
    pub allowed_lateness: Duration,
    pub retention: Duration,
    pub partition: Duration,
    pub ahead: Duration,
}

impl Default for TimeConfig {
    fn default() -> Self {
        Self {
            minute_window: Duration::from_secs(60),
            hour_window: Duration::from_secs(3600),
            allowed_lateness: Duration::from_secs(300),
            retention: Duration::from_secs(8 * 86_400),
            partition: Duration::from_secs(86_400),
            ahead: Duration::from_secs(3 * 86_400),
        }
    }
}

/// A `[time]` field that is not usable; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time.{field}: {why}")]
pub struct TimeError {
    pub field: &'static str,
    pub why: String,
}

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTime {
    minute_window: Option<String>,
    hour_window: Option<String>,
    allowed_lateness: Option<String>,
    retention: Option<String>,
    partition: Option<String>,
    ahead: Option<String>,
}

impl RawTime {
    pub(crate) fn validate(self) -> Result<TimeConfig, TimeError> {
        let d = TimeConfig::default();
        let config = TimeConfig {
            minute_window: parse("minute_window", self.minute_window, d.minute_window)?,
            hour_window: parse("hour_window", self.hour_window, d.hour_window)?,
            allowed_lateness: parse("allowed_lateness", self.allowed_lateness, d.allowed_lateness)?,
            retention: parse("retention", self.retention, d.retention)?,
            partition: parse("partition", self.partition, d.partition)?,
            ahead: parse("ahead", self.ahead, d.ahead)?,
        };
        config.check()?;
        Ok(config)
    }
}

fn parse(field: &'static str, value: Option<String>, default: Duration) -> Result<Duration, TimeError> {
    let Some(text) = value else { return Ok(default) };
    let d = humantime::parse_duration(&text)
        .map_err(|e| TimeError { field, why: format!("{e} (expected e.g. \"10s\", \"1m\", \"8d\"), got {text:?}") })?;
    if d.subsec_nanos() != 0 {
        return Err(TimeError { field, why: format!("must be whole seconds, got {text:?}") });
    }
    Ok(d)
}

impl TimeConfig {
    /// The rules that make windows nest and partitions hold whole windows,
    /// so a partition drop removes whole windows and never part of one.
    pub fn check(&self) -> Result<(), TimeError> {
        let err = |field, why: String| Err(TimeError { field, why });
        let s = |d: Duration| d.as_secs();
        if s(self.minute_window) == 0 {
            return err("minute_window", "must be positive".into());
        }
        if s(self.hour_window) == 0 || s(self.hour_window) % s(self.minute_window) != 0 {
            return err(
                "hour_window",
                format!("must be a positive multiple of minute_window ({:?})", self.minute_window),
            );
        }
        if s(self.partition) == 0 || s(self.partition) % s(self.hour_window) != 0 {
            return err("partition", format!("must be a positive multiple of hour_window ({:?})", self.hour_window));
        }
        if self.retention < self.hour_window {
            return err("retention", format!("must be at least hour_window ({:?})", self.hour_window));
        }
        if self.ahead < self.partition {
            return err("ahead", format!("must be at least one partition ({:?})", self.partition));
        }
        // Every retained and every ready partition exists at once; thousands
        // make each ALTER slow (MariaDB's hard limit is 8192).
        let count = (s(self.retention) + s(self.ahead)) / s(self.partition);
        if count > MAX_PARTITIONS {
            return err(
                "partition",
                format!("(retention + ahead) / partition = {count} partitions, more than {MAX_PARTITIONS}: widen it"),
            );
        }
        Ok(())
    }

    pub fn minute_secs(&self) -> i64 {
        secs(self.minute_window)
    }

    pub fn hour_secs(&self) -> i64 {
        secs(self.hour_window)
    }

    pub fn partition_secs(&self) -> i64 {
        secs(self.partition)
    }

    pub fn retention_ms(&self) -> i64 {
        secs(self.retention).saturating_mul(1000)
    }

    pub fn allowed_lateness_ms(&self) -> i64 {
        secs(self.allowed_lateness).saturating_mul(1000)
    }

    /// Whether two clusters fold events into the same rows and settle them
    /// at the same point; retention and partitioning may differ.
    pub fn same_windows(&self, other: &TimeConfig) -> bool {
        (self.minute_window, self.hour_window, self.allowed_lateness)
            == (other.minute_window, other.hour_window, other.allowed_lateness)
    }
}

impl TimeConfig {
    /// Seconds of a table's window: a `[time]` setting it names, or its literal.
    pub fn window_secs(&self, window: &pipeline::Window) -> i64 {
        match window {
            pipeline::Window::Named(n) if n == "hour_window" => self.hour_secs(),
            pipeline::Window::Named(_) => self.minute_secs(),
            pipeline::Window::Fixed(d) => secs(*d),
        }
    }

    /// A table's window in seconds (0 for a table without one).
    pub fn table_window_secs(&self, table: &pipeline::Table) -> i64 {
        table.window.as_ref().map_or(0, |w| self.window_secs(w))
    }

    /// How long a table's rows are kept: its own `retention`, else `[time] retention`.
    pub fn table_retention_ms(&self, table: &pipeline::Table) -> i64 {
        table.retention.map_or(self.retention_ms(), |d| secs(d).saturating_mul(1000))
    }

    /// Every window must tile the partitions (a partition never splits a
    /// window, so retention drops whole windows) and hold the lateness.
    pub fn check_windows(&self, pipeline: &pipeline::Pipeline) -> Result<(), TimeError> {
        for t in pipeline.windowed() {
            let w = self.table_window_secs(t);
            if w <= 0 || self.partition_secs() % w != 0 {
                return Err(TimeError {
                    field: "partition",
                    why: format!(
                        "{} s is not a multiple of table {}'s window ({w} s) of pipeline {}",
                        self.partition_secs(),
                        t.name,
                        pipeline.name
                    ),
                });
            }
            if t.retention.is_some_and(|r| r < self.retention) {
                // The consumer counts a message older than `[time] retention` as
                // expired for every table it feeds: a table cannot keep less.
                return Err(TimeError {
                    field: "retention",
                    why: format!("table {}'s own retention is shorter than [time] retention", t.name),
                });
            }
        }
        Ok(())
    }
}

/// Start (seconds since the epoch, UTC) of the `window_secs` window holding
/// `ms`; windows are aligned to the epoch.
pub fn window_start(ms: i64, window_secs: i64) -> i64 {
    ms.div_euclid(1000).div_euclid(window_secs) * window_secs
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> Result<TimeConfig, TimeError> {
        let text: String = pairs.iter().map(|(k, v)| format!("{k} = \"{v}\"\n")).collect();
        toml::from_str::<RawTime>(&text).expect("toml").validate()
    }

    #[test]
    fn defaults_are_production_sizes() {
        let t = raw(&[]).expect("defaults");
        assert_eq!(t, TimeConfig::default());
        assert_eq!((t.minute_secs(), t.hour_secs(), t.partition_secs()), (60, 3600, 86_400));
    }

    #[test]
    fn compressed_time_is_accepted() {
        let t = raw(&[
            ("minute_window", "10s"),
            ("hour_window", "60s"),
            ("partition", "60s"),
            ("retention", "80s"),
            ("ahead", "3m"),
        ])
        .expect("compressed");
        assert_eq!((t.minute_secs(), t.hour_secs(), t.retention_ms()), (10, 60, 80_000));
    }

    #[test]
    fn errors_name_the_field() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[("minute_window", "0s")], "time.minute_window: must be positive"),
            (&[("minute_window", "1500ms")], "time.minute_window: must be whole seconds"),
            (&[("minute_window", "7s"), ("hour_window", "60s")], "time.hour_window: must be a positive multiple"),
            (&[("partition", "90m")], "time.partition: must be a positive multiple of hour_window"),
            (&[("retention", "10m")], "time.retention: must be at least hour_window"),
            (&[("retention", "soon")], "time.retention: "),
            (
                &[("minute_window", "1m"), ("hour_window", "5m"), ("partition", "5m")],
                "time.partition: (retention + ahead) / partition = 3168 partitions",
            ),
        ];
        for (pairs, want) in cases {
            let got = raw(pairs).expect_err("must be rejected").to_string();
            assert!(got.starts_with(want), "{pairs:?}: {got}");
        }
    }

    #[test]
    fn windows_align_to_the_epoch_and_floor_negative_times() {
        assert_eq!(window_start(125_999, 60), 120);
        assert_eq!(window_start(3_600_000, 3600), 3600);
        assert_eq!(window_start(-1, 10), -10);
    }
}
