//! The nightly equivalence report, built from the history tables: JSON for
//! machines, Markdown for a summary, and one self-contained HTML page (inline
//! CSS, no external assets) with a timeline per table and the open
//! differences listed below it.
//!
//! The timeline shows only the span that holds checked windows, with runs of
//! consecutive windows in the same state merged into one span. A compressed-
//! time run asked for a 24 h report has tens of thousands of windows per
//! table, almost all never checked: one element per window made a 6 MB page
//! (16 MB JSON) in which the few checked windows were too thin to see. Sized
//! by runs, the files stay a few kB whatever the range, and a lone different
//! window keeps a minimum width so it is never invisible.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use mysql_async::Pool;
use serde::Serialize;

use crate::error::VerifyError;
use crate::history::{self, RunOutcome, RunRecord, StoredDifference, WindowRecord, WindowVerdict};
use crate::spec;

/// Most differences listed in the HTML page (the JSON holds all of them).
const HTML_DIFFERENCES: usize = 2000;
/// Most differences listed in the Markdown summary.
const MARKDOWN_DIFFERENCES: usize = 50;

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    /// Epoch seconds, `[from, to)`: the range asked for.
    pub from: i64,
    pub to: i64,
    /// `shown_from`, `shown_to` and `timelines` at the top level of report.json.
    #[serde(flatten)]
    pub timeline: Timelines,
    pub latest_windows_run: Option<RunRecord>,
    /// The latest full diff of each unbounded table.
    pub table_runs: Vec<RunRecord>,
    pub open_differences: Vec<StoredDifference>,
    /// The keys repairs touched, newest first (`dualwrite-verify repair`).
    pub repairs: Vec<crate::repair::audit::RepairRecord>,
}

/// Every windowed table's timeline (the pipeline's, in its order) over the part of a range that holds
/// checked windows: the report's, and the migration console's.
#[derive(Debug, Clone, Serialize)]
pub struct Timelines {
    /// The part of the range holding checked windows (the whole range when none).
    pub shown_from: i64,
    pub shown_to: i64,
    pub timelines: Vec<Timeline>,
}

/// One table's row of the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub tbl: String,
    pub window_secs: i64,
    /// Runs of consecutive windows in one state, covering `[shown_from, shown_to)`.
    pub spans: Vec<Span>,
}

/// Consecutive windows in the same state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// Start of the first window (epoch seconds).
    pub window_start: i64,
    pub windows: u64,
    /// `None`: never checked.
    pub state: Option<WindowVerdict>,
    /// Rows summed over the span's windows that recorded them.
    pub old_rows: u64,
    pub new_rows: u64,
    pub differences: u64,
}

/// First window start at or after `from` on a grid of `size`.
fn first_window(from: i64, size: i64) -> i64 {
    let start = from.div_euclid(size) * size;
    if start < from {
        start + size
    } else {
        start
    }
}

/// The smallest `[from, to)` holding every recorded window of every table
/// (`(start, size)` pairs), or `None` when nothing was recorded.
fn data_span(windows: impl Iterator<Item = (i64, i64)>) -> Option<(i64, i64)> {
    windows.fold(None, |acc, (start, size)| match acc {
        None => Some((start, start + size)),
        Some((from, to)) => Some((from.min(start), to.max(start + size))),
    })
}

/// The windows of `[from, to)` on a grid of `size`, runs of equal state merged.
fn spans(records: &BTreeMap<i64, WindowRecord>, size: i64, from: i64, to: i64) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut start = first_window(from, size);
    while start < to {
        let record = records.get(&start);
        let state = record.map(|r| r.state);
        let (old, new) = (record.and_then(|r| r.old_rows).unwrap_or(0), record.and_then(|r| r.new_rows).unwrap_or(0));
        let differences = record.map_or(0, |r| r.differences);
        match out.last_mut() {
            Some(last) if last.state == state => {
                last.windows += 1;
                last.old_rows += old;
                last.new_rows += new;
                last.differences += differences;
            }
            _ => out.push(Span { window_start: start, windows: 1, state, old_rows: old, new_rows: new, differences }),
        }
        start += size;
    }
    out
}

/// The timelines of windows starting in `[from, to)` of every windowed
/// table of `cluster`'s pipeline (the new cluster's, whose control database
/// `control` is), zoomed to the checked ones and merged into runs (see the
/// module docs); empty spans of "not checked" when the comparators never ran
/// against `control`.
pub async fn timelines(
    control: &Pool,
    cluster: &cluster::config::ClusterConfig,
    from: i64,
    to: i64,
) -> Result<Timelines, VerifyError> {
    let mut tables = Vec::new();
    for table in spec::windowed(cluster)? {
        let size = table.window_secs();
        let records = history::windows(control, &table.name, from, to).await?;
        tables.push((table.name, size, records));
    }
    let recorded = tables.iter().flat_map(|(_, size, records)| records.keys().map(move |start| (*start, *size)));
    let (shown_from, shown_to) = data_span(recorded).map_or((from, to), |(f, t)| (f.max(from), t.min(to)));
    let timelines = tables
        .iter()
        .map(|(name, size, records)| Timeline {
            tbl: name.to_string(),
            window_secs: *size,
            spans: spans(records, *size, shown_from, shown_to),
        })
        .collect();
    Ok(Timelines { shown_from, shown_to, timelines })
}

/// Reads the history for windows starting in `[from, to)` of the tables of
/// `cluster`'s pipeline (the new cluster's, whose control database `control` is).
/// Repaired keys read into the report.
const REPAIRS_SHOWN: u32 = 1000;

pub async fn build(
    control: &Pool,
    cluster: &cluster::config::ClusterConfig,
    from: i64,
    to: i64,
) -> Result<Report, VerifyError> {
    history::ensure_tables(control).await?;
    let timeline = timelines(control, cluster, from, to).await?;
    let mut table_runs = Vec::new();
    for table in cluster.pipeline.unbounded() {
        if let Some(run) = history::latest_run(control, "table", &table.name).await? {
            table_runs.push(run);
        }
    }
    Ok(Report {
        generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        from,
        to,
        timeline,
        latest_windows_run: history::latest_run(control, "windows", "windows").await?,
        table_runs,
        open_differences: history::open_differences(control).await?,
        repairs: crate::repair::audit::recent(control, REPAIRS_SHOWN).await?,
    })
}

/// Writes `report.json`, `report.md`, `report.html` and `verify.prom` into `dir` (mode 0600).
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| VerifyError::Report { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| VerifyError::Unexpected(e.to_string()))?;
    let runs: Vec<&RunRecord> = report.latest_windows_run.iter().chain(&report.table_runs).collect();
    let files = [
        ("report.json", json),
        ("report.md", markdown(report)),
        ("report.html", html(report)),
        ("verify.prom", crate::metrics::textfile(&runs)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        // 0600: reports name databases and differing keys.
        service::write_private(&path, text).map_err(io(&path))?;
        written.push(path);
    }
    Ok(written)
}

fn time(epoch_secs: i64) -> String {
    chrono::DateTime::from_timestamp(epoch_secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| epoch_secs.to_string())
}

/// Windows per state: equal, different, not settled, not covered, not checked.
fn counts(timeline: &Timeline) -> [usize; 5] {
    let mut out = [0; 5];
    for span in &timeline.spans {
        let i = match span.state {
            Some(WindowVerdict::Equal) => 0,
            Some(WindowVerdict::Different) => 1,
            Some(WindowVerdict::NotSettled) => 2,
            Some(WindowVerdict::NotCovered) => 3,
            None => 4,
        };
        out[i] += usize::try_from(span.windows).unwrap_or(usize::MAX);
    }
    out
}

fn verdict(report: &Report) -> &'static str {
    let different = report.timeline.timelines.iter().any(|t| counts(t)[1] > 0)
        || report.table_runs.iter().any(|r| r.outcome == RunOutcome::Different);
    let errored = report.latest_windows_run.as_ref().is_some_and(|r| r.outcome == RunOutcome::Error)
        || report.table_runs.iter().any(|r| r.outcome == RunOutcome::Error);
    match (different, errored) {
        (true, _) => "DIFFERENT",
        (false, true) => "ERROR",
        (false, false) => "EQUAL",
    }
}

fn run_line(run: &RunRecord) -> String {
    format!(
        "run {} ({} {}, {} vs {}): {}; {} rows compared, {} differences, {:.1} s{}",
        run.run_id,
        run.kind,
        run.target,
        run.old_cluster,
        run.new_cluster,
        run.outcome,
        run.rows_compared,
        run.differences,
        run.duration_ms as f64 / 1000.0,
        run.error.as_ref().map(|e| format!(", error: {e}")).unwrap_or_default()
    )
}

/// The Markdown summary.
pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Equivalence report: {}\n", verdict(report));
    let _ = writeln!(
        out,
        "Generated {}; windows from {} to {} UTC (checked windows from {} to {}).\n",
        report.generated_at,
        time(report.from),
        time(report.to),
        time(report.timeline.shown_from),
        time(report.timeline.shown_to)
    );
    for run in report.latest_windows_run.iter().chain(&report.table_runs) {
        let _ = writeln!(out, "- {}", run_line(run));
    }
    let _ = writeln!(out, "\n| table | equal | different | not settled | not covered | not checked |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for t in &report.timeline.timelines {
        let c = counts(t);
        let _ = writeln!(out, "| {} | {} | {} | {} | {} | {} |", t.tbl, c[0], c[1], c[2], c[3], c[4]);
    }
    for run in &report.table_runs {
        let _ = writeln!(out, "| {} (full diff) | | {} differences | | | |", run.target, run.differences);
    }
    let _ = writeln!(out, "\n## Open differences: {}\n", report.open_differences.len());
    for d in report.open_differences.iter().take(MARKDOWN_DIFFERENCES) {
        let window = d.difference.window_start.map(time).unwrap_or_else(|| "-".to_string());
        let _ = writeln!(
            out,
            "- `{}` {} `{}` **{}**",
            d.difference.tbl,
            window,
            d.difference.key,
            d.difference.kind.as_str()
        );
    }
    if report.open_differences.len() > MARKDOWN_DIFFERENCES {
        let _ = writeln!(out, "- ... {} more in report.json", report.open_differences.len() - MARKDOWN_DIFFERENCES);
    }
    out.push_str(&crate::repair::render::markdown(&report.repairs));
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const CSS: &str = "
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #1d2330; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #5b6272; font-size: 13px; margin-bottom: 12px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; color: #fff; font-weight: 600; }
.v-EQUAL { background: #2e9d4f; } .v-DIFFERENT { background: #d7263d; } .v-ERROR { background: #6b4fa0; }
.runs { font-size: 13px; margin: 8px 0 0; padding-left: 18px; }
table { border-collapse: collapse; font-size: 12px; width: 100%; }
th, td { border-bottom: 1px solid #e4e6eb; padding: 4px 6px; text-align: left; vertical-align: top; }
td.detail { font-family: monospace; color: #3c4353; word-break: break-all; }
.kind { font-weight: 600; } .k-misplaced { color: #6b4fa0; } .k-changed { color: #b86e00; }
.k-missing_on_new { color: #d7263d; } .k-extra_on_new { color: #1769aa; }
";

/// The timeline's own style, for every page that shows it ([`timeline_html`]).
pub const TIMELINE_CSS: &str = "
.legend span { display: inline-flex; align-items: center; margin-right: 16px; font-size: 13px; }
.legend i { display: inline-block; width: 14px; height: 14px; margin-right: 5px; border-radius: 2px; }
.timeline { margin-top: 10px; border: 1px solid #d5d9e0; border-radius: 6px; padding: 10px 12px; }
.row { display: flex; align-items: center; margin: 6px 0; }
.label { width: 230px; flex: none; font-size: 13px; font-family: monospace; }
.cells { display: flex; flex: 1; height: 26px; background: #e4e6eb; border-radius: 3px; overflow: hidden; }
.cells div { flex: 1 1 0; min-width: 0; } .cells div.different, .cells div.not_settled { min-width: 3px; }
.counts { width: 270px; flex: none; font-size: 12px; color: #5b6272; padding-left: 10px; }
.axis { display: flex; justify-content: space-between; margin-left: 230px; margin-right: 270px; font-size: 11px;
  color: #5b6272; }
.equal { background: #2e9d4f; } .different { background: #d7263d; } .not_settled { background: #f2b134; }
.not_covered { background: #8a8fa3; } .unchecked { background: #e4e6eb; }
";

fn class(state: Option<WindowVerdict>) -> &'static str {
    state.map_or("unchecked", WindowVerdict::as_str)
}

/// The timeline block (legend, a row per windowed table, a row per full
/// diff in `table_runs`, the time axis), styled by [`TIMELINE_CSS`].
pub fn timeline_html(timelines: &Timelines, table_runs: &[RunRecord]) -> String {
    let mut out = String::from("<div class=\"legend\">");
    for (c, label) in [
        ("equal", "equal"),
        ("different", "different"),
        ("not_settled", "not settled"),
        ("not_covered", "not covered"),
        ("unchecked", "not checked"),
    ] {
        let _ = write!(out, "<span><i class=\"{c}\"></i>{label}</span>");
    }
    out.push_str("</div>\n<div class=\"timeline\">\n");
    for t in &timelines.timelines {
        let c = counts(t);
        let _ = write!(
            out,
            "<div class=\"row\"><div class=\"label\">{} ({} s)</div><div class=\"cells\">",
            t.tbl, t.window_secs
        );
        for span in &t.spans {
            let rows = if span.old_rows + span.new_rows > 0 {
                format!(", rows old {} new {}", span.old_rows, span.new_rows)
            } else {
                String::new()
            };
            let diffs =
                if span.differences > 0 { format!(", {} differences", span.differences) } else { String::new() };
            let _ = write!(
                out,
                "<div class=\"{}\" style=\"flex-grow:{}\" title=\"{} +{} windows {}{rows}{diffs}\"></div>",
                class(span.state),
                span.windows,
                time(span.window_start),
                span.windows,
                class(span.state)
            );
        }
        let _ = write!(
            out,
            "</div><div class=\"counts\">{} equal, {} different, {} unsettled, {} not covered</div></div>",
            c[0], c[1], c[2], c[3]
        );
    }
    for run in table_runs {
        let state = match run.outcome {
            RunOutcome::Equal => "equal",
            RunOutcome::Different => "different",
            RunOutcome::Running | RunOutcome::Error => "unchecked",
        };
        let _ = write!(
            out,
            "<div class=\"row\"><div class=\"label\">{} (full)</div><div class=\"cells\"><div class=\"{state}\" \
             title=\"run {} {}\"></div></div><div class=\"counts\">{} rows, {} differences</div></div>",
            escape(&run.target),
            run.run_id,
            escape(run.outcome.as_str()),
            run.rows_compared,
            run.differences
        );
    }
    let _ = write!(
        out,
        "<div class=\"axis\"><span>{}</span><span>{}</span><span>{}</span></div>\n</div>\n",
        time(timelines.shown_from),
        time(timelines.shown_from + (timelines.shown_to - timelines.shown_from) / 2),
        time(timelines.shown_to)
    );
    out
}

/// The self-contained HTML page.
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let verdict = verdict(report);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dualwrite equivalence report</title>\
         <style>{CSS}{TIMELINE_CSS}</style></head><body>\n<h1>Equivalence report <span class=\"verdict v-{verdict}\">{verdict}</span></h1>\n\
         <div class=\"meta\">Generated {} &middot; windows from {} to {} UTC &middot; shown: {} to {}</div>\n\
         <ul class=\"runs\">",
        escape(&report.generated_at),
        time(report.from),
        time(report.to),
        time(report.timeline.shown_from),
        time(report.timeline.shown_to)
    );
    for run in report.latest_windows_run.iter().chain(&report.table_runs) {
        let _ = write!(out, "<li>{}</li>", escape(&run_line(run)));
    }
    out.push_str("</ul>\n<h2>Timeline</h2>\n");
    out.push_str(&timeline_html(&report.timeline, &report.table_runs));
    let _ = writeln!(out, "<h2>Differing keys ({})</h2>", report.open_differences.len());
    if report.open_differences.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<table><tr><th>table</th><th>window</th><th>kind</th><th>key</th><th>detail</th></tr>\n");
        for d in report.open_differences.iter().take(HTML_DIFFERENCES) {
            let d = &d.difference;
            let mut detail = d.detail.to_string();
            if detail.len() > 400 {
                let cut = (0..=400).rev().find(|&i| detail.is_char_boundary(i)).unwrap_or(0);
                detail.truncate(cut);
                detail.push_str("...");
            }
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"kind k-{kind}\">{kind}</td><td>{}</td><td class=\"detail\">{}</td></tr>",
                escape(&d.tbl),
                d.window_start.map(time).unwrap_or_else(|| "-".to_string()),
                escape(&d.key),
                escape(&detail),
                kind = d.kind.as_str(),
            );
        }
        out.push_str("</table>\n");
        if report.open_differences.len() > HTML_DIFFERENCES {
            let _ =
                writeln!(out, "<p>... {} more in report.json</p>", report.open_differences.len() - HTML_DIFFERENCES);
        }
    }
    out.push_str(&crate::repair::render::html(&report.repairs, escape));
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests;
