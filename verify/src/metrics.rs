//! The comparators' metrics, all defined here: gauges describing the last
//! run of each kind, served by the process's Prometheus exporter and written
//! next to the report as a textfile-collector file.

use crate::history::{RunOutcome, RunRecord};

/// Windows by state in the last window run (`state` = equal|different|not_settled|not_covered).
pub const WINDOWS: &str = "dualwrite_verify_windows";
/// Rows read on both clusters by the last run (`kind`, `target`).
pub const ROWS_COMPARED: &str = "dualwrite_verify_rows_compared";
/// Differing keys found by the last run.
pub const DIFFERENCES: &str = "dualwrite_verify_differences";
/// Wall time of the last run.
pub const DURATION: &str = "dualwrite_verify_last_run_duration_seconds";
/// 1 when the last run ended `equal`, 0 otherwise.
pub const EQUAL: &str = "dualwrite_verify_last_run_equal";
/// Windows whose fences called them settled but that changed between the
/// first read and the recheck (`table`): late or out-of-order messages.
pub const CHANGED_WHILE_SETTLED: &str = "dualwrite_verify_windows_changed_while_settled_total";
/// Nightly daemon runs by outcome (equal, different, incomplete, failed, busy).
pub const NIGHTLY_RUNS: &str = "dualwrite_verify_nightly_runs_total";
/// When the last nightly run completed (whatever it found).
pub const NIGHTLY_SUCCESS: &str = "dualwrite_verify_nightly_last_success_timestamp_seconds";
/// When the next nightly run is due.
pub const NIGHTLY_NEXT: &str = "dualwrite_verify_nightly_next_run_timestamp_seconds";
/// 1 while a nightly run is going.
pub const NIGHTLY_RUNNING: &str = "dualwrite_verify_nightly_running";

/// HELP text for every family, so a scrape passes `promtool check metrics`;
/// the per-table counters of `tables` (the pipeline's windowed tables) at zero.
pub fn describe<'a>(tables: impl IntoIterator<Item = &'a str>) {
    use metrics::{describe_gauge, Unit};
    describe_gauge!(WINDOWS, "Windows by state in the last window comparison.");
    describe_gauge!(ROWS_COMPARED, Unit::Count, "Rows read on both clusters by the last run.");
    describe_gauge!(DIFFERENCES, Unit::Count, "Differing keys found by the last run.");
    describe_gauge!(DURATION, Unit::Seconds, "Wall time of the last run.");
    describe_gauge!(EQUAL, "1 when the last run ended equal, 0 otherwise.");
    metrics::describe_counter!(
        CHANGED_WHILE_SETTLED,
        "Windows that changed after their fences called them settled (late or out-of-order messages), left for a later run."
    );
    // At zero from the start, so the first such window is an increase.
    for table in tables {
        metrics::counter!(CHANGED_WHILE_SETTLED, "table" => table.to_owned()).increment(0);
    }
    metrics::describe_counter!(
        NIGHTLY_RUNS,
        "Nightly runs by outcome: equal, different, incomplete, failed, busy (skipped: another run held the lock)."
    );
    describe_gauge!(NIGHTLY_SUCCESS, Unit::Seconds, "When the last nightly run completed.");
    describe_gauge!(NIGHTLY_NEXT, Unit::Seconds, "When the next nightly run is due.");
    describe_gauge!(NIGHTLY_RUNNING, "1 while a nightly run is going.");
}

pub(crate) fn changed_while_settled(table: &str) {
    metrics::counter!(CHANGED_WHILE_SETTLED, "table" => table.to_owned()).increment(1);
}

pub fn nightly_run(outcome: &str) {
    metrics::counter!(NIGHTLY_RUNS, "outcome" => outcome.to_owned()).increment(1);
}

pub fn nightly_success(at: chrono::DateTime<chrono::Utc>) {
    metrics::gauge!(NIGHTLY_SUCCESS).set(at.timestamp_millis() as f64 / 1000.0);
}

pub fn nightly_next(at: chrono::DateTime<chrono::Utc>) {
    metrics::gauge!(NIGHTLY_NEXT).set(at.timestamp_millis() as f64 / 1000.0);
}

pub fn nightly_running(running: bool) {
    metrics::gauge!(NIGHTLY_RUNNING).set(if running { 1.0 } else { 0.0 });
}

/// At daemon start: every outcome at zero, so a first failure is an increase.
pub fn nightly_init() {
    nightly_running(false);
    for outcome in ["equal", "different", "incomplete", "failed", "busy"] {
        metrics::counter!(NIGHTLY_RUNS, "outcome" => outcome).increment(0);
    }
}

/// Sets the gauges from a finished run.
pub fn record_run(run: &RunRecord) {
    let labels = [("kind", run.kind.clone()), ("target", run.target.clone())];
    if run.kind == "windows" {
        for (state, n) in states(run) {
            metrics::gauge!(WINDOWS, "state" => state).set(n as f64);
        }
    }
    metrics::gauge!(ROWS_COMPARED, &labels).set(run.rows_compared as f64);
    metrics::gauge!(DIFFERENCES, &labels).set(run.differences as f64);
    metrics::gauge!(DURATION, &labels).set(run.duration_ms as f64 / 1000.0);
    metrics::gauge!(EQUAL, &labels).set(if run.outcome == RunOutcome::Equal { 1.0 } else { 0.0 });
}

fn states(run: &RunRecord) -> [(&'static str, u64); 4] {
    [
        ("equal", run.windows_equal),
        ("different", run.windows_different),
        ("not_settled", run.windows_not_settled),
        ("not_covered", run.windows_not_covered),
    ]
}

/// The same gauges in the Prometheus text format, for node_exporter's
/// textfile collector (a nightly job exits before anyone scrapes it). Each
/// family's samples follow its HELP and TYPE lines.
pub fn textfile(runs: &[&RunRecord]) -> String {
    let mut out = String::new();
    let family = |out: &mut String, name: &str, help: &str, value: &dyn Fn(&RunRecord) -> String| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for run in runs {
            out.push_str(&format!("{name}{{kind=\"{}\",target=\"{}\"}} {}\n", run.kind, run.target, value(run)));
        }
    };
    out.push_str(&format!(
        "# HELP {WINDOWS} Windows by state in the last window comparison.\n# TYPE {WINDOWS} gauge\n"
    ));
    for run in runs.iter().filter(|r| r.kind == "windows") {
        for (state, n) in states(run) {
            out.push_str(&format!("{WINDOWS}{{state=\"{state}\"}} {n}\n"));
        }
    }
    family(&mut out, ROWS_COMPARED, "Rows read on both clusters by the last run.", &|r| r.rows_compared.to_string());
    family(&mut out, DIFFERENCES, "Differing keys found by the last run.", &|r| r.differences.to_string());
    family(&mut out, DURATION, "Wall time of the last run.", &|r| (r.duration_ms as f64 / 1000.0).to_string());
    family(&mut out, EQUAL, "1 when the last run ended equal.", &|r| {
        u8::from(r.outcome == RunOutcome::Equal).to_string()
    });
    out
}
