//! The nightly daemon on a compressed schedule (a run every second) against
//! two real clusters fed the same stream: dated reports, the last N kept,
//! two daemons on one control database never running at the same time, and
//! the periodic recheck-all remembered across restarts.

mod support;

use std::path::Path;
use std::time::Duration;

use support::feed_both;
use tokio_util::sync::CancellationToken;
use verify::nightly::{dated_dirs, run, NightlyConfig, NightlyStats, RunSummary, Schedule, SUMMARY};

fn summaries(out: &Path) -> Vec<RunSummary> {
    dated_dirs(out)
        .expect("list")
        .into_iter()
        .map(|(_, dir)| {
            for file in ["report.json", "report.md", "report.html", "verify.prom"] {
                assert!(dir.join(file).is_file(), "{} has no {file}", dir.display());
            }
            serde_json::from_slice(&std::fs::read(dir.join(SUMMARY)).expect("read summary")).expect("summary json")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_on_schedule_never_overlapping_keeping_the_last_reports() {
    let fed = feed_both("nightly", 3000).await;
    let (a_out, b_out) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let config = |out: &Path, keep: usize, runs: u64| NightlyConfig {
        old: fed.old.config.clone(),
        new: fed.new.config.clone(),
        schedule: Schedule::Every(Duration::from_secs(1)),
        since: Duration::from_secs(3 * 3600),
        // weekly in production; here: only a first run is due one
        recheck_all_every: Some(Duration::from_secs(3600)),
        out: out.to_path_buf(),
        keep,
        page_rows: 500,
        max_runs: Some(runs),
    };

    // Two daemons (two replicas) on the same control database.
    let (a, b) = tokio::join!(
        run(config(a_out.path(), 10, 3), CancellationToken::new()),
        run(config(b_out.path(), 10, 3), CancellationToken::new()),
    );
    let (a, b) = (a.expect("daemon a"), b.expect("daemon b"));
    assert_eq!(a.failed + b.failed, 0, "{a:?} {b:?}");
    assert_eq!(a.completed + a.busy, 3);
    assert_eq!(b.completed + b.busy, 3);
    assert!(a.completed + b.completed >= 2, "{a:?} {b:?}");
    let mut all: Vec<RunSummary> = summaries(a_out.path()).into_iter().chain(summaries(b_out.path())).collect();
    assert_eq!(all.len() as u64, a.completed + b.completed);
    for s in &all {
        assert_eq!(s.outcome, "equal", "{s:?}");
        assert_eq!(s.differences, 0);
    }
    // never overlapping: sorted by start, each starts after the previous finished
    all.sort_by(|x, y| x.started_at.cmp(&y.started_at));
    for pair in all.windows(2) {
        assert!(pair[1].started_at >= pair[0].finished_at, "runs overlap: {:?} and {:?}", pair[0], pair[1]);
    }
    // the first run of each daemon rechecks everything, later ones reuse proven windows
    let a_runs = summaries(a_out.path());
    if let Some((first, rest)) = a_runs.split_first() {
        assert!(first.recheck_all, "{first:?}");
        assert!(rest.iter().all(|s| !s.recheck_all), "{rest:?}");
    }

    // A restart keeps 2: the oldest are deleted, and the recheck-all is remembered.
    std::fs::write(a_out.path().join("operator-notes.txt"), "not a run").expect("write");
    let before = dated_dirs(a_out.path()).expect("list").len() as u64;
    let again = run(config(a_out.path(), 2, 2), CancellationToken::new()).await.expect("daemon a again");
    assert_eq!(again, NightlyStats { completed: 2, busy: 0, failed: 0 });
    let kept = summaries(a_out.path());
    assert_eq!(kept.len(), 2, "kept {kept:?} of {}", before + 2);
    // Remembered across the restart: only an output directory whose daemon
    // never completed a run (the other replica took every slot) rechecks again.
    let rechecked = kept.iter().filter(|s| s.recheck_all).count();
    assert_eq!(rechecked, usize::from(a.completed == 0), "{a:?}, kept {kept:?}");
    assert!(a_out.path().join("operator-notes.txt").is_file());
    let names: Vec<String> = std::fs::read_dir(a_out.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".partial")), "{names:?}");

    testkit::drop_databases(&fed.old.config).await;
    testkit::drop_databases(&fed.new.config).await;
}
