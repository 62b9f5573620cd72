//! The whole migration rehearsal (compose/local/rehearse, mock broker) against
//! the local stack: every stage says ok, the summary and "migration complete"
//! end the run; each console screenshot is read back with OCR (Tesseract)
//! for the headings and the routing and readiness it must show at that
//! moment, and its saved page holds every section; the console JSON saved at
//! aging in, ready and cut over shows the routing, audit, dead-letter and
//! verify rows the control tables hold.
//!
//! Needs the release binaries (`cargo build --release --bins`): a cargo build
//! from inside `cargo test` would wait on the build directory's lock. Needs
//! `tesseract` (Debian's tesseract-ocr, installed by compose/local/deps).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cluster::config::ClusterConfig;
use mysql_async::prelude::Queryable;

const STAGES: [&str; 23] = [
    "stack",
    "broker",
    "old-cluster",
    "history",
    "new-cluster",
    "group-b",
    "bad-proxy",
    "copier",
    "retention",
    "routers",
    "console-aging",
    "readiness",
    "console-ready",
    "verify",
    "reads",
    "gates",
    "switch-reads",
    "rollback",
    "switch-again",
    "complete",
    "stop",
    "report",
    // The summary row the test looks for last.
    "total",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repo root")
}

/// The outcome the script printed for `stage`: "ok", "FAILED" or None.
fn outcome<'a>(stdout: &'a str, stage: &str) -> Option<&'a str> {
    let marker = format!(" stage {stage}: ");
    stdout.lines().find_map(|l| l.split_once(&marker).map(|(_, rest)| rest.split(' ').next().unwrap_or("")))
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (group, active, retired) per table group, as the console shows them.
fn routing(json: &serde_json::Value) -> Vec<(String, String, Option<String>)> {
    json["routing"]["Ok"]["groups"]
        .as_array()
        .expect("routing groups")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap_or("").to_owned(),
                g["active"].as_str().unwrap_or("").to_owned(),
                g["retired"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// (id, group, action, to) per audit row the console shows.
fn audit(json: &serde_json::Value) -> Vec<(u64, String, String, String)> {
    json["audit"]["Ok"]
        .as_array()
        .expect("audit rows")
        .iter()
        .map(|a| {
            (
                a["id"].as_u64().unwrap_or(0),
                a["group"].as_str().unwrap_or("").to_owned(),
                a["action"].as_str().unwrap_or("").to_owned(),
                a["to"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(bytes.len() > 10_000, "{} holds only {} bytes", path.display(), bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    // IHDR: the window size the script asks chromium for.
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("width"));
    let height = u32::from_be_bytes(bytes[20..24].try_into().expect("height"));
    assert_eq!((width, height), (1400, 900), "{}", path.display());
}

/// The text Tesseract reads in `png`, lower case, runs of white space made one.
fn ocr(png: &Path) -> String {
    let out = std::process::Command::new("tesseract")
        .arg(png)
        .arg("stdout")
        // One column of text of varying sizes: reads both columns of the
        // page and the large routing banner most reliably (seen on the
        // rehearsal's screenshots; the default mode skipped a heading).
        .args(["--psm", "4"])
        .output()
        .unwrap_or_else(|e| panic!("tesseract: {e} (install tesseract-ocr: compose/local/deps)"));
    assert!(out.status.success(), "tesseract {}: {}", png.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What the screenshot of the console at `moment` must show, read from the
/// image itself: the section headings above the fold, where reads go and
/// the readiness of that moment.
fn check_screenshot(png: &Path, moment: &str, old: &str, new: &str) {
    let text = ocr(png);
    for heading in [
        "migration console",
        "readiness",
        "gates",
        "routing",
        "routers",
        "verify timeline",
        "dead letters by reason",
        "copier streams",
    ] {
        assert!(text.contains(heading), "{}: no {heading:?} in the image; read: {text}", png.display());
    }
    let (reads_from, ready) = match moment {
        "aging" => (old, false),
        "ready" => (old, true),
        _ => (new, true),
    };
    for group in ["timeseries", "query_patterns"] {
        let banner = format!("{group} reads from {reads_from}");
        assert!(text.contains(&banner), "{}: no {banner:?} in the image; read: {text}", png.display());
    }
    assert_eq!(text.contains("not ready"), !ready, "{}: readiness; read: {text}", png.display());
    if moment == "cutover" {
        assert!(text.contains(&format!("({old} retired)")), "{}: old retired; read: {text}", png.display());
    }
}

/// (reason, letters) per reason the console showed for `cluster`.
fn shown_dead_letters(json: &serde_json::Value, cluster: &str) -> BTreeMap<String, u64> {
    let entry = json["dead_letters"].as_array().expect("dead_letters").iter().find(|c| c["cluster"] == cluster);
    let reasons = entry.and_then(|c| c["reasons"]["Ok"].as_array()).unwrap_or_else(|| panic!("{cluster}: {json}"));
    reasons
        .iter()
        .map(|r| (r["reason"].as_str().unwrap_or("").to_owned(), r["letters"].as_u64().unwrap_or(0)))
        .collect()
}

/// Per table, windows per state on the console's verify timeline, and the
/// span it shows.
fn shown_timeline(json: &serde_json::Value) -> (i64, i64, BTreeMap<(String, String), u64>) {
    let t = &json["verify_timeline"]["Ok"];
    let mut counts = BTreeMap::new();
    for timeline in t["timelines"].as_array().unwrap_or_else(|| panic!("{}", json["verify_timeline"])) {
        let tbl = timeline["tbl"].as_str().unwrap_or("").to_owned();
        for span in timeline["spans"].as_array().expect("spans") {
            let state = span["state"].as_str().unwrap_or("unchecked").to_owned();
            *counts.entry((tbl.clone(), state)).or_insert(0) += span["windows"].as_u64().unwrap_or(0);
        }
    }
    (t["shown_from"].as_i64().expect("shown_from"), t["shown_to"].as_i64().expect("shown_to"), counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rehearsal_plays_the_whole_migration() {
    let repo = repo();
    for b in ["cluster", "topics", "loadtest", "consumer", "retention", "copier", "verify", "cutover"] {
        let path = repo.join("target/release").join(format!("dualwrite-{b}"));
        assert!(path.exists(), "{} missing: run `cargo build --release --bins` first", path.display());
    }
    let artefacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rehearse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&artefacts);
    let out = tokio::process::Command::new(repo.join("compose/local/rehearse"))
        .args(["--broker", "mock", "--no-build", "--artefacts"])
        .arg(&artefacts)
        .current_dir(&repo)
        .output()
        .await
        .expect("run compose/local/rehearse");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rehearse exited {:?}\n{stdout}\n{stderr}", out.status.code());

    for stage in &STAGES[..STAGES.len() - 1] {
        assert_eq!(outcome(&stdout, stage), Some("ok"), "stage {stage}\n{stdout}");
        let row = stdout.lines().find(|l| l.starts_with(&format!("{stage} "))).unwrap_or_default();
        assert!(row.contains(" ok"), "summary row of {stage}: {row:?}\n{stdout}");
    }
    assert!(stdout.contains("stage                  started"), "summary header\n{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("total ")), "{stdout}");
    assert!(stdout.contains("rehearse: migration complete"), "{stdout}");
    assert!(stdout.contains("--start latest (mock broker: no offset lookup by time"), "{stdout}");
    let eta = stdout.lines().find(|l| l.starts_with("rehearse: readiness ETA ")).expect("the ETA line");
    assert!(eta.contains("20") && eta.contains('T'), "an RFC 3339 ETA: {eta}");

    let old = ClusterConfig::load(artefacts.join("old.toml")).expect("old.toml");
    let new = ClusterConfig::load(artefacts.join("new.toml")).expect("new.toml");
    for moment in ["aging", "ready", "cutover"] {
        let png = artefacts.join(format!("console-{moment}.png"));
        check_png(&png);
        check_screenshot(&png, moment, &old.name, &new.name);
        let page = std::fs::read_to_string(artefacts.join(format!("console-{moment}.html"))).expect("console html");
        for id in
            ["reads", "routing", "routers", "readiness", "gates", "lag", "copier", "verify", "dead_letters", "audit"]
        {
            assert!(page.contains(&format!("id=\"{id}\"")), "console-{moment}.html: section {id} missing");
        }
    }
    check_png(&artefacts.join("report.png"));
    assert!(artefacts.join("report/report.json").exists());

    // The console's answers against the control tables the run left behind.
    let pool = cutover::serve::control_pool(&new).expect("control pool");
    let stored_routing = cutover::state::load(&pool).await.expect("routing");
    let audit_rows = cutover::state::audit_log(&pool, 10_000).await.expect("audit");
    // The rehearsal runs every job under its own login: the operator's wrote every audit row.
    for row in &audit_rows {
        assert!(row.db_user.starts_with("dw_operator@"), "audit row {} written by {}", row.id, row.db_user);
    }
    let stored_audit: Vec<(u64, String, String, String)> =
        audit_rows.into_iter().map(|a| (a.id, a.group, a.action, a.to)).collect();
    let groups = stored_routing.groups.len();
    assert_eq!(groups, 2, "timeseries and query_patterns");

    let aging = read_json(&artefacts.join("console-aging.json"));
    let ready = read_json(&artefacts.join("console-ready.json"));
    let cut = read_json(&artefacts.join("console-cutover.json"));
    for (moment, json) in [("aging", &aging), ("ready", &ready)] {
        for (group, active, retired) in routing(json) {
            assert_eq!(active, old.name, "{moment}: {group} reads from the old cluster");
            assert_eq!(retired, None, "{moment}: {group}");
        }
    }
    assert!(aging["inputs"]["retention"]["Ok"]["ready"] == false, "aging in: not ready yet");
    assert!(aging["readiness_progress"].as_f64().is_some_and(|p| p < 1.0), "{}", aging["readiness_progress"]);
    assert!(ready["inputs"]["retention"]["Ok"]["ready"] == true, "ready: {}", ready["inputs"]["retention"]);
    let shown: Vec<(String, String, Option<String>)> = routing(&cut);
    let table: Vec<(String, String, Option<String>)> = stored_routing
        .groups
        .iter()
        .map(|g| (g.group.as_str().to_owned(), g.active.clone(), g.retired.clone()))
        .collect();
    assert_eq!(shown, table, "cut over: the console shows the routing table");
    for (group, active, retired) in &shown {
        assert_eq!(active, &new.name, "{group}");
        assert_eq!(retired.as_deref(), Some(old.name.as_str()), "{group}");
    }
    // Every audit row a console showed is in the table as shown; cut over, the
    // console shows the latest rows, and they tell the whole story.
    for (moment, json) in [("aging", &aging), ("ready", &ready), ("cutover", &cut)] {
        for row in audit(json) {
            assert!(stored_audit.contains(&row), "{moment}: audit row {row:?} not in the table");
        }
    }
    let shown = audit(&cut);
    assert_eq!(shown, stored_audit[..shown.len()], "cut over: the latest audit rows");

    // Dead letters: the bad proxy's, on each cluster, as its own table holds
    // them (no malformed message follows the bad-proxy stage, whose end
    // waits for both groups' letters, so every snapshot shows them all).
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..4 {
        *expected.entry(loadtest::produce::MALFORMED[i % 2].1.to_owned()).or_insert(0) += 1;
    }
    for c in [&old, &new] {
        let endpoint = c.control.as_ref().expect("[control]");
        let own = mysql_async::Pool::new(cluster::pool::opts_for(endpoint, &c.auth));
        let stored: BTreeMap<String, u64> = own
            .get_conn()
            .await
            .expect("conn")
            .exec("SELECT reason, COUNT(*) FROM dw_dead_letters WHERE cluster = ? GROUP BY reason", (&c.name,))
            .await
            .expect("dead letters")
            .into_iter()
            .collect();
        own.disconnect().await.expect("disconnect");
        assert_eq!(stored, expected, "dead letters of {}", c.name);
        for (moment, json) in [("aging", &aging), ("ready", &ready), ("cutover", &cut)] {
            assert_eq!(shown_dead_letters(json, &c.name), stored, "{moment}: dead letters of {}", c.name);
        }
    }
    // The verify timeline: nothing checked before the verify stage; at cut
    // over, per table and state, exactly the windows dw_verify_windows holds
    // in the span shown (no comparator runs after the verify stage).
    for (moment, json) in [("aging", &aging), ("ready", &ready)] {
        let (_, _, counts) = shown_timeline(json);
        assert!(counts.keys().all(|(_, state)| state == "unchecked"), "{moment}: {counts:?}");
    }
    let (from, to, shown) = shown_timeline(&cut);
    let stored: Vec<(String, String, u64)> = pool
        .get_conn()
        .await
        .expect("conn")
        .exec(
            "SELECT tbl, state, COUNT(*) FROM dw_verify_windows WHERE TIMESTAMPDIFF(SECOND, '1970-01-01', window_start) \
             BETWEEN ? AND ? - 1 GROUP BY tbl, state",
            (from, to),
        )
        .await
        .expect("verify windows");
    assert!(stored.iter().any(|(_, state, n)| state == "equal" && *n > 0), "equal windows at cut over: {stored:?}");
    for (tbl, state, n) in &stored {
        assert_eq!(shown.get(&(tbl.clone(), state.clone())), Some(n), "cut over: {tbl} {state}: {shown:?}");
    }
    let checked: u64 = shown.iter().filter(|((_, state), _)| state != "unchecked").map(|(_, n)| n).sum();
    assert_eq!(
        checked,
        stored.iter().map(|(_, _, n)| n).sum::<u64>(),
        "cut over: no window shown checked that is not stored"
    );
    let actions: Vec<&str> = stored_audit.iter().map(|a| a.2.as_str()).collect();
    for action in ["switch", "rollback", "complete"] {
        assert!(actions.contains(&action), "audit holds a {action}: {actions:?}");
    }
    assert!(
        stored_audit.iter().filter(|a| a.2 == "switch" && a.3 == new.name).count() >= 2 * groups,
        "two switches to new per group: {stored_audit:?}"
    );

    pool.disconnect().await.expect("disconnect");
    testkit::drop_databases(&old).await;
    testkit::drop_databases(&new).await;
}
