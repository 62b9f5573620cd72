//! The migration console's page, drawn from [`Facts`]: self-contained HTML
//! (inline CSS, no external assets) that reloads itself.
//!
//! Laid out for the decisions first: where reads go, in large type at the
//! top, then two columns (readiness, gates, routing and routers; the verify
//! timeline, dead letters and copier streams) that fit one 1400 x 900
//! screen; the long per-partition lag tables and the audit log follow.

use std::fmt::Write as _;

use crate::console::{ClusterDeadLetters, Facts};
use crate::gates::{GroupLag, PartitionLag};

/// How often the page reloads itself.
const REFRESH_SECS: u32 = 5;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn ms_time(ms: Option<i64>) -> String {
    ms.filter(|m| (0..i64::MAX / 2).contains(m))
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// Where a partition's coverage starts: 0 is a start at the partition's
/// first offset, i.e. every message the topic ever held.
fn covered_from(ms: Option<i64>) -> String {
    match ms {
        Some(0) => "beginning".to_owned(),
        other => ms_time(other),
    }
}

/// A partition's owner cell: the live member, `none` when no live member
/// holds it (red while it lags: the liveness failure to look for first), `?`
/// when the members' heartbeats could not be read.
fn owner_cell(g: &GroupLag, p: &PartitionLag) -> String {
    match (&p.owner, &g.owners_unknown) {
        (Some(member), _) => format!("<td>{}</td>", escape(member)),
        (None, Some(_)) => "<td>?</td>".to_owned(),
        (None, None) if p.lag_messages.unwrap_or(0) > 0 => "<td class=\"fail\">none</td>".to_owned(),
        (None, None) => "<td>none</td>".to_owned(),
    }
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

const CSS: &str = "
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 16px 20px; color: #1d2330; }
h1 { font-size: 21px; margin: 0 0 2px; } h2 { font-size: 17px; margin: 16px 0 6px; }
.meta { color: #5b6272; font-size: 13px; }
.reads { display: flex; gap: 36px; margin: 10px 0 2px; font-size: 24px; }
.reads b { font-size: 26px; } .reads .note { font-size: 17px; color: #3c4353; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 0 36px; }
table { border-collapse: collapse; font-size: 12px; } th, td { border-bottom: 1px solid #e4e6eb; padding: 3px 8px;
  text-align: left; vertical-align: top; }
td.detail { max-width: 380px; }
.pass { color: #2e9d4f; font-weight: 600; } .fail { color: #d7263d; font-weight: 600; }
.bar { width: 100%; height: 18px; background: #e4e6eb; border-radius: 3px; overflow: hidden; display: block; }
.bar div { height: 100%; background: #2e9d4f; }
.err { color: #d7263d; }
.timeline .label { width: 170px; font-size: 12px; } .timeline .counts { width: 190px; font-size: 11px; }
.timeline .axis { margin-left: 170px; margin-right: 190px; } .timeline .cells { height: 20px; }
";

fn section<T>(out: &mut String, id: &str, title: &str, value: &Result<T, String>, body: impl FnOnce(&mut String, &T)) {
    let _ = writeln!(out, "<h2 id=\"{id}\">{title}</h2>");
    match value {
        Ok(v) => body(out, v),
        Err(e) => {
            let _ = writeln!(out, "<p class=\"err\">unavailable: {}</p>", escape(e));
        }
    }
}

/// The self-contained page.
pub fn html(f: &Facts) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" \
         content=\"{REFRESH_SECS}\"><title>dualwrite migration console</title><style>{CSS}{}</style></head><body>\n\
         <h1>Migration console</h1><div class=\"meta\">{} UTC &middot; refreshes every {REFRESH_SECS} s &middot; \
         JSON: Accept: application/json</div>\n",
        verify::report::TIMELINE_CSS,
        f.generated_at.format("%Y-%m-%d %H:%M:%S")
    );
    reads(&mut out, f);
    out.push_str("<div class=\"cols\"><div>\n");
    readiness(&mut out, f);
    gates(&mut out, f);
    routing(&mut out, f);
    routers(&mut out, f);
    out.push_str("</div><div>\n");
    verify(&mut out, f);
    dead_letters(&mut out, &f.dead_letters);
    copier(&mut out, f);
    out.push_str("</div></div>\n");
    lag(&mut out, f);
    audit(&mut out, f);
    out.push_str("</body></html>\n");
    out
}

/// Where each group's reads go, in large type: the one fact a glance needs.
fn reads(out: &mut String, f: &Facts) {
    let Ok(routing) = &f.routing else { return };
    out.push_str("<div class=\"reads\" id=\"reads\">");
    for g in &routing.groups {
        let mut note = String::new();
        if let Some(p) = &g.pending {
            let _ = write!(note, " switching to {}", escape(p));
        }
        if let Some(r) = &g.retired {
            let _ = write!(note, " ({} retired)", escape(r));
        }
        let _ = write!(
            out,
            "<div>{} reads from <b>{}</b><span class=\"note\">{note}</span></div>",
            g.group,
            escape(&g.active)
        );
    }
    out.push_str("</div>\n");
}

fn readiness(out: &mut String, f: &Facts) {
    section(out, "readiness", "Readiness", &f.inputs.retention, |out, r| {
        let share = f.readiness_progress.unwrap_or(0.0);
        let _ = writeln!(
            out,
            // Block elements only: a <div> inside <p>/<span> is moved out by
            // the HTML parser, and the bar then renders empty.
            "<div class=\"bar\"><div style=\"width:{:.1}%\"></div></div><p>{:.0}% &middot; {} &middot; ETA {}</p>\
             <p class=\"meta\">{}</p>",
            share * 100.0,
            share * 100.0,
            if r.ready { "ready" } else { "not ready" },
            r.ready_at.map_or_else(|| "unknown".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            escape(&r.explanation)
        );
    });
}

fn gates(out: &mut String, f: &Facts) {
    section(out, "gates", "Gates", &Ok::<_, String>(&f.gates), |out, gates| {
        out.push_str("<table><tr><th>gate</th><th>result</th><th>detail</th><th>to clear</th></tr>");
        for g in gates.iter() {
            let (class, mark) = if g.passed { ("pass", "pass") } else { ("fail", "FAIL") };
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"{class}\">{mark}</td><td class=\"detail\">{}</td><td>{}</td></tr>",
                g.gate,
                escape(&g.detail),
                escape(&opt(g.to_clear.as_deref()))
            );
        }
        out.push_str("</table>\n");
    });
}

fn routing(out: &mut String, f: &Facts) {
    section(out, "routing", "Routing", &f.routing, |out, r| {
        out.push_str("<table><tr><th>group</th><th>reads from</th><th>pending</th><th>retired</th><th>version</th><th>changed by</th></tr>");
        for g in &r.groups {
            let _ = write!(
                out,
                "<tr><td>{}</td><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                g.group,
                escape(&g.active),
                escape(&opt(g.pending.as_deref())),
                escape(&opt(g.retired.as_deref())),
                g.version,
                escape(&g.changed_by)
            );
        }
        out.push_str("</table>\n");
    });
}

fn routers(out: &mut String, f: &Facts) {
    section(out, "routers", "Routers", &f.routers, |out, routers| {
        out.push_str(
            "<table><tr><th>router</th><th>live</th><th>version seen</th><th>may read</th><th>heartbeat age</th></tr>",
        );
        for r in routers {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td></tr>",
                escape(&r.seen.router_id),
                if r.live { "yes" } else { "no" },
                r.seen.version_seen,
                escape(&r.seen.may_read.join(", ")),
                r.seen.age_ms
            );
        }
        out.push_str("</table>\n");
    });
}

/// The latest runs in words, then the report's timeline over the retained windows.
fn verify(out: &mut String, f: &Facts) {
    section(out, "verify", "Verify timeline", &f.verify_timeline, |out, timelines| {
        let run = |r: Option<&verify::history::RunRecord>| match r {
            None => "none finished".to_owned(),
            Some(r) if r.kind == "table" => {
                format!("#{} {} ({} rows, {} differences)", r.run_id, r.outcome, r.rows_compared, r.differences)
            }
            Some(r) => format!(
                "#{} {} ({} windows equal, {} different, {} differences)",
                r.run_id, r.outcome, r.windows_equal, r.windows_different, r.differences
            ),
        };
        let mut table_runs = Vec::new();
        match &f.inputs.verify {
            Ok(v) => {
                let _ = write!(
                    out,
                    "<p class=\"meta\">windows: {}; {} windows marked different",
                    escape(&run(v.windows_run.as_ref())),
                    v.different.count
                );
                for (table, r) in &v.table_runs {
                    let _ = write!(out, "; full diff of {}: {}", escape(table), escape(&run(r.as_ref())));
                    table_runs.extend(r.iter().cloned());
                }
                out.push_str("</p>\n");
            }
            Err(e) => {
                let _ = writeln!(out, "<p class=\"err\">runs unavailable: {}</p>", escape(e));
            }
        }
        out.push_str(&verify::report::timeline_html(timelines, &table_runs));
    });
    match &f.repairs {
        Ok(records) => out.push_str(&verify::repair::render::html(records, escape)),
        Err(e) => {
            let _ = writeln!(out, "<h2>Repaired keys</h2><p class=\"err\">{}</p>", escape(e));
        }
    }
}

fn dead_letters(out: &mut String, clusters: &[ClusterDeadLetters]) {
    let _ = writeln!(out, "<h2 id=\"dead_letters\">Dead letters by reason</h2>");
    let mut none = Vec::new();
    let mut rows = String::new();
    for c in clusters {
        match &c.reasons {
            Ok(reasons) if reasons.is_empty() => none.push(escape(&c.cluster)),
            Ok(reasons) => {
                for r in reasons {
                    let _ = write!(
                        rows,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"detail\">{}</td></tr>",
                        escape(&c.cluster),
                        escape(&r.reason),
                        r.letters,
                        r.recent,
                        escape(r.last_recorded_at.get(..19).unwrap_or(&r.last_recorded_at)),
                        escape(&r.last_position),
                        escape(&r.last_detail)
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(out, "<p class=\"err\">{}: unavailable: {}</p>", escape(&c.cluster), escape(e));
            }
        }
    }
    if !rows.is_empty() {
        let _ = write!(
            out,
            "<table><tr><th>cluster</th><th>reason</th><th>letters</th><th>last {} min</th><th>newest at</th>\
             <th>newest</th><th>its detail</th></tr>{rows}</table>\n",
            crate::console::RECENT_DEAD_LETTERS.as_secs() / 60
        );
    }
    if !none.is_empty() {
        let _ = writeln!(out, "<p>No dead letters on {}.</p>", none.join(" or "));
    }
}

fn copier(out: &mut String, f: &Facts) {
    section(out, "copier", "Copier streams", &f.inputs.copier, |out, streams| {
        out.push_str("<table><tr><th>stream</th><th>phase</th><th>rows</th><th>rows/s</th><th>ETA s</th><th>binlog lag</th><th>error</th></tr>");
        for s in streams {
            let _ = write!(
                out,
                "<tr><td>{}/{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{} events, {} s</td><td>{}</td></tr>",
                escape(&s.table),
                escape(&s.source_shard),
                s.phase,
                s.rows_copied,
                opt(s.rows_total),
                s.rows_per_sec.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
                s.eta_seconds.map_or_else(|| "-".to_owned(), |r| format!("{r:.0}")),
                opt(s.lag_events),
                s.lag_seconds.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}")),
                escape(&opt(s.error.as_deref()))
            );
        }
        out.push_str("</table>\n");
    });
}

/// Both groups side by side, a row per partition.
fn lag(out: &mut String, f: &Facts) {
    section(out, "lag", "Coverage and lag per partition", &f.inputs.lag, |out, lag| {
        out.push_str("<div class=\"cols\">");
        for g in [&lag.old, &lag.new] {
            let _ = write!(
                out,
                "<div><table><tr><th>cluster</th><th>partition</th><th>owner</th><th>end</th><th>next</th>\
                 <th>lag msgs</th><th>lag s</th><th>covered from</th></tr>"
            );
            for p in &g.partitions {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}/{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&g.cluster),
                    escape(&p.topic),
                    p.partition,
                    owner_cell(g, p),
                    p.end_offset,
                    opt(p.next_offset),
                    opt(p.lag_messages),
                    p.lag_seconds.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
                    covered_from(p.covered_from_ms)
                );
            }
            out.push_str("</table></div>");
        }
        out.push_str("</div>\n");
    });
}

fn audit(out: &mut String, f: &Facts) {
    section(out, "audit", "Audit log", &f.audit, |out, audit| {
        out.push_str("<table><tr><th>at</th><th>group</th><th>action</th><th>from</th><th>to</th><th>version</th><th>by</th><th>reason</th></tr>");
        for a in audit {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                ms_time(Some(a.at_ms)),
                escape(&a.group),
                escape(&a.action),
                escape(&a.from),
                escape(&a.to),
                a.version,
                escape(&by(&a.changed_by, &a.db_user)),
                escape(&a.reason)
            );
        }
        out.push_str("</table>\n");
    });
}

/// The operator as typed, and the MySQL login when it says something more.
fn by(changed_by: &str, db_user: &str) -> String {
    if db_user.is_empty() {
        changed_by.to_owned()
    } else {
        format!("{changed_by} ({db_user})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_cell_names_the_live_member_and_flags_a_lagging_partition_nobody_holds() {
        let part = |owner: Option<&str>, lag: i64| PartitionLag {
            topic: "query-stats".into(),
            partition: 3,
            end_offset: 100 + lag,
            next_offset: Some(100),
            lag_messages: Some(lag),
            lag_seconds: Some(1.0),
            covered_from_ms: Some(0),
            owner: owner.map(str::to_owned),
        };
        let group = |unknown: Option<&str>| GroupLag {
            cluster: "old".into(),
            partitions: vec![],
            owners_unknown: unknown.map(str::to_owned),
        };
        let (known, unknown) = (group(None), group(Some("members' heartbeats of cluster old: denied")));
        assert_eq!(owner_cell(&known, &part(Some("host-a:7<b>"), 5)), "<td>host-a:7&lt;b&gt;</td>");
        assert_eq!(owner_cell(&known, &part(None, 5)), "<td class=\"fail\">none</td>");
        assert_eq!(owner_cell(&known, &part(None, 0)), "<td>none</td>", "caught up: nothing to own");
        assert_eq!(owner_cell(&unknown, &part(None, 5)), "<td>?</td>", "unknown is not none");
        assert_eq!(owner_cell(&unknown, &part(Some("host-a:7"), 5)), "<td>host-a:7</td>");
    }

    #[test]
    fn a_partition_applied_from_its_first_offset_is_covered_from_the_beginning() {
        assert_eq!(covered_from(Some(0)), "beginning");
        assert_eq!(covered_from(Some(1_800_000_000_000)), "2027-01-15 08:00:00");
        assert_eq!(covered_from(None), "-");
    }
}
