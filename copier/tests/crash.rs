//! The copier process is SIGKILLed again and again, during copy phases,
//! catch-up phases and replication, while writers insert, update (by merge,
//! and by changing keys) and delete on the old cluster and a group B writer
//! upserts into the new cluster with the consumer's merge SQL. After the last
//! restart the new cluster's `query_patterns` must equal the old cluster's,
//! row for row and column for column, each row on the shard owning it.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::pool::ShardPools;
use common::{cluster_file, pattern, pattern_key, Clusters};
use copier::status::StreamStatus;
use mysql_async::prelude::Queryable;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

const DATABASES: u64 = 2000;
const HISTORY_ROWS: u64 = 80_000;
const BASE_US: i64 = 1_750_000_000_000_000;

fn spawn_copier(c: &Clusters) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dualwrite-copier"))
        .args(["start", "--table", "query_patterns", "--progress", "never"])
        .arg("--from")
        .arg(cluster_file("old"))
        .arg("--to")
        .arg(cluster_file("new"))
        .args(["--from-database", &c.db, "--to-database", &c.db])
        // Small chunks, and a pause after every target write as long as it
        // took (a throttle latency of 1ms): the copy of the history must
        // outlast several kills, and it took under 2 s with 300-row chunks
        // and no pause on this machine.
        .args([
            "--copy-phase",
            "700ms",
            "--catch-up-phase",
            "500ms",
            "--chunk-rows",
            "100",
            "--throttle-latency",
            "1ms",
        ])
        .args(["--batch-ops", "500", "--batch-wait", "50ms", "--status-interval", "200ms"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "copier=debug,warn")
        .stdout(Stdio::null())
        .stderr(log_file(c))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn dualwrite-copier")
}

/// The copier's log, appended over restarts: `target/copier-crash-<db>.log`.
fn log_file(c: &Clusters) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(log_path(c)).expect("log file")
}

/// Kept when the test fails, removed when it passes.
fn log_path(c: &Clusters) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/copier-crash-{}.log", c.db))
}

/// History on the old cluster only (what group B never saw): `h*` keys, and
/// `s*` keys the stream writer keeps sighting.
async fn preload(old: &ClusterConfig) {
    let pools = ShardPools::new(old);
    let mut images = Vec::new();
    for i in 0..HISTORY_ROWS {
        let fingerprint = if i % 4 == 0 { format!("s{}", i % 40) } else { format!("h{i}") };
        images.push(pattern(i % DATABASES + 1, &fingerprint, BASE_US + i as i64 * 1000, i % 3));
        if images.len() == 8000 {
            common::upsert(old, &pools, &images).await;
            images.clear();
        }
    }
    common::upsert(old, &pools, &images).await;
    pools.disconnect().await;
}

/// Groups A and B: the same sightings of `s*` keys, to the old and the new cluster, in either order.
async fn stream_writer(old: ClusterConfig, new: ClusterConfig, stop: CancellationToken) -> u64 {
    let (old_pools, new_pools) = (ShardPools::new(&old), ShardPools::new(&new));
    let mut rng = StdRng::seed_from_u64(1);
    let mut written = 0;
    while !stop.is_cancelled() {
        let batch: Vec<_> = (0..200)
            .map(|_| {
                let id = rng.random_range(1..=DATABASES);
                let seen = BASE_US + rng.random_range(-1_000_000_000_i64..200_000_000_000);
                pattern(id, &format!("s{}", rng.random_range(0..60)), seen, rng.random_range(0..5))
            })
            .collect();
        tokio::join!(common::upsert(&old, &old_pools, &batch), common::upsert(&new, &new_pools, &batch));
        written += batch.len() as u64;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    old_pools.disconnect().await;
    new_pools.disconnect().await;
    written
}

/// Old-cluster-only changes to `h*` keys: merge updates, inserts, key changes, deletes.
async fn history_writer(old: ClusterConfig, stop: CancellationToken) -> (u64, u64) {
    let pools = ShardPools::new(&old);
    let mut rng = StdRng::seed_from_u64(2);
    let (mut changed, mut deleted) = (0, 0);
    let mut next_new = HISTORY_ROWS;
    while !stop.is_cancelled() {
        let mut batch = Vec::new();
        for _ in 0..100 {
            let i = rng.random_range(0..HISTORY_ROWS);
            if i % 4 == 0 {
                continue;
            }
            // A later sighting, or an earlier one with other text.
            let seen = BASE_US + rng.random_range(-50_000_000_000_i64..300_000_000_000);
            batch.push(pattern(i % DATABASES + 1, &format!("h{i}"), seen, rng.random_range(0..5)));
        }
        for _ in 0..20 {
            batch.push(pattern(next_new % DATABASES + 1, &format!("h{next_new}"), BASE_US, 0));
            next_new += 1;
        }
        common::upsert(&old, &pools, &batch).await;
        changed += batch.len() as u64;
        let deletes: Vec<_> = (0..10)
            .map(|_| rng.random_range(0..next_new))
            .filter(|i| i % 4 != 0)
            .map(|i| pattern_key(i % DATABASES + 1, &format!("h{i}")))
            .collect();
        common::delete(&old, &pools, &deletes).await;
        deleted += deletes.len() as u64;
        // A key change: one row event with a before and an after key.
        let i = rng.random_range(1..HISTORY_ROWS);
        if i % 4 != 0 {
            let id = i % DATABASES + 1;
            let shard = old.shard_index_for_database_id(id);
            let sql = format!(
                "UPDATE query_patterns SET fingerprint = CONCAT(fingerprint, 'r') WHERE database_id = {id} AND fingerprint = 'h{i}'"
            );
            match pools.shard(shard).get_conn().await.expect("conn").query_drop(sql).await {
                Ok(()) => changed += 1,
                Err(mysql_async::Error::Server(e)) if e.code == 1062 => {}
                Err(e) => panic!("key change: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pools.disconnect().await;
    (changed, deleted)
}

async fn streams(c: &Clusters) -> Vec<StreamStatus> {
    copier::status::streams(&c.new).await.unwrap_or_default()
}

fn copied(streams: &[StreamStatus]) -> u64 {
    streams.iter().map(|s| s.rows_copied).sum()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Moment {
    Copied(u64),
    CatchingUp,
    Replicating,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_sigkill_during_copy_catch_up_and_replication_with_concurrent_writers() {
    let c = Clusters::new("copier_crash").await;
    preload(&c.old).await;
    let stop = CancellationToken::new();
    let ab = tokio::spawn(stream_writer(c.old.clone(), c.new.clone(), stop.clone()));
    let history = tokio::spawn(history_writer(c.old.clone(), stop.clone()));

    let schedule = [
        Moment::Copied(HISTORY_ROWS / 8),
        Moment::CatchingUp,
        Moment::Copied(HISTORY_ROWS * 3 / 8),
        Moment::CatchingUp,
        Moment::Copied(HISTORY_ROWS * 5 / 8),
        Moment::Replicating,
        Moment::Replicating,
    ];
    let mut kills = Vec::new();
    let mut child = spawn_copier(&c);
    let mut rng = StdRng::seed_from_u64(3);
    for moment in schedule {
        let started = Instant::now();
        loop {
            let now = streams(&c).await;
            let reached = match moment {
                Moment::Copied(rows) => copied(&now) >= rows || now.iter().all(|s| s.copy_done) && now.len() == 4,
                Moment::CatchingUp => now.iter().any(|s| !s.copy_done && s.phase.to_string() == "catching_up"),
                Moment::Replicating => {
                    now.len() == 4
                        && now.iter().all(|s| s.phase.to_string() == "replicating")
                        && started.elapsed() > Duration::from_millis(800)
                }
            };
            // Past the moment (the copy finished first), kill anyway after a
            // while; replication can only begin once the copy is done, which
            // takes longer on a loaded machine, so that moment waits longer.
            let give_up = if matches!(moment, Moment::Replicating) { 180 } else { 20 };
            if reached || started.elapsed() > Duration::from_secs(give_up) {
                let copying = now.iter().filter(|s| !s.copy_done).count();
                let catching_up = now.iter().filter(|s| s.phase.to_string() == "catching_up").count();
                child.start_kill().expect("SIGKILL");
                child.wait().await.expect("reap");
                kills.push((moment, reached, copied(&now), copying, catching_up));
                break;
            }
            assert!(child.try_wait().expect("poll child").is_none(), "copier exited on its own");
            tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..300))).await;
        child = spawn_copier(&c);
    }
    eprintln!("kills (moment, reached, rows copied, streams copying, streams catching up): {kills:#?}");
    assert!(kills.len() >= 5);
    assert!(kills.iter().filter(|k| k.3 > 0).count() >= 3, "at least 3 kills during the copy: {kills:?}");
    assert!(kills.iter().any(|k| k.4 > 0 && k.3 > 0), "a kill during a catch-up phase of the copy: {kills:?}");
    assert!(kills.iter().any(|k| k.3 == 0), "a kill while replicating: {kills:?}");

    // The writers go on until the last copier replicates every stream again,
    // so it applies live changes after its restart; then they stop.
    let restarted = Instant::now();
    loop {
        let now = streams(&c).await;
        if now.len() == 4 && now.iter().all(|s| s.phase.to_string() == "replicating") {
            break;
        }
        assert!(restarted.elapsed() < Duration::from_secs(180), "the last copier never replicated: {now:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let ab_rows = ab.await.expect("group writer");
    let (changed, deleted) = history.await.expect("history writer");
    eprintln!("group A+B sightings {ab_rows}, history changes {changed}, deletes {deleted}");
    c.wait_caught_up(Duration::from_secs(120)).await;

    // A clean stop, then the operator view from the binary.
    let pid = child.id().expect("pid");
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().await.expect("kill -TERM");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").expect("wait");
    assert!(status.success(), "copier exit: {status}");
    let out = Command::new(env!("CARGO_BIN_EXE_dualwrite-copier"))
        .args(["status", "--json", "--to-database", &c.db])
        .arg("--to")
        .arg(cluster_file("new"))
        .output()
        .await
        .expect("status");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let list = json.as_array().expect("array");
    assert_eq!(list.len(), 4, "{json}");
    assert!(list.iter().all(|s| s["phase"] == "stopped" && s["copy_done"] == true), "{json}");
    let rows_copied: u64 = list.iter().map(|s| s["rows_copied"].as_u64().unwrap_or(0)).sum();
    // Resumes continue from the fences: at most the keys that ever existed
    // (a full recopy after each of the 7 kills would be several times more).
    assert!(rows_copied <= HISTORY_ROWS + ab_rows + changed, "rows copied {rows_copied}");

    c.assert_equal().await;
    let _ = std::fs::remove_file(log_path(&c));
    c.cleanup().await;
}
