//! The repaired keys as the report shows them (Markdown and HTML sections).

use std::fmt::Write;

use super::audit::RepairRecord;

/// Keys listed before "... more in report.json".
const SHOWN: usize = 200;

fn window(r: &RepairRecord) -> String {
    r.window_start
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(|| "-".to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn short(digest: &Option<String>) -> String {
    digest.as_deref().map_or_else(
        || "-".to_string(),
        |d| d.split(',').map(|h| h.get(..12).unwrap_or(h)).collect::<Vec<_>>().join(","),
    )
}

/// `## Repaired keys` with one line per key.
pub fn markdown(records: &[RepairRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Repaired keys: {}\n", records.len());
    for r in records.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "- run {} from {}: `{}` {} `{}` **{}** {} (before {}, after {})",
            r.run_id,
            r.source,
            r.tbl,
            window(r),
            r.key,
            r.state.as_str(),
            r.action.as_deref().unwrap_or("-"),
            short(&r.before_digest),
            short(&r.after_digest)
        );
    }
    if records.len() > SHOWN {
        let _ = writeln!(out, "- ... {} more in report.json", records.len() - SHOWN);
    }
    out
}

/// `<h2>Repaired keys</h2>` and a table, `escape` being the page's.
pub fn html(records: &[RepairRecord], escape: fn(&str) -> String) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<h2>Repaired keys ({})</h2>", records.len());
    if records.is_empty() {
        out.push_str("<p>None.</p>\n");
        return out;
    }
    out.push_str(
        "<table><tr><th>run</th><th>from</th><th>table</th><th>window</th><th>key</th><th>state</th><th>action</th>\
         <th>before</th><th>after</th><th>re-verified by</th></tr>\n",
    );
    for r in records.iter().take(SHOWN) {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"repair r-{state}\">{state}</td>\
             <td>{}</td><td class=\"detail\">{}</td><td class=\"detail\">{}</td><td>{}</td></tr>",
            r.run_id,
            escape(&r.source),
            escape(&r.tbl),
            window(r),
            escape(&r.key),
            escape(r.action.as_deref().unwrap_or("-")),
            escape(&short(&r.before_digest)),
            escape(&short(&r.after_digest)),
            r.reverify_run_id.map_or_else(|| "-".to_string(), |id| format!("run {id}")),
            state = r.state.as_str(),
        );
    }
    out.push_str("</table>\n");
    if records.len() > SHOWN {
        let _ = writeln!(out, "<p>... {} more in report.json</p>", records.len() - SHOWN);
    }
    out
}
