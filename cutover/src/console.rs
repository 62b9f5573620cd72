//! The migration console: one page (`GET /console`) with everything an
//! operator watches during a migration, read from the same collectors the
//! gates use, so the page, its JSON (`Accept: application/json`) and
//! `switch-reads` never disagree. Self-contained HTML (inline CSS, no
//! external assets) that reloads itself.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use retention::Readiness;
use serde::Serialize;

use crate::collect::{collect, CollectConfig};
use crate::gates::{evaluate, GateInputs, GateResult, Thresholds};
use crate::group::TableGroup;
use crate::state::{self, AuditEntry, RouterSeen, RoutingState};

/// How often the page reloads itself.
const REFRESH_SECS: u32 = 5;
/// Audit rows shown.
const AUDIT_ROWS: u32 = 20;
/// A router silent for longer is shown as not live.
const LIVENESS: Duration = Duration::from_secs(3);

/// What the console reads and judges with.
#[derive(Clone)]
pub struct ConsoleConfig {
    pub collect: CollectConfig,
    pub thresholds: Thresholds,
}

/// Everything the page shows; also its JSON answer.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub generated_at: chrono::DateTime<Utc>,
    /// Per table group: the routing row; `Err` when unreadable.
    pub routing: Result<RoutingState, String>,
    pub routers: Result<Vec<RouterView>, String>,
    /// Every gate's input (coverage and lag per partition, readiness,
    /// copier streams, verify results, shadow counts).
    pub inputs: GateInputs,
    /// Readiness as the share of the retention period the new cluster covers.
    pub readiness_progress: Option<f64>,
    /// The gates of a switch of every group.
    pub gates: Vec<GateResult>,
    pub audit: Result<Vec<AuditEntry>, String>,
}

/// A router as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RouterView {
    #[serde(flatten)]
    pub seen: RouterSeen,
    pub live: bool,
}

/// Reads everything the page shows.
pub async fn facts(config: &ConsoleConfig) -> Facts {
    let control = &config.collect.control;
    let (inputs, routing, routers, audit) = tokio::join!(
        collect(&config.collect),
        state::load(control),
        state::routers(control),
        state::audit_log(control, AUDIT_ROWS)
    );
    let gates = evaluate(&inputs, &config.thresholds, &TableGroup::ALL);
    let readiness_progress = inputs.retention.as_ref().ok().and_then(progress);
    Facts {
        generated_at: Utc::now(),
        routing: routing.map_err(|e| e.to_string()),
        routers: routers
            .map(|all| all.into_iter().map(|seen| RouterView { live: seen.is_live(LIVENESS), seen }).collect())
            .map_err(|e| e.to_string()),
        inputs,
        readiness_progress,
        gates,
        audit: audit.map_err(|e| e.to_string()),
    }
}

/// How far the wait for readiness has come: 1 when ready; otherwise the
/// share of the old cluster's retention that has passed since the new
/// cluster's coverage began (`ready_at - retention`); `None` when no
/// readiness time can be predicted.
pub fn progress(r: &Readiness) -> Option<f64> {
    if r.ready {
        return Some(1.0);
    }
    let ready_at = r.ready_at?.timestamp();
    let retention = r.old.retention_secs.max(1);
    let begun = ready_at - retention;
    Some(((r.now.timestamp() - begun) as f64 / retention as f64).clamp(0.0, 1.0))
}

/// `GET /console`: JSON when asked for, the page otherwise.
pub(crate) async fn page(State(config): State<Arc<ConsoleConfig>>, headers: HeaderMap) -> Response {
    let facts = facts(&config).await;
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    if wants_json {
        return (StatusCode::OK, Json(facts)).into_response();
    }
    Html(html(&facts)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn ms_time(ms: Option<i64>) -> String {
    ms.filter(|m| (0..i64::MAX / 2).contains(m))
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

const CSS: &str = "
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 20px; color: #1d2330; }
h1 { font-size: 21px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 22px 0 6px; }
.meta { color: #5b6272; font-size: 13px; }
table { border-collapse: collapse; font-size: 12px; } th, td { border-bottom: 1px solid #e4e6eb; padding: 3px 8px;
  text-align: left; vertical-align: top; }
.pass { color: #2e9d4f; font-weight: 600; } .fail { color: #d7263d; font-weight: 600; }
.bar { width: 420px; height: 18px; background: #e4e6eb; border-radius: 3px; overflow: hidden; display: block; } .bar div { height: 100%; background: #2e9d4f; }
.err { color: #d7263d; }
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
         content=\"{REFRESH_SECS}\"><title>dualwrite migration console</title><style>{CSS}</style></head><body>\n\
         <h1>Migration console</h1><div class=\"meta\">{} UTC &middot; refreshes every {REFRESH_SECS} s &middot; \
         JSON: Accept: application/json</div>\n",
        f.generated_at.format("%Y-%m-%d %H:%M:%S")
    );
    section(&mut out, "routing", "Routing", &f.routing, |out, r| {
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
    section(&mut out, "routers", "Routers", &f.routers, |out, routers| {
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
    section(&mut out, "readiness", "Readiness", &f.inputs.retention, |out, r| {
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
    section(&mut out, "gates", "Gates", &Ok::<_, String>(&f.gates), |out, gates| {
        out.push_str("<table><tr><th>gate</th><th>result</th><th>detail</th><th>to clear</th></tr>");
        for g in gates.iter() {
            let (class, mark) = if g.passed { ("pass", "pass") } else { ("fail", "FAIL") };
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"{class}\">{mark}</td><td>{}</td><td>{}</td></tr>",
                g.gate,
                escape(&g.detail),
                escape(&opt(g.to_clear.as_deref()))
            );
        }
        out.push_str("</table>\n");
    });
    section(&mut out, "lag", "Coverage and lag per partition", &f.inputs.lag, |out, lag| {
        out.push_str("<table><tr><th>cluster</th><th>partition</th><th>end</th><th>next</th><th>lag msgs</th><th>lag s</th><th>covered from</th></tr>");
        for g in [&lag.old, &lag.new] {
            for p in &g.partitions {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&g.cluster),
                    escape(&p.topic),
                    p.partition,
                    p.end_offset,
                    opt(p.next_offset),
                    opt(p.lag_messages),
                    p.lag_seconds.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
                    ms_time(p.covered_from_ms)
                );
            }
        }
        out.push_str("</table>\n");
    });
    section(&mut out, "copier", "Copier streams", &f.inputs.copier, |out, streams| {
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
    section(&mut out, "verify", "Verify", &f.inputs.verify, |out, v| {
        let run = |r: Option<&verify::history::RunRecord>| {
            r.map_or_else(
                || "none finished".to_owned(),
                |r| {
                    format!(
                        "#{} {} ({} windows equal, {} different, {} differences)",
                        r.run_id, r.outcome, r.windows_equal, r.windows_different, r.differences
                    )
                },
            )
        };
        let _ = write!(
            out,
            "<p>windows: {}; {} windows marked different</p>",
            escape(&run(v.windows_run.as_ref())),
            v.different.count
        );
        for (table, r) in &v.table_runs {
            let _ = write!(out, "<p>full diff of {}: {}</p>", escape(table), escape(&run(r.as_ref())));
        }
    });
    section(&mut out, "audit", "Audit log", &f.audit, |out, audit| {
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
    out.push_str("</body></html>\n");
    out
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
    use chrono::TimeZone;

    use super::*;

    fn readiness(ready: bool, ready_at_h: Option<i64>) -> Readiness {
        let now = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).single().expect("time");
        let kept = |cluster: &str| retention::readiness::ClusterRetention {
            cluster: cluster.into(),
            retention_secs: 10 * 3600,
            partition_secs: 3600,
            oldest_retained: None,
            policy_oldest: now,
        };
        Readiness {
            now,
            ready,
            ready_at: ready_at_h.map(|h| now + chrono::Duration::hours(h)),
            required_from: now,
            covered_from: None,
            uncovered_partitions: vec![],
            old: kept("old"),
            new: kept("new"),
            explanation: String::new(),
        }
    }

    #[test]
    fn readiness_progress_is_the_share_of_retention_already_covered() {
        assert_eq!(progress(&readiness(true, None)), Some(1.0));
        // Ready in 4 h of a 10 h retention: 6 h of it are covered.
        assert_eq!(progress(&readiness(false, Some(4))), Some(0.6));
        assert_eq!(progress(&readiness(false, Some(30))), Some(0.0));
        assert_eq!(progress(&readiness(false, None)), None);
    }
}
