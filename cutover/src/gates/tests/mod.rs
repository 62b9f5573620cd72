use chrono::TimeZone;

use verify::history::WindowRef;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).single().expect("time")
}

fn run(kind: &str, target: &str, outcome: &str, finished_ago_s: i64) -> RunRecord {
    RunRecord {
        run_id: 7,
        kind: kind.into(),
        target: target.into(),
        started_at_ms: (now() - chrono::Duration::seconds(finished_ago_s + 60)).timestamp_millis(),
        finished_at_ms: Some((now() - chrono::Duration::seconds(finished_ago_s)).timestamp_millis()),
        outcome: verify::history::RunOutcome::parse(outcome).expect("known outcome"),
        windows_equal: 100,
        windows_different: u64::from(outcome == "different"),
        windows_not_settled: 2,
        windows_not_covered: 0,
        differences: u64::from(outcome == "different") * 3,
        ..RunRecord::default()
    }
}

fn stream(shard: &str, phase: Phase, lag_s: f64) -> StreamStatus {
    StreamStatus {
        table: "query_patterns".into(),
        source_shard: shard.into(),
        phase,
        copy_done: true,
        rows_copied: 1000,
        rows_total: Some(1000),
        rows_per_sec: None,
        eta_seconds: None,
        events_applied: 10,
        lag_events: Some(3),
        lag_seconds: Some(lag_s),
        binlog_position: None,
        gtid: None,
        error: None,
        error_kind: None,
        updated_at: now() - chrono::Duration::seconds(2),
    }
}

fn partition(partition: i32, lag: i64) -> PartitionLag {
    PartitionLag {
        topic: "query-stats".into(),
        partition,
        end_offset: 1000 + lag,
        next_offset: Some(1000),
        lag_messages: Some(lag),
        lag_seconds: Some(0.5),
        covered_from_ms: Some(0),
        owner: Some("host:1".into()),
    }
}

/// 32 partitions, the worst `lag` messages behind.
fn group(cluster: &str, lag: i64) -> GroupLag {
    let mut partitions: Vec<PartitionLag> = (0..32).map(|p| partition(p, 0)).collect();
    partitions[5] = partition(5, lag);
    GroupLag { cluster: cluster.into(), partitions, owners_unknown: None }
}

fn readiness(ready: bool, ready_at: Option<DateTime<Utc>>, explanation: &str) -> Readiness {
    let kept = |cluster: &str| retention::readiness::ClusterRetention {
        cluster: cluster.into(),
        retention_secs: 86_400,
        partition_secs: 3600,
        oldest_retained: None,
        policy_oldest: now() - chrono::Duration::days(1),
    };
    Readiness {
        now: now(),
        ready,
        ready_at,
        required_from: now() - chrono::Duration::days(1),
        covered_from: None,
        uncovered_partitions: vec![],
        old: kept("old"),
        new: kept("new"),
        explanation: explanation.into(),
    }
}

/// Every gate green.
fn green() -> GateInputs {
    GateInputs {
        now: now(),
        retention: Ok(readiness(true, Some(now()), "covered")),
        verify: Ok(VerifyInput {
            windows_run: Some(run("windows", "windows", "equal", 3600)),
            different: DifferentWindows::default(),
            table_runs: vec![("query_patterns".into(), Some(run("table", "query_patterns", "equal", 600)))],
        }),
        copier: Ok(vec![stream("-80", Phase::Replicating, 0.2), stream("80-", Phase::Replicating, 1.0)]),
        shadow: Ok(ShadowInput {
            period: Duration::from_secs(900),
            totals: ShadowTotals {
                compared: 500,
                mismatches: 0,
                errors: 0,
                skipped: 20,
                routers: 2,
                last_mismatch: None,
            },
        }),
        lag: Ok(LagInput { old: group("old", 10), new: group("new", 200) }),
    }
}

fn insights() -> Groups {
    Groups::of(&pipeline::Pipeline::insights())
}

fn timeseries() -> TableGroup {
    insights().parse("timeseries").expect("an insights group")
}

fn patterns() -> TableGroup {
    insights().parse("query_patterns").expect("an insights group")
}

fn failed(results: &[GateResult]) -> Vec<&GateResult> {
    results.iter().filter(|r| !r.passed).collect()
}

fn only_failure(inputs: &GateInputs, groups: &[TableGroup]) -> GateResult {
    let results = evaluate(inputs, &Thresholds::default(), &insights(), groups);
    let bad = failed(&results);
    assert_eq!(bad.len(), 1, "{results:#?}");
    bad[0].clone()
}

#[test]
fn all_green_passes_every_gate_of_both_groups() {
    let results = evaluate(&green(), &Thresholds::default(), &insights(), &insights().all());
    assert!(failed(&results).is_empty(), "{results:#?}");
    let gates: Vec<Gate> = results.iter().map(|r| r.gate).collect();
    assert_eq!(gates, [Gate::Retention, Gate::Verify, Gate::Copier, Gate::ShadowReads, Gate::ConsumerLag]);
}

#[test]
fn gates_apply_per_table_group() {
    let gates = |groups: &[TableGroup]| -> Vec<Gate> {
        evaluate(&green(), &Thresholds::default(), &insights(), groups).iter().map(|r| r.gate).collect()
    };
    assert_eq!(gates(&[timeseries()]), [Gate::Retention, Gate::Verify, Gate::ShadowReads, Gate::ConsumerLag]);
    assert_eq!(gates(&[patterns()]), [Gate::Verify, Gate::Copier, Gate::ShadowReads, Gate::ConsumerLag]);
}

#[test]
fn refuses_while_the_new_cluster_does_not_cover_retention() {
    let mut inputs = green();
    let ready_at = now() + chrono::Duration::days(3);
    inputs.retention = Ok(readiness(false, Some(ready_at), "covered from 5 days ago"));
    let r = only_failure(&inputs, &insights().all());
    assert_eq!(r.gate, Gate::Retention);
    assert!(r.detail.contains("does not cover the retention window"), "{r}");
    assert!(r.to_clear.as_deref().is_some_and(|c| c.contains(&ready_at.to_rfc3339())), "{r}");
    // A query_patterns-only switch does not depend on retention.
    assert!(failed(&evaluate(&inputs, &Thresholds::default(), &insights(), &[patterns()])).is_empty());
}

#[test]
fn refuses_while_a_verify_difference_is_open() {
    let mut inputs = green();
    let Ok(v) = &mut inputs.verify else { panic!("verify") };
    v.different = DifferentWindows {
        count: 2,
        first: vec![WindowRef { tbl: "query_stats_hour".into(), window_start: now().timestamp(), run_id: 6 }],
    };
    let r = only_failure(&inputs, &insights().all());
    assert_eq!(r.gate, Gate::Verify);
    assert!(r.detail.contains("2 windows marked different, e.g. query_stats_hour"), "{r}");
    assert!(r.to_clear.as_deref().is_some_and(|c| c.contains("re-verify")), "{r}");
}

#[test]
fn refuses_on_a_different_old_or_missing_equivalence_run() {
    let cases: [(Option<RunRecord>, &str, &str); 3] = [
        (Some(run("windows", "windows", "different", 60)), "finished different", "re-run the window comparator"),
        (
            Some(run("windows", "windows", "equal", 30 * 3600)),
            "is 1day 6h old (max 1day 2h)",
            "re-run the window comparator",
        ),
        (None, "no finished equivalence run", "run the window comparator"),
    ];
    for (windows_run, detail, clear) in cases {
        let mut inputs = green();
        let Ok(v) = &mut inputs.verify else { panic!("verify") };
        v.windows_run = windows_run;
        let r = only_failure(&inputs, &[timeseries()]);
        assert_eq!(r.gate, Gate::Verify);
        assert!(r.detail.contains(detail), "{detail}: {r}");
        assert!(r.to_clear.as_deref().is_some_and(|c| c.contains(clear)), "{clear}: {r}");
    }
}

#[test]
fn refuses_when_a_copied_table_diff_is_not_equal() {
    let mut inputs = green();
    let Ok(v) = &mut inputs.verify else { panic!("verify") };
    v.table_runs = vec![("query_patterns".into(), Some(run("table", "query_patterns", "different", 60)))];
    let r = only_failure(&inputs, &[patterns()]);
    assert_eq!(r.gate, Gate::Verify);
    assert!(r.detail.contains("full diff of query_patterns"), "{r}");
    // The time-series switch does not depend on the copied table's diff.
    assert!(failed(&evaluate(&inputs, &Thresholds::default(), &insights(), &[timeseries()])).is_empty());
}

#[test]
fn refuses_while_the_copier_lags_or_is_not_replicating() {
    let mut inputs = green();
    inputs.copier = Ok(vec![stream("-80", Phase::Replicating, 0.2), stream("80-", Phase::Replicating, 42.0)]);
    let r = only_failure(&inputs, &[patterns()]);
    assert_eq!(r.gate, Gate::Copier);
    assert!(r.detail.contains("stream query_patterns/80- lags 42.0 s"), "{r}");
    assert!(r.to_clear.as_deref().is_some_and(|c| c.contains("catch up")), "{r}");

    inputs.copier = Ok(vec![stream("-80", Phase::CatchingUp, 0.0)]);
    let r = only_failure(&inputs, &[patterns()]);
    assert!(r.detail.contains("is catching_up"), "{r}");

    inputs.copier = Ok(vec![]);
    let r = only_failure(&inputs, &[patterns()]);
    assert_eq!(r.to_clear.as_deref(), Some("start the copier for query_patterns"));

    let mut stale = stream("-80", Phase::Replicating, 0.0);
    stale.updated_at = now() - chrono::Duration::minutes(10);
    inputs.copier = Ok(vec![stale]);
    let r = only_failure(&inputs, &[patterns()]);
    assert!(r.detail.contains("last reported 10m ago"), "{r}");
}

#[test]
fn refuses_on_shadow_mismatches_or_too_few_comparisons() {
    let mut inputs = green();
    inputs.shadow = Ok(ShadowInput {
        period: Duration::from_secs(900),
        totals: ShadowTotals {
            compared: 500,
            mismatches: 3,
            errors: 0,
            skipped: 0,
            routers: 1,
            last_mismatch: Some("top_patterns db 42".into()),
        },
    });
    let r = only_failure(&inputs, &insights().all());
    assert_eq!(r.gate, Gate::ShadowReads);
    assert!(r.detail.contains("3 of 500 shadow reads mismatched in the last 15m") && r.detail.contains("db 42"), "{r}");

    inputs.shadow = Ok(ShadowInput {
        period: Duration::from_secs(900),
        totals: ShadowTotals { compared: 3, ..ShadowTotals::default() },
    });
    let r = only_failure(&inputs, &insights().all());
    assert!(r.detail.contains("need 50"), "{r}");
}

#[test]
fn refuses_while_a_group_lags() {
    let mut inputs = green();
    inputs.lag = Ok(LagInput { old: group("old", 10), new: group("new", 80_000) });
    let r = only_failure(&inputs, &insights().all());
    assert_eq!(r.gate, Gate::ConsumerLag);
    assert!(r.detail.contains("the group writing new lags 80000 messages"), "{r}");
    let mut unstarted = group("old", 0);
    for p in &mut unstarted.partitions[..3] {
        (p.next_offset, p.lag_messages, p.lag_seconds) = (None, None, None);
    }
    inputs.lag = Ok(LagInput { old: unstarted, new: group("new", 0) });
    let r = only_failure(&inputs, &insights().all());
    assert!(r.detail.contains("has not applied 3 of 32 partitions"), "{r}");
}

#[test]
fn an_uncollected_input_fails_its_gate_and_says_why() {
    let mut inputs = green();
    inputs.copier = Err("copier status unreadable: connection refused".into());
    let r = only_failure(&inputs, &insights().all());
    assert_eq!(r.gate, Gate::Copier);
    assert_eq!(r.detail, "not evaluated: copier status unreadable: connection refused");
    let text = r.to_string();
    assert!(text.starts_with("FAIL copier") && text.contains("to clear:"), "{text}");
}

/// Another pipeline's groups gate its own copied tables: the Insights
/// table's diff and streams say nothing about the api pipeline's routes.
#[test]
fn another_pipeline_gates_its_own_copied_tables() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/api.toml");
    let api = Groups::of(&pipeline::Pipeline::load(&path).expect("api pipeline"));
    let routes = api.parse("routes").expect("the api pipeline's copied group");
    let results = evaluate(&green(), &Thresholds::default(), &api, &[routes]);
    let gates: Vec<Gate> = results.iter().map(|r| r.gate).collect();
    assert_eq!(gates, [Gate::Verify, Gate::Copier, Gate::ShadowReads, Gate::ConsumerLag]);
    let bad = failed(&results);
    assert_eq!(bad.len(), 2, "{results:#?}");
    assert!(bad[0].detail.contains("no finished full diff of copied table api_routes"), "{}", bad[0]);
    assert!(bad[1].detail.contains("no copier stream for api_routes"), "{}", bad[1]);
    let timeseries = api.parse("timeseries").expect("the api pipeline's aged group");
    let aged: Vec<Gate> =
        evaluate(&green(), &Thresholds::default(), &api, &[timeseries]).iter().map(|r| r.gate).collect();
    assert_eq!(aged, [Gate::Retention, Gate::Verify, Gate::ShadowReads, Gate::ConsumerLag]);
}
