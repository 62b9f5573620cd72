//! Equal clusters compare equal while a producer and both consumer groups
//! are still writing: windows not yet settled on both sides come out as
//! not settled (or not covered), never as different.

mod support;

use std::time::Duration;

use loadtest::produce::{produce, ProduceConfig};
use loadtest::workload::WorkloadConfig;
use support::common::{wait_caught_up, Broker};
use support::{fresh_cluster, two_hours_ago, wait_settled, Group};
use tokio_util::sync::CancellationToken;
use verify::windows::{run_windows, Range, WindowsConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_no_difference_while_both_groups_are_writing() {
    let (old, new) = tokio::join!(fresh_cluster("old", "writing_o"), fresh_cluster("new", "writing_n"));
    let broker = Broker::new("writing");
    let start = two_hours_ago();
    let produce_config = ProduceConfig {
        brokers: broker.bootstrap.clone(),
        topic_prefix: broker.prefix.clone(),
        messages: 30_000,
        rate: Some(2_500),
        workload: WorkloadConfig::new(11, start * 1000),
    };
    let producer = tokio::spawn(async move { produce(&produce_config, &CancellationToken::new()).await });
    let (a, b) = (Group::start(&old, &broker, "a"), Group::start(&new, &broker, "b"));

    let config = WindowsConfig {
        old: old.config.clone(),
        new: new.config.clone(),
        range: Range::Between(start, start + 3600),
        recheck_all: false,
    };
    let (mut runs, mut saw_unsettled, mut saw_equal) = (0, false, false);
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
        saw_equal |= outcome.run.windows_equal > 0 && outcome.run.windows_not_settled > 0;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    producer.await.expect("join").expect("produce");
    assert!(runs >= 6, "only {runs} runs while writing");
    assert!(saw_unsettled, "no run saw a window still settling");
    assert!(saw_equal, "no run proved a window equal while later ones were still settling");

    wait_caught_up(&old.config, &broker, Duration::from_secs(180)).await;
    wait_caught_up(&new.config, &broker, Duration::from_secs(180)).await;
    wait_settled(&old.config, start, start + 3600, Duration::from_secs(60)).await;
    wait_settled(&new.config, start, start + 3600, Duration::from_secs(60)).await;
    let last = run_windows(&config, &CancellationToken::new()).await.expect("final run");
    assert_eq!(last.run.outcome, "equal", "{:#?}", last.differences);
    assert_eq!((last.run.windows_equal, last.run.windows_not_settled, last.run.windows_not_covered), (121, 0, 0));
    assert!(last.run.windows_reused > 0, "windows proven equal while writing are not digested again");
    a.stop().await;
    b.stop().await;
    support::common::assert_nothing_truncated(&broker).await;
    support::drop_databases(&old.config).await;
    support::drop_databases(&new.config).await;
}
