//! `dualwrite-verify repair` against real MariaDB shards: every kind of the
//! divergence corpus (a count changed, a row missing, a row extra, a sketch
//! changed, a row on the wrong shard, a `latest` row's text, an append row
//! changed and duplicated) injected on the new cluster, found by the
//! comparators, then repaired from the old cluster while both groups keep
//! applying late messages into the very windows and keys being repaired;
//! a final comparison finds everything equal.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cluster::pool::ShardPools;
use support::{feed_both, ksid_hex, on_shard, query_shard, stats_key, time_text, windows};
use tokio_util::sync::CancellationToken;
use verify::diff::DiffKind;
use verify::history::RunOutcome;
use verify::repair::audit::{self, KeyState};
use verify::repair::{run_repair, Authority, RepairConfig};
use verify::table::{run_table, TableConfig};

/// Messages the groups apply first: a little over four minute windows.
const MESSAGES: u64 = 6000;
/// Each late burst replays the first messages of the same workload (same
/// seed, same start): the same keys in the same (long settled) windows, so
/// every key the repair rewrites in minute 0, the hour and query_patterns
/// keeps receiving contributions while it is repaired.
const BURST: u64 = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_every_divergence_while_the_groups_apply_late_messages() {
    let support::Fed { old: old_cluster, new: new_cluster, broker, start } = feed_both("repair", MESSAGES).await;
    let (old, new) = (&old_cluster.config, &new_cluster.config);
    let (from, to) = (start, start + 3600);
    assert_eq!(windows(old, new, from, to, false).await.run.outcome, RunOutcome::Equal);
    let w0 = format!("window_start = '{}'", time_text(from));
    // One key of minute 0 per new shard 0..3, so the edits never touch one row twice.
    let mut picked = Vec::new();
    for shard in 0..4 {
        let rows: Vec<(u64, String)> = query_shard(
            new,
            shard,
            &format!("SELECT database_id, fingerprint FROM query_stats_minute WHERE {w0} ORDER BY 1, 2 LIMIT 1"),
        )
        .await;
        picked.push((shard, rows[0].0, rows[0].1.clone()));
    }
    let is = |db: u64, fp: &str| format!("database_id = {db} AND fingerprint = '{fp}'");

    // 1. A count changed.
    let (s, db, fp) = picked[0].clone();
    on_shard(
        new,
        s,
        &format!("UPDATE query_stats_minute SET query_count = query_count + 1 WHERE {} AND {w0}", is(db, &fp)),
    )
    .await;
    let counted = (s, db, fp);
    // 2. A row missing.
    let (s, db, fp) = picked[1].clone();
    on_shard(new, s, &format!("DELETE FROM query_stats_minute WHERE {} AND {w0}", is(db, &fp))).await;
    // 2b. A row missing in a window no late burst reaches.
    let w3 = format!("window_start = '{}'", time_text(from + 180));
    let (db3, fp3): (u64, String) = query_shard(
        new,
        4,
        &format!("SELECT database_id, fingerprint FROM query_stats_minute WHERE {w3} ORDER BY 1, 2 LIMIT 1"),
    )
    .await
    .remove(0);
    on_shard(new, 4, &format!("DELETE FROM query_stats_minute WHERE {} AND {w3}", is(db3, &fp3))).await;
    // 3. A sketch changed: another key's (valid) sketch in its place.
    let (s, db, fp) = picked[2].clone();
    let other: Vec<String> = query_shard(
        new,
        s,
        &format!(
            "SELECT HEX(latency_sketch) FROM query_stats_minute WHERE {w0} AND NOT ({}) AND \
             latency_sketch <> (SELECT latency_sketch FROM query_stats_minute WHERE {} AND {w0}) LIMIT 1",
            is(db, &fp),
            is(db, &fp)
        ),
    )
    .await;
    on_shard(
        new,
        s,
        &format!("UPDATE query_stats_minute SET latency_sketch = X'{}' WHERE {} AND {w0}", other[0], is(db, &fp)),
    )
    .await;
    // 4. A row on a shard that does not own it.
    let (s, db, fp) = picked[3].clone();
    let wrong = (s + 1) % new.shards.len();
    move_minute_row(new, s, wrong, &format!("{} AND {w0}", is(db, &fp))).await;
    let misplaced = (wrong, db, fp);
    // 5. An extra row in the hour, on its owner.
    let extra_db = 4_242_424_242u64;
    let ksid = ksid_hex(extra_db);
    on_shard(
        new,
        new.shard_index_for_database_id(extra_db),
        &format!(
            "INSERT INTO query_stats_hour VALUES ({extra_db}, 'feedfacefeedface', '{}', X'{ksid}', 1, 2, 3, 4, 5, 0, X'00')",
            time_text(from)
        ),
    )
    .await;
    // 6. A latest row's text (sorting first, so no later min_by merge undoes it).
    let (s, pdb, pfp) = picked[0].clone();
    on_shard(
        new,
        s,
        &format!(
            "UPDATE query_patterns SET normalized_sql = CONCAT('-- edited ', normalized_sql) WHERE {}",
            is(pdb, &pfp)
        ),
    )
    .await;
    // 7. An append row changed, and 8. one duplicated at another time.
    let slow: Vec<(i32, i64)> =
        query_shard(new, 0, "SELECT src_partition, src_offset FROM slow_queries ORDER BY 1, 2 LIMIT 2").await;
    assert_eq!(slow.len(), 2, "two slow queries on shard 0");
    on_shard(
        new,
        0,
        &format!(
            "UPDATE slow_queries SET duration_us = duration_us + 1 WHERE src_partition = {} AND src_offset = {}",
            slow[0].0, slow[0].1
        ),
    )
    .await;
    on_shard(
        new,
        0,
        &format!(
            "INSERT INTO slow_queries SELECT src_partition, src_offset, occurred_at + INTERVAL 1 MICROSECOND, database_id, \
             fingerprint, keyspace_id, proxy_id, duration_us, rows_read, rows_returned, error_text, query_text, tables_used \
             FROM slow_queries WHERE src_partition = {} AND src_offset = {}",
            slow[1].0, slow[1].1
        ),
    )
    .await;

    let diverged = windows(old, new, from, to, true).await;
    assert_eq!(diverged.run.outcome, RunOutcome::Different);
    let kinds: BTreeMap<DiffKind, usize> = diverged.differences.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.kind).or_default() += 1;
        m
    });
    assert_eq!(kinds.get(&DiffKind::Misplaced), Some(&1), "{kinds:?}");
    assert!(diverged.differences.iter().any(|d| d.key == stats_key(misplaced.1, &misplaced.2, from)));
    let table_config = |restart| TableConfig {
        old: old.clone(),
        new: new.clone(),
        table: verify::spec::table(old, "query_patterns").expect("spec").expect("query_patterns"),
        page_rows: 1000,
        restart,
        stop_after_rows: None,
    };
    let patterns = run_table(&table_config(true), &CancellationToken::new()).await.expect("table run");
    assert_eq!(patterns.run.outcome, RunOutcome::Different);
    assert_eq!(patterns.differences.len(), 1);

    let repair = |run_id, dry_run| RepairConfig {
        old: old.clone(),
        new: new.clone(),
        run_id,
        table: None,
        window: None,
        dry_run,
        from: Authority::Old,
        topic_prefix: None,
        wait: Duration::from_secs(90),
        reverify: true,
    };

    // A dry run prints the statements and changes nothing.
    let distinct: std::collections::BTreeSet<(&str, Option<i64>, &str)> =
        diverged.differences.iter().map(|d| (d.tbl.as_str(), d.window_start, d.key.as_str())).collect();
    let dry = run_repair(&repair(diverged.run.run_id, true), &CancellationToken::new()).await.expect("dry run");
    assert_eq!(dry.states.get("planned").copied(), Some(distinct.len() as u64), "{:?}", dry.states);
    assert!(dry.statements.iter().any(|s| s.starts_with("-- new/") && s.contains("DELETE FROM query_stats_minute")));
    assert!(dry.statements.iter().any(|s| s.contains("DELETE FROM query_stats_hour WHERE database_id = 4242424242")));
    assert!(dry.statements.iter().any(|s| s.contains("INSERT INTO query_stats_minute")));
    let still: Vec<u64> = query_shard(
        new,
        counted.0,
        &format!("SELECT COUNT(*) FROM query_stats_minute WHERE {} AND {w0}", is(counted.1, &counted.2)),
    )
    .await;
    assert_eq!(still, [1]);
    let pools = ShardPools::new(new);
    let control = pools.control().expect("control").clone();
    assert!(
        audit::keys_of_run(&control, diverged.run.run_id, "old").await.expect("audit").is_empty(),
        "a dry run writes no audit"
    );

    // Group B alone applies a burst of late messages (event times in the
    // long-settled windows, replayed after them) into the same keys: the old
    // cluster's rows now hold fewer offsets than the new one's, and a rollup
    // copy would lose them, so the repair must wait and copy nothing.
    let count_of = |cluster: &'static str| {
        let (c, (s, db, fp)) = (if cluster == "old" { old } else { new }, counted.clone());
        let shard = if cluster == "old" { old.shard_index_for_database_id(db) } else { s };
        let sql = format!("SELECT query_count FROM query_stats_minute WHERE {} AND {w0}", is(db, &fp));
        async move { query_shard::<u64>(c, shard, &sql).await[0] }
    };
    let (old_count, new_count) = (count_of("old").await, count_of("new").await);
    assert_eq!(new_count, old_count + 1);
    let b = testkit::Group::start(&new_cluster, &broker, "b");
    broker.produce_from(BURST, 7, None, from * 1000).await;
    testkit::wait_caught_up(new, &broker, Duration::from_secs(120)).await;
    let grown = count_of("new").await;
    assert!(grown > new_count, "the burst reaches the repaired key");
    let held_back = RepairConfig {
        table: Some("query_stats_minute".into()),
        wait: Duration::from_secs(2),
        ..repair(diverged.run.run_id, false)
    };
    let waited = run_repair(&held_back, &CancellationToken::new()).await.expect("repair while A is stopped");
    assert_eq!(waited.states.get("waiting").copied(), Some(5), "{:?}", waited.states);
    assert!(!waited.complete());
    assert_eq!(count_of("new").await, grown, "nothing copied while the fences differ");
    assert_eq!(count_of("old").await, old_count);
    let pools = ShardPools::new(new);
    let control = pools.control().expect("control").clone();
    let waiting = audit::keys_of_run(&control, diverged.run.run_id, "old").await.expect("audit");
    assert_eq!(waiting.iter().filter(|r| r.state == KeyState::Waiting).count(), 5);

    // Group A starts catching up, and a writer keeps replaying late bursts
    // into the same keys until the repairs end: the repairs run while both
    // groups write the windows and keys they rewrite.
    let a = testkit::Group::start(&old_cluster, &broker, "a");
    let stop = AtomicBool::new(false);
    let bursts = AtomicU64::new(0);
    let writer = async {
        while !stop.load(Ordering::SeqCst) {
            broker.produce_from(BURST, 7, None, from * 1000).await;
            bursts.fetch_add(1, Ordering::SeqCst);
            testkit::wait_caught_up(old, &broker, Duration::from_secs(120)).await;
            testkit::wait_caught_up(new, &broker, Duration::from_secs(120)).await;
        }
    };
    let repairs = async {
        let windows_repair =
            run_repair(&repair(diverged.run.run_id, false), &CancellationToken::new()).await.expect("repair");
        let table_repair =
            run_repair(&repair(patterns.run.run_id, false), &CancellationToken::new()).await.expect("repair latest");
        stop.store(true, Ordering::SeqCst);
        (windows_repair, table_repair)
    };
    let ((), (repaired, repaired_patterns)) = tokio::join!(writer, repairs);
    assert!(bursts.load(Ordering::SeqCst) >= 1);
    assert!(count_of("old").await > old_count, "group A applied the late bursts into the repaired key");
    eprintln!("repair: {}", serde_json::to_string(&repaired).expect("json"));
    eprintln!("repair of query_patterns: {}", serde_json::to_string(&repaired_patterns).expect("json"));
    for outcome in [&repaired, &repaired_patterns] {
        let open: u64 =
            ["waiting", "skipped", "pending"].iter().map(|s| outcome.states.get(*s).copied().unwrap_or(0)).sum();
        assert_eq!(open, 0, "{:?}", outcome.states);
        assert!(outcome.states.get("repaired").copied().unwrap_or(0) > 0, "{:?}", outcome.states);
    }
    for action in ["replaced", "inserted", "deleted", "moved"] {
        assert!(repaired.actions.contains_key(action), "no key {action}: {:?}", repaired.actions);
    }
    assert_eq!(repaired_patterns.actions.get("replaced").copied(), Some(1));
    // The misplaced copy is gone from the shard that does not own it.
    let left: Vec<u64> = query_shard(
        new,
        misplaced.0,
        &format!("SELECT COUNT(*) FROM query_stats_minute WHERE {} AND {w0}", is(misplaced.1, &misplaced.2)),
    )
    .await;
    assert_eq!(left, [0]);
    // Every key audited, repaired ones with both digests.
    let rows = audit::keys_of_run(&control, diverged.run.run_id, "old").await.expect("audit");
    assert!(!rows.is_empty());
    for row in &rows {
        assert!(row.state.is_final(), "{row:?}");
        if row.state == KeyState::Repaired {
            assert!(row.before_digest.is_some() && row.after_digest.is_some() && row.fences.is_some(), "{row:?}");
            assert_ne!(row.before_digest, row.after_digest, "{row:?}");
            assert!(row.reverify_run_id.is_some(), "{row:?}");
        }
    }
    let recent = audit::recent(&control, 100).await.expect("recent");
    assert!(recent.iter().any(|r| r.tbl == "query_patterns" && r.state == KeyState::Repaired));
    // The report lists the repaired keys.
    let report = verify::report::build(&control, new, from - 1800, to + 1800).await.expect("report");
    assert_eq!(report.repairs.iter().filter(|r| r.state == KeyState::Repaired).count(), rows.len() + 1);
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verify-report-repair");
    verify::report::write(&report, &out).expect("write report");
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("Repaired keys (") && html.contains("r-repaired") && html.contains("moved"), "{html}");
    let markdown = std::fs::read_to_string(out.join("report.md")).expect("markdown");
    assert!(markdown.contains("## Repaired keys: "), "{markdown}");

    // Once the last burst is applied, a full comparison finds everything equal.
    testkit::wait_caught_up(old, &broker, Duration::from_secs(120)).await;
    testkit::wait_caught_up(new, &broker, Duration::from_secs(120)).await;
    support::wait_settled(old, from, to, Duration::from_secs(60)).await;
    support::wait_settled(new, from, to, Duration::from_secs(60)).await;
    let after = windows(old, new, from, to, true).await;
    assert_eq!(after.run.outcome, RunOutcome::Equal, "{:#?}", after.differences);
    let table_after = run_table(&table_config(true), &CancellationToken::new()).await.expect("table run");
    assert_eq!(table_after.run.outcome, RunOutcome::Equal, "{:#?}", table_after.differences);
    // A repair run again finds nothing left to do.
    let again = run_repair(&repair(diverged.run.run_id, false), &CancellationToken::new()).await.expect("again");
    assert_eq!(again.states.get("done_before").copied().unwrap_or(0) as usize, rows.len(), "{:?}", again.states);

    a.stop().await;
    b.stop().await;
    pools.disconnect().await;
    testkit::drop_databases(old).await;
    testkit::drop_databases(new).await;
}

/// After a rollback the new cluster holds the truth: `repair --from new`
/// rewrites the old cluster (4 shards) from the new one (8), each kind of
/// divergence (a count changed, a row missing, an extra row, a row on a shard
/// that does not own it, a `latest` row's text), and leaves the new cluster
/// as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_the_old_cluster_from_the_new_one() {
    let support::Fed { old: old_cluster, new: new_cluster, broker: _broker, start } =
        feed_both("repair_from_new", 3000).await;
    let (old, new) = (&old_cluster.config, &new_cluster.config);
    let (from, to) = (start, start + 3600);
    assert_eq!(windows(old, new, from, to, false).await.run.outcome, RunOutcome::Equal);
    let w0 = format!("window_start = '{}'", time_text(from));
    let is = |db: u64, fp: &str| format!("database_id = {db} AND fingerprint = '{fp}'");
    let first_key = |shard: usize| {
        let sql = format!("SELECT database_id, fingerprint FROM query_stats_minute WHERE {w0} ORDER BY 1, 2 LIMIT 1");
        async move { query_shard::<(u64, String)>(old, shard, &sql).await.remove(0) }
    };
    // Every table of every new shard, by CHECKSUM TABLE (the server's own
    // reading, no code of the comparators').
    let new_checksums = || async {
        let mut out = Vec::new();
        for shard in 0..new.shards.len() {
            let sql = "CHECKSUM TABLE query_stats_minute, query_stats_hour, query_patterns, slow_queries";
            out.extend(query_shard::<(String, Option<u64>)>(new, shard, sql).await.into_iter().map(|t| (shard, t)));
        }
        out
    };
    let new_before = new_checksums().await;

    // 1. A count changed (old shard 0).
    let (db, fp) = first_key(0).await;
    on_shard(
        old,
        0,
        &format!("UPDATE query_stats_minute SET query_count = query_count + 5 WHERE {} AND {w0}", is(db, &fp)),
    )
    .await;
    let counted = (db, fp);
    // 2. A row missing (old shard 1).
    let (db, fp) = first_key(1).await;
    on_shard(old, 1, &format!("DELETE FROM query_stats_minute WHERE {} AND {w0}", is(db, &fp))).await;
    let missing = (db, fp);
    // 3. A row moved from old shard 2 to shard 3, which does not own it.
    let (db, fp) = first_key(2).await;
    move_minute_row(old, 2, 3, &format!("{} AND {w0}", is(db, &fp))).await;
    let misplaced = (db, fp);
    // 4. An extra row in the hour, on its owner.
    let extra_db = 4_242_424_243u64;
    on_shard(
        old,
        old.shard_index_for_database_id(extra_db),
        &format!(
            "INSERT INTO query_stats_hour VALUES ({extra_db}, 'feedfacefeedface', '{}', X'{}', 1, 2, 3, 4, 5, 0, X'00')",
            time_text(from),
            ksid_hex(extra_db)
        ),
    )
    .await;
    // 5. A latest row's text.
    let (pdb, pfp) = counted.clone();
    on_shard(
        old,
        old.shard_index_for_database_id(pdb),
        &format!(
            "UPDATE query_patterns SET normalized_sql = CONCAT('-- edited ', normalized_sql) WHERE {}",
            is(pdb, &pfp)
        ),
    )
    .await;

    let diverged = windows(old, new, from, to, true).await;
    assert_eq!(diverged.run.outcome, RunOutcome::Different);
    let kinds: BTreeMap<DiffKind, usize> = diverged.differences.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.kind).or_default() += 1;
        m
    });
    assert_eq!(kinds.get(&DiffKind::Misplaced), Some(&1), "{kinds:?}");
    let table_config = TableConfig {
        old: old.clone(),
        new: new.clone(),
        table: verify::spec::table(old, "query_patterns").expect("spec").expect("query_patterns"),
        page_rows: 1000,
        restart: true,
        stop_after_rows: None,
    };
    let patterns = run_table(&table_config, &CancellationToken::new()).await.expect("table run");
    assert_eq!(patterns.differences.len(), 1, "{:#?}", patterns.differences);

    let repair = |run_id| RepairConfig {
        old: old.clone(),
        new: new.clone(),
        run_id,
        table: None,
        window: None,
        dry_run: false,
        from: Authority::New,
        topic_prefix: None,
        wait: Duration::from_secs(30),
        reverify: true,
    };
    let repaired = run_repair(&repair(diverged.run.run_id), &CancellationToken::new()).await.expect("repair");
    let repaired_patterns =
        run_repair(&repair(patterns.run.run_id), &CancellationToken::new()).await.expect("repair latest");
    eprintln!("repair from new: {}", serde_json::to_string(&repaired).expect("json"));
    assert_eq!((repaired.source.as_str(), repaired.target.as_str()), ("new", old.name.as_str()));
    assert!(repaired.complete(), "{repaired:?}");
    assert!(repaired_patterns.complete(), "{repaired_patterns:?}");
    for action in ["replaced", "inserted", "deleted", "moved"] {
        assert!(repaired.actions.contains_key(action), "no key {action}: {:?}", repaired.actions);
    }
    assert_eq!(repaired_patterns.actions.get("replaced").copied(), Some(1));

    // The old cluster now holds the new one's rows, whole, each on its owner.
    for (what, (db, fp)) in [("changed", counted.clone()), ("missing", missing), ("misplaced", misplaced.clone())] {
        let image = minute_image_sql(&format!("{} AND {w0}", is(db, &fp)));
        let (on_old, on_new) = (owned(old, db, &image).await, owned(new, db, &image).await);
        assert_eq!(on_new.len(), 1, "{what}: {on_new:?}");
        assert_eq!(on_old, on_new, "{what}: the old owner's row is the new one's");
    }
    let (db, fp) = misplaced;
    let stray: Vec<u64> =
        query_shard(old, 3, &format!("SELECT COUNT(*) FROM query_stats_minute WHERE {} AND {w0}", is(db, &fp))).await;
    assert_eq!(stray, [0], "the copy on the shard that does not own it is gone");
    let extra: Vec<u64> = query_shard(
        old,
        old.shard_index_for_database_id(extra_db),
        &format!("SELECT COUNT(*) FROM query_stats_hour WHERE database_id = {extra_db}"),
    )
    .await;
    assert_eq!(extra, [0], "the extra hour row is deleted");
    let text = format!("SELECT normalized_sql FROM query_patterns WHERE {}", is(pdb, &pfp));
    let (old_text, new_text) = (owned(old, pdb, &text).await, owned(new, pdb, &text).await);
    assert!(new_text.len() == 1 && !new_text[0].starts_with("-- edited"), "{new_text:?}");
    assert_eq!(old_text, new_text, "the latest row's text is the new cluster's");
    // Audited under the new cluster's authority; the new cluster untouched.
    let pools = ShardPools::new(new);
    let control = pools.control().expect("control").clone();
    let rows = audit::keys_of_run(&control, diverged.run.run_id, "new").await.expect("audit");
    assert!(rows.iter().any(|r| r.state == KeyState::Repaired), "{rows:?}");
    assert!(audit::keys_of_run(&control, diverged.run.run_id, "old").await.expect("audit").is_empty());
    assert_eq!(new_checksums().await, new_before, "the source cluster is not written");
    let after = windows(old, new, from, to, true).await;
    assert_eq!(after.run.outcome, RunOutcome::Equal, "{:#?}", after.differences);
    let table_after = run_table(&table_config, &CancellationToken::new()).await.expect("table run");
    assert_eq!(table_after.run.outcome, RunOutcome::Equal, "{:#?}", table_after.differences);

    pools.disconnect().await;
    testkit::drop_databases(old).await;
    testkit::drop_databases(new).await;
}

/// Moves the `query_stats_minute` row matching `condition` from shard `from`
/// to shard `to` of `cluster` (the row image read, deleted, inserted).
async fn move_minute_row(cluster: &cluster::config::ClusterConfig, from: usize, to: usize, condition: &str) {
    let image: Vec<String> = query_shard(cluster, from, &minute_image_sql(condition)).await;
    assert_eq!(image.len(), 1, "one row where {condition}");
    on_shard(cluster, from, &format!("DELETE FROM query_stats_minute WHERE {condition}")).await;
    on_shard(cluster, to, &format!("INSERT INTO query_stats_minute VALUES ({})", image[0])).await;
}

/// The `query_stats_minute` rows matching `condition`, each as the text of an
/// `INSERT ... VALUES` tuple (every column).
fn minute_image_sql(condition: &str) -> String {
    format!(
        "SELECT CONCAT_WS(',', database_id, QUOTE(fingerprint), QUOTE(window_start), CONCAT('0x', HEX(keyspace_id)), \
         query_count, total_duration_us, max_duration_us, rows_read, rows_returned, error_count, \
         CONCAT('0x', HEX(latency_sketch))) FROM query_stats_minute WHERE {condition}"
    )
}

/// `sql`'s rows (one text column) on the shard of `cluster` that owns `database_id`.
async fn owned(cluster: &cluster::config::ClusterConfig, database_id: u64, sql: &str) -> Vec<String> {
    query_shard(cluster, cluster.shard_index_for_database_id(database_id), sql).await
}
