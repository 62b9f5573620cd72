//! The verify tests' harness: the consumer tests' throwaway clusters and mock
//! broker, plus two consumer groups run in-process, settlement waits and
//! cleanup of every database a test created.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use cluster::config::ClusterConfig;
use cluster::fence::{progress, window_state, WindowState};
use cluster::pool::ShardPools;
use mysql_async::prelude::Queryable;
use testkit::{fresh_cluster, Broker, Group, TestCluster};

/// Start of the hour two hours ago: its hour window and every minute window
/// of it are long past their allowed lateness (5 min) when the test runs.
pub(crate) fn two_hours_ago() -> i64 {
    let now = chrono::Utc::now().timestamp();
    (now / 3600) * 3600 - 2 * 3600
}

/// Waits until every window in `[from, to)` (minute and hour sizes) is
/// settled on `cluster`.
pub(crate) async fn wait_settled(cluster: &ClusterConfig, from: i64, to: i64, timeout: Duration) {
    let pools = ShardPools::new(cluster);
    let deadline = Instant::now() + timeout;
    let lateness = cluster.time.allowed_lateness_ms();
    loop {
        let p = progress(&pools).await.expect("progress");
        let hour = cluster.time.hour_secs();
        let first_hour = (from / hour) * hour;
        let last_end = to.div_euclid(hour) * hour + if to % hour == 0 { 0 } else { hour };
        if !p.is_empty() && window_state(&p, None, first_hour * 1000, last_end * 1000, lateness) == WindowState::Settled
        {
            break;
        }
        assert!(Instant::now() < deadline, "windows {from}..{to} not settled on {} after {timeout:?}", cluster.name);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pools.disconnect().await;
}

/// `epoch` as MySQL writes a DATETIME, for conditions and keys.
pub(crate) fn time_text(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0).expect("time").format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The drill-down's key text of an Insights stats row.
pub(crate) fn stats_key(database_id: u64, fingerprint: &str, window: i64) -> String {
    format!("database_id={database_id}, fingerprint={fingerprint}, window_start={}", time_text(window))
}

/// The keyspace id of `database_id` as hex digits (for `X'...'` literals).
pub(crate) fn ksid_hex(database_id: u64) -> String {
    cluster::sql::hex_digits(&cluster::vindex::keyspace_id(database_id))
}

/// One window comparison of `[from, to)`, expected to run.
pub(crate) async fn windows(
    old: &ClusterConfig,
    new: &ClusterConfig,
    from: i64,
    to: i64,
    recheck_all: bool,
) -> verify::windows::WindowsOutcome {
    let config = verify::windows::WindowsConfig {
        old: old.clone(),
        new: new.clone(),
        range: verify::windows::Range::Between(from, to),
        recheck_all,
    };
    verify::windows::run_windows(&config, &tokio_util::sync::CancellationToken::new()).await.expect("windows run")
}

/// The first row of `sql` on any shard, in shard order, with its shard.
pub(crate) async fn first_row_on_any_shard<T: mysql_async::prelude::FromRow + Send + 'static>(
    cluster: &ClusterConfig,
    sql: &str,
) -> (usize, T) {
    for shard in 0..cluster.shards.len() {
        if let Some(row) = query_shard::<T>(cluster, shard, sql).await.into_iter().next() {
            return (shard, row);
        }
    }
    panic!("no row on any shard of {}: {sql}", cluster.name);
}

/// Runs one statement on one shard.
pub(crate) async fn on_shard(cluster: &ClusterConfig, shard: usize, sql: &str) {
    let pools = ShardPools::new(cluster);
    let mut conn = pools.shard(shard).get_conn().await.expect("conn");
    conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(conn);
    pools.disconnect().await;
}

/// Rows of one query on one shard.
pub(crate) async fn query_shard<T: mysql_async::prelude::FromRow + Send + 'static>(
    cluster: &ClusterConfig,
    shard: usize,
    sql: &str,
) -> Vec<T> {
    let pools = ShardPools::new(cluster);
    let mut conn = pools.shard(shard).get_conn().await.expect("conn");
    let rows = conn.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    drop(conn);
    pools.disconnect().await;
    rows
}

/// A cluster's two test clusters fed by two groups from one produced load,
/// stopped once both are caught up and settled.
pub(crate) struct Fed {
    pub(crate) old: TestCluster,
    pub(crate) new: TestCluster,
    pub(crate) broker: Broker,
    pub(crate) start: i64,
}

pub(crate) async fn feed_both(tag: &str, messages: u64) -> Fed {
    let (old_tag, new_tag) = (format!("{tag}_o"), format!("{tag}_n"));
    let (old, new) = tokio::join!(fresh_cluster("old", &old_tag), fresh_cluster("new", &new_tag));
    let broker = Broker::new(tag);
    let start = two_hours_ago();
    broker.produce_from(messages, 7, None, start * 1000).await;
    let (a, b) = (Group::start(&old, &broker, "a"), Group::start(&new, &broker, "b"));
    testkit::wait_caught_up(&old.config, &broker, Duration::from_secs(180)).await;
    testkit::wait_caught_up(&new.config, &broker, Duration::from_secs(180)).await;
    wait_settled(&old.config, start, start + 3600, Duration::from_secs(60)).await;
    wait_settled(&new.config, start, start + 3600, Duration::from_secs(60)).await;
    a.stop().await;
    b.stop().await;
    testkit::assert_nothing_truncated(&broker).await;
    Fed { old, new, broker, start }
}

/// Renders `html` in headless Chromium into `png` and returns its path.
/// Chromium comes from `compose/local/deps` (Debian's `chromium`);
/// `DUALWRITE_CHROMIUM` names another binary.
pub(crate) fn screenshot(html: &std::path::Path, png: &std::path::Path) -> std::path::PathBuf {
    let chromium = std::env::var("DUALWRITE_CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let profile = tempfile::tempdir().expect("profile dir");
    let _ = std::fs::remove_file(png);
    let output = std::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.canonicalize().expect("html path").display()))
        .output()
        .unwrap_or_else(|e| panic!("{chromium}: {e}; install it with compose/local/deps"));
    let size = std::fs::metadata(png).map(|m| m.len()).unwrap_or(0);
    assert!(
        output.status.success() && size > 10_000,
        "chromium wrote {size} bytes to {}: {}",
        png.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    // PNG signature.
    let head = std::fs::read(png).expect("png");
    assert_eq!(&head[..8], b"\x89PNG\r\n\x1a\n");
    png.to_path_buf()
}
