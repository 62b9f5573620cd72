//! Gates against real servers: the SQL-backed verify collector over
//! fixtures in the verify crate's own tables (its DDL), and `switch-reads` refusing with
//! the gate's name and what would clear it.

mod common;

use common::{control, cutover_command};
use cutover::gates::{evaluate, Gate, GateInputs, ShadowInput, Thresholds};
use cutover::group::Groups;
use cutover::state::ShadowTotals;
use cutover::TableGroup;
use mysql_async::prelude::Queryable;
use testkit::{drop_databases, fresh_cluster};

async fn insert_run(conn: &mut mysql_async::Conn, kind: &str, target: &str, outcome: &str, finished_ago_s: i64) -> u64 {
    conn.exec_drop(
        "INSERT INTO dw_verify_runs (kind, target, old_cluster, new_cluster, started_at, finished_at, outcome, \
         windows_equal, windows_different, windows_not_settled, windows_not_covered, rows_compared, differences) \
         VALUES (?, ?, 'old', 'new', NOW(3) - INTERVAL ? SECOND, NOW(3) - INTERVAL ? SECOND, ?, 120, ?, 3, 0, 5000, ?)",
        (
            kind,
            target,
            finished_ago_s + 30,
            finished_ago_s,
            outcome,
            u8::from(outcome == "different"),
            u8::from(outcome == "different"),
        ),
    )
    .await
    .expect("insert run");
    conn.last_insert_id().expect("run id")
}

/// Everything but verify green, so the verify gate alone decides.
fn inputs_with(verify: Result<cutover::gates::VerifyInput, String>) -> GateInputs {
    let group = |c: &str| cutover::gates::GroupLag { cluster: c.into(), partitions: vec![], owners_unknown: None };
    let now = chrono::Utc::now();
    let kept = |cluster: &str| retention::readiness::ClusterRetention {
        cluster: cluster.into(),
        retention_secs: 86_400,
        partition_secs: 3600,
        oldest_retained: None,
        policy_oldest: now,
    };
    let ready = retention::Readiness {
        now,
        ready: true,
        ready_at: None,
        required_from: now,
        covered_from: Some(now),
        uncovered_partitions: vec![],
        old: kept("old"),
        new: kept("new"),
        explanation: "test".into(),
    };
    GateInputs {
        now,
        retention: Ok(ready),
        verify,
        copier: Ok(vec![]),
        shadow: Ok(ShadowInput {
            period: std::time::Duration::from_secs(60),
            totals: ShadowTotals { compared: 100, ..ShadowTotals::default() },
        }),
        lag: Ok(cutover::gates::LagInput { old: group("old"), new: group("new") }),
    }
}

fn insights() -> Groups {
    Groups::of(&pipeline::Pipeline::insights())
}

fn verify_gate(inputs: &GateInputs, groups: &[TableGroup]) -> cutover::gates::GateResult {
    evaluate(inputs, &Thresholds::default(), &insights(), groups)
        .into_iter()
        .find(|g| g.gate == Gate::Verify)
        .expect("verify gate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_collector_reads_the_verify_tables_and_the_gate_follows_them() {
    let new = fresh_cluster("new", "gates_verify").await;
    let pool = control(&new);
    let copied = vec!["query_patterns".to_owned()];

    // Before the comparators ever ran (no tables): refused, naming the gate and the remedy.
    let input = cutover::collect::verify_input(&pool, &copied).await.expect("collect");
    let gate = verify_gate(&inputs_with(Ok(input)), &[insights().parse("timeseries").expect("group")]);
    assert!(!gate.passed && gate.detail.contains("no finished equivalence run"), "{gate}");

    let mut conn = pool.get_conn().await.expect("conn");
    verify::history::ensure_tables(&pool).await.expect("the verify crate's tables");
    let run = insert_run(&mut conn, "windows", "windows", "equal", 600).await;
    // A newer run still running does not count; an older different one is superseded.
    insert_run(&mut conn, "windows", "windows", "different", 7200).await;
    conn.exec_drop(
        "INSERT INTO dw_verify_runs (kind, target, old_cluster, new_cluster, started_at, outcome) \
         VALUES ('windows', 'windows', 'old', 'new', NOW(3), 'running')",
        (),
    )
    .await
    .expect("running run");
    conn.exec_drop(
        "INSERT INTO dw_verify_windows (tbl, window_start, window_end, state, old_rows, new_rows, run_id, checked_at) VALUES ('query_stats_hour', '2026-11-20 10:00:00', '2026-11-20 11:00:00', \
         'different', 40, 39, ?, NOW(3)), ('query_stats_minute', '2026-11-20 10:00:00', '2026-11-20 10:01:00', 'equal', 3, 3, ?, NOW(3))",
        (run, run),
    )
    .await
    .expect("windows");

    let input = cutover::collect::verify_input(&pool, &copied).await.expect("collect");
    assert_eq!(input.windows_run.as_ref().map(|r| (r.run_id, r.outcome.as_str())), Some((run, "equal")));
    assert_eq!(input.different.count, 1);
    let gate = verify_gate(&inputs_with(Ok(input)), &[insights().parse("timeseries").expect("group")]);
    assert!(!gate.passed, "{gate}");
    assert!(
        gate.detail.contains("1 windows marked different, e.g. query_stats_hour @ 2026-11-20T10:00:00+00:00"),
        "{gate}"
    );
    assert!(gate.to_clear.as_deref().is_some_and(|c| c.contains("re-verify")), "{gate}");

    // The difference is repaired and re-verified: the time-series gate clears.
    conn.query_drop("UPDATE dw_verify_windows SET state = 'equal' WHERE tbl = 'query_stats_hour'").await.expect("fix");
    let input = cutover::collect::verify_input(&pool, &copied).await.expect("collect");
    let gate = verify_gate(&inputs_with(Ok(input.clone())), &[insights().parse("timeseries").expect("group")]);
    assert!(gate.passed, "{gate}");
    // query_patterns has no full diff yet.
    let gate = verify_gate(&inputs_with(Ok(input)), &[insights().parse("query_patterns").expect("group")]);
    assert!(!gate.passed && gate.detail.contains("no finished full diff of copied table query_patterns"), "{gate}");

    insert_run(&mut conn, "table", "query_patterns", "different", 60).await;
    let input = cutover::collect::verify_input(&pool, &copied).await.expect("collect");
    let gate = verify_gate(&inputs_with(Ok(input)), &[insights().parse("query_patterns").expect("group")]);
    assert!(!gate.passed && gate.detail.contains("finished different: 1 differences"), "{gate}");
    insert_run(&mut conn, "table", "query_patterns", "equal", 10).await;
    let input = cutover::collect::verify_input(&pool, &copied).await.expect("collect");
    assert!(verify_gate(&inputs_with(Ok(input)), &insights().all()).passed);

    // The newest finished windows run found a difference: refused again.
    insert_run(&mut conn, "windows", "windows", "different", 5).await;
    let input = cutover::collect::verify_input(&pool, &copied).await.expect("collect");
    let gate = verify_gate(&inputs_with(Ok(input)), &insights().all());
    assert!(!gate.passed && gate.detail.contains("finished different"), "{gate}");

    drop(conn);
    pool.disconnect().await.expect("disconnect");
    drop_databases(&new.config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_reads_refuses_naming_each_failing_gate_and_changes_nothing() {
    let old = fresh_cluster("old", "gates_cli").await;
    let new = fresh_cluster("new", "gates_cli").await;
    let pool = control(&new);
    {
        let mut conn = pool.get_conn().await.expect("conn");
        verify::history::ensure_tables(&pool).await.expect("the verify crate's tables");
        let run = insert_run(&mut conn, "windows", "windows", "equal", 60).await;
        conn.exec_drop(
            "INSERT INTO dw_verify_windows (tbl, window_start, window_end, state, old_rows, new_rows, run_id, checked_at) VALUES ('slow_queries', '2026-11-20 10:00:00', '2026-11-20 11:00:00', \
             'different', 4, 3, ?, NOW(3))",
            (run,),
        )
        .await
        .expect("window");
    }

    let out = cutover_command(&old, &new, &["switch-reads", "--to", "new"]).await;
    assert_eq!(out.code, Some(2), "refusal exits 2\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    let err = &out.stderr;
    assert!(err.contains("refused by the gates"), "{err}");
    for (gate, clear) in [
        ("verify", "re-verify"),
        ("copier", "never started from this old shard"),
        ("shadow_reads", "--shadow-fraction"),
        ("consumer_lag", "no --brokers given"),
        ("retention", "does not cover the retention window"),
    ] {
        let line =
            err.lines().position(|l| l.contains(&format!("FAIL {gate}"))).unwrap_or_else(|| panic!("{gate}: {err}"));
        let explained: String = err.lines().skip(line).take(2).collect::<Vec<_>>().join("\n");
        assert!(explained.contains(clear) && explained.contains("to clear:"), "{gate}: {explained}");
    }
    assert!(err.contains("1 windows marked different, e.g. slow_queries"), "{err}");

    // The routing did not move, and the refusal left no switch in the audit log.
    let routing = cutover::state::load(&pool).await.expect("routing");
    assert!(routing.groups.iter().all(|g| g.active == old.config.name && g.pending.is_none()), "{routing:?}");
    let audit = cutover::state::audit_log(&pool, 50).await.expect("audit");
    assert!(audit.iter().all(|a| a.action == "init"), "{audit:?}");

    // --force needs a reason; a dry run changes nothing either.
    let out = cutover_command(&old, &new, &["switch-reads", "--to", "new", "--force"]).await;
    assert_eq!(out.code, Some(2), "clap usage error: {}", out.stderr);
    assert!(out.stderr.contains("--reason"), "{}", out.stderr);
    let out = cutover_command(&old, &new, &["switch-reads", "--to", "new", "--dry-run"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("would switch timeseries from") && out.stdout.contains("a real run would refuse"),
        "{}",
        out.stdout
    );
    // complete refuses while reads are on the old cluster.
    let out = cutover_command(&old, &new, &["complete"]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("still reads from old: run switch-reads --to new first"), "{}", out.stderr);
    let routing_after = cutover::state::load(&pool).await.expect("routing");
    assert_eq!(routing_after.version(), routing.version());

    // Forced with a reason: switched and audited as forced, with who and why.
    let out = cutover_command(&old, &new, &["switch-reads", "--to", "new", "--force", "--reason", "drill"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("(forced)") && out.stdout.contains("switch took"), "{}", out.stdout);
    let audit = cutover::state::audit_log(&pool, 50).await.expect("audit");
    let switch = audit.iter().find(|a| a.action == "switch").expect("switch audited");
    assert!(switch.forced && switch.reason == "drill" && switch.changed_by == "cutover-test", "{switch:?}");
    assert!(switch.detail.contains("\"passed\":false"), "gates recorded: {}", switch.detail);

    pool.disconnect().await.expect("disconnect");
    drop_databases(&old.config).await;
    drop_databases(&new.config).await;
}

/// Clusters of another pipeline: the routing rows, the gates and the group
/// names follow its description (api: timeseries and routes, whose copied
/// table is api_routes), and two cluster files on different pipelines are
/// refused before anything is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_pipelines_groups_drive_the_routing_and_the_gates() {
    let api = testkit::pipeline_file("api");
    let old = testkit::fresh_cluster_for("old", "gates_api", &api).await;
    let new = testkit::fresh_cluster_for("new", "gates_api", &api).await;

    let out = cutover_command(&old, &new, &["status", "--json", "--table-group", "routes"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("status json");
    let mut groups: Vec<&str> =
        report["routing"]["groups"].as_array().expect("groups").iter().filter_map(|g| g["group"].as_str()).collect();
    groups.sort_unstable();
    assert_eq!(groups, ["routes", "timeseries"], "the routing state holds the description's groups");
    let gates = report["gates"].as_array().expect("gates");
    let names: Vec<&str> = gates.iter().filter_map(|g| g["gate"].as_str()).collect();
    assert_eq!(names, ["verify", "copier", "shadow_reads", "consumer_lag"], "routes is copied, not aged in");
    let detail = |gate: &str| {
        gates.iter().find(|g| g["gate"] == gate).and_then(|g| g["detail"].as_str()).unwrap_or_default().to_owned()
    };
    assert!(detail("verify").contains("full diff of copied table api_routes"), "{}", detail("verify"));
    assert!(detail("copier").contains("api_routes/"), "{}", detail("copier"));

    let out = cutover_command(&old, &new, &["switch-reads", "--to", "new", "--table-group", "query_patterns"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("unknown table group \"query_patterns\" (this pipeline's groups: timeseries, routes)"),
        "{}",
        out.stderr
    );

    let insights = fresh_cluster("new", "gates_api_mixed").await;
    let out = cutover_command(&old, &insights, &["status"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("the two cluster files describe different table groups"), "{}", out.stderr);

    for c in [&old, &new, &insights] {
        drop_databases(&c.config).await;
    }
}
