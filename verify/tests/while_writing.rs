//! Equal clusters compare equal while a producer and both consumer groups
//! are still writing: windows not yet settled on both sides come out as
//! not settled (or not covered), never as different.
//!
//! The events carry current times, as a live stream does: settlement by
//! idle confirmation ("caught up at wall time T, so windows ending before
//! T - lateness are complete") holds only for such a stream. A producer
//! writing hours-old timestamps while a group is momentarily caught up
//! breaks that premise, and the comparator then rightly sees settled
//! windows change.

mod support;

use std::time::Duration;

use loadtest::produce::{produce, ProduceConfig};
use loadtest::workload::WorkloadConfig;
use testkit::{fresh_cluster_with, wait_caught_up, Broker, Group};
use tokio_util::sync::CancellationToken;
use verify::windows::{run_windows, Range, WindowsConfig};

/// Compressed time: 5 s "minute" windows, 15 s "hour" windows, 2 s lateness.
const TIME: &str = "[time]\nminute_window = \"5s\"\nhour_window = \"15s\"\nallowed_lateness = \"2s\"\n\
                    partition = \"60s\"\nretention = \"1h\"\nahead = \"10m\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_no_difference_while_both_groups_are_writing() {
    let (old, new) =
        tokio::join!(fresh_cluster_with("old", "writing_o", TIME), fresh_cluster_with("new", "writing_n", TIME));
    let broker = Broker::new("writing");
    let now = chrono::Utc::now().timestamp();
    // Event times never fall behind the wall clock: the first interval starts
    // at the next "hour" boundary, and 60 messages/s outpaces the ~190
    // messages each 5 s interval holds. The proxies report per "minute"
    // window, as in production (15 s aggregates into 1 min windows): an
    // aggregate longer than its window would write it after its partition
    // carried a timestamp past its end, which the consumer counts as late.
    let start = (now / 15 + 1) * 15;
    let produce_config = ProduceConfig {
        brokers: broker.bootstrap.clone(),
        topic_prefix: broker.prefix.clone(),
        messages: 3_000,
        rate: Some(60),
        workload: WorkloadConfig {
            aggregates_per_proxy: 60,
            interval_seconds: 5,
            ..WorkloadConfig::new(11, start * 1000)
        },
    };
    let producer = tokio::spawn(async move { produce(&produce_config, &CancellationToken::new()).await });
    let (a, b) = (Group::start(&old, &broker, "a"), Group::start(&new, &broker, "b"));

    let config = WindowsConfig {
        old: old.config.clone(),
        new: new.config.clone(),
        range: Range::Between(start - 60, start + 180),
        recheck_all: false,
    };
    let (mut runs, mut saw_unsettled, mut saw_equal_rows) = (0, false, false);
    // While the producer runs, and a few times after while the groups catch up.
    let mut after_producer = 0;
    while after_producer < 4 {
        if producer.is_finished() {
            after_producer += 1;
        }
        let outcome = run_windows(&config, &CancellationToken::new()).await.expect("windows run");
        assert_eq!(outcome.run.windows_different, 0, "difference while writing: {:#?}", outcome.differences);
        assert!(outcome.differences.is_empty());
        runs += 1;
        saw_unsettled |= outcome.run.windows_not_settled > 0;
        saw_equal_rows |= outcome.run.rows_compared > 0 && outcome.run.windows_not_settled > 0;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    producer.await.expect("join").expect("produce");
    assert!(runs >= 20, "only {runs} runs while writing");
    assert!(saw_unsettled, "no run saw a window still settling");
    assert!(saw_equal_rows, "no run proved rows equal while later windows were still settling");

    wait_caught_up(&old.config, &broker, Duration::from_secs(180)).await;
    wait_caught_up(&new.config, &broker, Duration::from_secs(180)).await;
    // The report while the newest windows still settle: all four states show.
    let pools = cluster::pool::ShardPools::new(&new.config);
    let control = pools.control().expect("control");
    let report = verify::report::build(control, &new.config, start - 60, start + 180).await.expect("report");
    pools.disconnect().await;
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verify-report-live");
    verify::report::write(&report, &out).expect("write report");
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("class=\"not_settled\"") && html.contains("class=\"equal\""));
    support::screenshot(&out.join("report.html"), &out.join("timeline.png"));

    // Once the idle groups confirm their ends, every window up to now is
    // settled, including the ones the report showed still settling: the
    // final run digests those and reuses the ones proven while writing.
    let settle_to = chrono::Utc::now().timestamp();
    testkit::wait_settled(&old.config, settle_to * 1000, Duration::from_secs(60)).await;
    testkit::wait_settled(&new.config, settle_to * 1000, Duration::from_secs(60)).await;
    let last = run_windows(
        &WindowsConfig { range: Range::Between(start - 60, settle_to), ..config },
        &CancellationToken::new(),
    )
    .await
    .expect("final run");
    assert_eq!(last.run.outcome, verify::history::RunOutcome::Equal, "{:#?}", last.differences);
    assert_eq!((last.run.windows_different, last.run.windows_not_covered), (0, 0));
    assert!(last.run.windows_reused > 0, "windows proven equal while writing are not digested again");
    assert!(last.run.rows_compared > 0);
    a.stop().await;
    b.stop().await;
    testkit::assert_nothing_truncated(&broker).await;
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}
