//! A corpus of injected divergences between a 4-shard and an 8-shard cluster
//! fed the same stream: every one is found with its key and kind, and
//! nothing else is; re-runs re-check only what needs it; the report renders.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use serde_json::json;
use support::{feed_both, first_row_on_any_shard, ksid_hex, on_shard, query_shard, stats_key, time_text, windows};
use tokio_util::sync::CancellationToken;
use verify::diff::{DiffKind, Difference};
use verify::history::{self, RunOutcome};
use verify::table::{run_table, TableConfig};

type Expected = BTreeSet<(String, Option<i64>, String, DiffKind)>;

fn found(differences: &[Difference]) -> Expected {
    differences.iter().map(|d| (d.tbl.clone(), d.window_start, d.key.clone(), d.kind)).collect()
}

/// The first row (by key) of `table` matching `condition` on any shard:
/// (shard, database_id, fingerprint).
async fn first_stats_row(cluster: &ClusterConfig, table: &str, condition: &str) -> (usize, u64, String) {
    let (shard, (db, fp)) = first_row_on_any_shard(
        cluster,
        &format!("SELECT database_id, fingerprint FROM {table} WHERE {condition} ORDER BY 1, 2 LIMIT 1"),
    )
    .await;
    (shard, db, fp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_every_injected_divergence_and_nothing_else() {
    let fed = feed_both("corpus", 8000).await;
    let (old, new) = (&fed.old.config, &fed.new.config);
    let (from, to) = (fed.start, fed.start + 3600);
    let all_windows = 60 + 1 + 60;

    let base = windows(old, new, from, to, false).await;
    assert_eq!(base.run.outcome, RunOutcome::Equal, "{:?}", base.differences);
    assert_eq!(
        (base.run.windows_equal, base.run.windows_not_settled, base.run.windows_not_covered, base.run.windows_checked),
        (all_windows, 0, 0, all_windows)
    );
    assert!(base.run.rows_compared > 10_000, "{}", base.run.rows_compared);

    let mut expected = Expected::new();
    let minute = |i: i64| fed.start + 60 * i;
    let w = |i: i64| format!("window_start = '{}'", time_text(minute(i)));

    // 1. A missing row.
    let (s, db, fp) = first_stats_row(new, "query_stats_minute", &w(0)).await;
    on_shard(
        new,
        s,
        &format!("DELETE FROM query_stats_minute WHERE database_id = {db} AND fingerprint = '{fp}' AND {}", w(0)),
    )
    .await;
    expected.insert((
        "query_stats_minute".into(),
        Some(minute(0)),
        stats_key(db, &fp, minute(0)),
        DiffKind::MissingOnNew,
    ));

    // 2. One changed column in query_stats_minute.
    let (s, db, fp) = first_stats_row(new, "query_stats_minute", &w(1)).await;
    let before: Vec<u64> = query_shard(
        new,
        s,
        &format!(
            "SELECT query_count FROM query_stats_minute WHERE database_id = {db} AND fingerprint = '{fp}' AND {}",
            w(1)
        ),
    )
    .await;
    on_shard(new, s, &format!("UPDATE query_stats_minute SET query_count = query_count + 1 WHERE database_id = {db} AND fingerprint = '{fp}' AND {}", w(1))).await;
    let changed_minute = stats_key(db, &fp, minute(1));
    expected.insert(("query_stats_minute".into(), Some(minute(1)), changed_minute.clone(), DiffKind::Changed));

    // 3. A row moved to a shard that does not own it (content unchanged).
    let (s, db, fp) = first_stats_row(new, "query_stats_minute", &w(2)).await;
    let tuple: Vec<String> = query_shard(
        new,
        s,
        &format!(
            "SELECT CONCAT_WS(',', database_id, QUOTE(fingerprint), QUOTE(window_start), CONCAT('0x', HEX(keyspace_id)), \
             query_count, total_duration_us, max_duration_us, rows_read, rows_returned, error_count, \
             CONCAT('0x', HEX(latency_sketch))) FROM query_stats_minute WHERE database_id = {db} AND fingerprint = '{fp}' AND {}",
            w(2)
        ),
    )
    .await;
    let wrong = (s + 1) % new.shards.len();
    on_shard(
        new,
        s,
        &format!("DELETE FROM query_stats_minute WHERE database_id = {db} AND fingerprint = '{fp}' AND {}", w(2)),
    )
    .await;
    on_shard(new, wrong, &format!("INSERT INTO query_stats_minute VALUES ({})", tuple[0])).await;
    expected.insert(("query_stats_minute".into(), Some(minute(2)), stats_key(db, &fp, minute(2)), DiffKind::Misplaced));

    // 4. A whole window missing: every key of it, as the old cluster holds them.
    let mut whole = 0;
    for shard in 0..old.shards.len() {
        let keys: Vec<(u64, String)> =
            query_shard(old, shard, &format!("SELECT database_id, fingerprint FROM query_stats_minute WHERE {}", w(3)))
                .await;
        for (db, fp) in keys {
            whole += 1;
            expected.insert((
                "query_stats_minute".into(),
                Some(minute(3)),
                stats_key(db, &fp, minute(3)),
                DiffKind::MissingOnNew,
            ));
        }
    }
    assert!(whole > 50, "window 3 holds {whole} rows");
    for shard in 0..new.shards.len() {
        on_shard(new, shard, &format!("DELETE FROM query_stats_minute WHERE {}", w(3))).await;
    }

    // 4b. A keyspace id that is not its database_id's (last byte flipped, so
    // the shard still owns it): the column differs, and the row is misplaced.
    let (s, db, fp) = first_stats_row(new, "query_stats_minute", &w(4)).await;
    on_shard(
        new,
        s,
        &format!(
            "UPDATE query_stats_minute SET keyspace_id = CONCAT(LEFT(keyspace_id, 7), CHAR(ASCII(RIGHT(keyspace_id, 1)) ^ 1)) \
             WHERE database_id = {db} AND fingerprint = '{fp}' AND {}",
            w(4)
        ),
    )
    .await;
    let bad_ksid = stats_key(db, &fp, minute(4));
    expected.insert(("query_stats_minute".into(), Some(minute(4)), bad_ksid.clone(), DiffKind::Changed));
    expected.insert(("query_stats_minute".into(), Some(minute(4)), bad_ksid.clone(), DiffKind::Misplaced));

    // 5. An extra row in query_stats_hour, on the shard that owns it.
    let hour = fed.start;
    let extra_db = 4_242_424_242u64;
    let ksid = ksid_hex(extra_db);
    on_shard(
        new,
        new.shard_index_for_database_id(extra_db),
        &format!(
            "INSERT INTO query_stats_hour VALUES ({extra_db}, 'feedfacefeedface', '{}', X'{ksid}', 1, 2, 3, 4, 5, 0, X'00')",
            time_text(hour)
        ),
    )
    .await;
    expected.insert((
        "query_stats_hour".into(),
        Some(hour),
        stats_key(extra_db, "feedfacefeedface", hour),
        DiffKind::ExtraOnNew,
    ));

    // 6. One changed column in query_stats_hour.
    let (s, db, fp) = first_stats_row(new, "query_stats_hour", "database_id < 4000000000").await;
    on_shard(new, s, &format!("UPDATE query_stats_hour SET max_duration_us = max_duration_us + 7 WHERE database_id = {db} AND fingerprint = '{fp}'")).await;
    expected.insert(("query_stats_hour".into(), Some(hour), stats_key(db, &fp, hour), DiffKind::Changed));

    // 7. One changed column in slow_queries, and 8. a duplicated event.
    let mut slow: Vec<(usize, i32, i64, i64, i64)> = Vec::new();
    for shard in 0..new.shards.len() {
        let rows: Vec<(i32, i64, i64, i64)> = query_shard(
            new,
            shard,
            "SELECT src_partition, src_offset, TIMESTAMPDIFF(SECOND, '1970-01-01', occurred_at) DIV 60 * 60, \
             TIMESTAMPDIFF(SECOND, '1970-01-01', occurred_at + INTERVAL 1 MICROSECOND) DIV 60 * 60 \
             FROM slow_queries ORDER BY src_partition, src_offset LIMIT 2",
        )
        .await;
        slow.extend(rows.into_iter().map(|(p, o, w, w2)| (shard, p, o, w, w2)));
    }
    assert!(slow.len() >= 2, "need two slow queries, got {}", slow.len());
    let (s, p, o, window, _) = slow[0];
    on_shard(
        new,
        s,
        &format!(
            "UPDATE slow_queries SET duration_us = duration_us + 1 WHERE src_partition = {p} AND src_offset = {o}"
        ),
    )
    .await;
    expected.insert((
        "slow_queries".into(),
        Some(window),
        format!("src_partition={p}, src_offset={o}"),
        DiffKind::Changed,
    ));
    let (s, p, o, _, copy_window) = slow[1];
    on_shard(
        new,
        s,
        &format!(
            "INSERT INTO slow_queries SELECT src_partition, src_offset, occurred_at + INTERVAL 1 MICROSECOND, database_id, \
             fingerprint, keyspace_id, proxy_id, duration_us, rows_read, rows_returned, error_text, query_text, tables_used \
             FROM slow_queries WHERE src_partition = {p} AND src_offset = {o}"
        ),
    )
    .await;
    expected.insert((
        "slow_queries".into(),
        Some(copy_window),
        format!("src_partition={p}, src_offset={o}"),
        DiffKind::ExtraOnNew,
    ));

    // Edits made behind the consumers' back leave no trace a re-run could
    // see (no late message): the periodic full re-check finds them.
    let diverged = windows(old, new, from, to, true).await;
    let got = found(&diverged.differences);
    let missing: Vec<_> = expected.difference(&got).collect();
    let unexpected: Vec<_> = got.difference(&expected).collect();
    assert!(missing.is_empty() && unexpected.is_empty(), "not found: {missing:#?}\nnot expected: {unexpected:#?}");
    assert_eq!(diverged.differences.len(), expected.len(), "each difference reported once");
    assert_eq!(diverged.run.outcome, RunOutcome::Different);
    assert_eq!(diverged.run.differences, expected.len() as u64);
    let different_windows: BTreeSet<(String, Option<i64>)> = expected.iter().map(|e| (e.0.clone(), e.1)).collect();
    assert_eq!(diverged.run.windows_different, different_windows.len() as u64);
    assert_eq!(diverged.run.windows_equal + diverged.run.windows_different, all_windows);
    let changed = diverged.differences.iter().find(|d| d.key == changed_minute).expect("changed row");
    assert_eq!(
        changed.detail,
        json!({ "columns": { "query_count": { "old": before[0].to_string(), "new": (before[0] + 1).to_string() } } })
    );
    let misplaced = diverged.differences.iter().find(|d| d.kind == DiffKind::Misplaced).expect("misplaced row");
    assert_eq!(misplaced.detail["shard"], new.shards[wrong].range.to_string());
    assert_eq!(misplaced.detail["cluster"], "new");
    let wrong_ksid = diverged
        .differences
        .iter()
        .find(|d| d.key == bad_ksid && d.kind == DiffKind::Misplaced)
        .expect("wrong keyspace id");
    assert_eq!(wrong_ksid.detail["shard"], wrong_ksid.detail["owner_of_keyspace_id"], "on the shard owning the id");
    assert_ne!(wrong_ksid.detail["keyspace_id"], wrong_ksid.detail["vindex_keyspace_id"]);
    let ksid_change =
        diverged.differences.iter().find(|d| d.key == bad_ksid && d.kind == DiffKind::Changed).expect("changed");
    assert_eq!(
        ksid_change.detail["columns"].as_object().map(|c| c.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["keyspace_id".to_string()])
    );

    // A re-run with nothing changed re-checks only the differing windows.
    let again = windows(old, new, from, to, false).await;
    assert_eq!(again.run.windows_checked, diverged.run.windows_different);
    assert_eq!(again.run.windows_reused, diverged.run.windows_equal);
    assert_eq!(found(&again.differences), expected);

    // A late message applied since makes every settled window suspect again.
    on_shard(new, 0, "UPDATE dw_offset_fence SET late_messages = late_messages + 1 LIMIT 1").await;
    let after_late = windows(old, new, from, to, false).await;
    assert_eq!((after_late.run.windows_checked, after_late.run.windows_reused), (all_windows, 0));
    assert_eq!(found(&after_late.differences), expected);

    // The binary: exit 1 on differences, 2 when the [time] sections disagree.
    let bin = env!("CARGO_BIN_EXE_dualwrite-verify");
    let cli_out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verify-report-cli");
    let status = std::process::Command::new(bin)
        .args(["windows", "--out"])
        .arg(&cli_out)
        .arg("--old")
        .arg(&fed.old.file)
        .arg("--new")
        .arg(&fed.new.file)
        .args([
            "--from",
            &format!("{}Z", time_text(from).replace(' ', "T")),
            "--to",
            &format!("{}Z", time_text(to).replace(' ', "T")),
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run dualwrite-verify");
    assert_eq!(status.status.code(), Some(1), "{}", String::from_utf8_lossy(&status.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&status.stdout).expect("run as JSON on stdout");
    assert_eq!(printed["outcome"], "different");
    for file in ["report.json", "report.md", "report.html", "verify.prom"] {
        assert!(cli_out.join(file).is_file(), "{file} written by --out");
    }
    let other_time = fed.new.file.with_file_name("new-30s.toml");
    std::fs::write(
        &other_time,
        std::fs::read_to_string(&fed.new.file).expect("read") + "\n[time]\nminute_window = \"30s\"\n",
    )
    .expect("write");
    let refused = std::process::Command::new(bin)
        .args(["windows", "--since", "1h", "--old"])
        .arg(&fed.old.file)
        .arg("--new")
        .arg(&other_time)
        .output()
        .expect("run dualwrite-verify");
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("[time] sections differ"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // query_patterns: one changed column, found by a full diff interrupted once and resumed.
    let (s, db, fp) = first_stats_row(new, "query_patterns", "TRUE").await;
    on_shard(new, s, &format!("UPDATE query_patterns SET normalized_sql = CONCAT(normalized_sql, ' -- edited') WHERE database_id = {db} AND fingerprint = '{fp}'")).await;
    let mut patterns = 0u64;
    for (cluster, shards) in [(old, old.shards.len()), (new, new.shards.len())] {
        for shard in 0..shards {
            let n: Vec<u64> = query_shard(cluster, shard, "SELECT COUNT(*) FROM query_patterns").await;
            patterns += n[0];
        }
    }
    let table = |stop| TableConfig {
        old: old.clone(),
        new: new.clone(),
        table: verify::spec::table(old, "query_patterns").expect("spec").expect("query_patterns"),
        page_rows: 100,
        restart: false,
        stop_after_rows: stop,
    };
    let first = run_table(&table(Some(patterns / 2)), &CancellationToken::new()).await.expect("first half");
    assert!(!first.complete && !first.resumed);
    let rest = run_table(&table(None), &CancellationToken::new()).await.expect("second half");
    assert!(rest.complete && rest.resumed);
    assert_eq!(rest.run.run_id, first.run.run_id);
    assert_eq!(rest.run.rows_compared, patterns, "every row of both sides compared once");
    assert_eq!(rest.run.outcome, RunOutcome::Different);
    let pools = ShardPools::new(new);
    let control = pools.control().expect("control");
    let stored = history::differences_of_run(control, rest.run.run_id).await.expect("differences");
    let keys: Vec<(String, DiffKind)> = stored.iter().map(|d| (d.difference.key.clone(), d.difference.kind)).collect();
    assert_eq!(keys, [(format!("database_id={db}, fingerprint={fp}"), DiffKind::Changed)]);
    let columns = stored[0].difference.detail["columns"].as_object().expect("columns");
    assert_eq!(columns.keys().collect::<Vec<_>>(), ["normalized_sql"]);

    // What cutover reads.
    let latest = history::latest_finished_run(control, "windows", "windows").await.expect("latest").expect("a run");
    assert_eq!((latest.run_id, latest.outcome), (after_late.run.run_id + 1, RunOutcome::Different));
    let latest_table =
        history::latest_finished_run(control, "table", "query_patterns").await.expect("latest").expect("a run");
    assert_eq!(latest_table.outcome, RunOutcome::Different);
    let open = history::open_differences(control).await.expect("open differences");
    assert_eq!(open.len(), expected.len() + 1);

    // The report, and its timeline in headless Chromium.
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verify-report");
    let report = verify::report::build(control, new, from - 1800, to + 1800).await.expect("report");
    pools.disconnect().await;
    let files = verify::report::write(&report, &out).expect("write report");
    assert_eq!(files.len(), 4);
    for file in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is readable by others", file.display());
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("class=\"different\"") && html.contains("class=\"equal\"") && html.contains("misplaced"));
    assert!(!html.contains("http://") && !html.contains("https://"), "self-contained");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("json")).expect("parse");
    assert_eq!(json["open_differences"].as_array().map(Vec::len), Some(expected.len() + 1));
    let prom = std::fs::read_to_string(out.join("verify.prom")).expect("prom");
    let line = format!("dualwrite_verify_windows{{state=\"different\"}} {}", different_windows.len());
    assert!(prom.contains(&line), "{prom}");
    let png = support::screenshot(&out.join("report.html"), &out.join("timeline.png"));
    eprintln!("report screenshot: {}", png.display());

    // A run still going is the latest run but never the latest finished one.
    let pools = ShardPools::new(new);
    let control = pools.control().expect("control");
    let running =
        history::start_run(control, "table", "query_patterns", old.name.as_str(), new.name.as_str(), (0, 0), None)
            .await
            .expect("start a run");
    let newest = history::latest_run(control, "table", "query_patterns").await.expect("latest").expect("a run");
    assert_eq!((newest.run_id, newest.outcome), (running, RunOutcome::Running));
    let finished =
        history::latest_finished_run(control, "table", "query_patterns").await.expect("latest").expect("a run");
    assert_eq!(finished.run_id, latest_table.run_id);
    pools.disconnect().await;

    testkit::drop_databases(old).await;
    testkit::drop_databases(new).await;
}
