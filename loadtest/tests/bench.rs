//! The bench's second-pipeline line, short: the api pipeline's blind rollup
//! written by one group into the stack's new shards, against the INSERT
//! ceiling of that table on the same shards. Needs the local stack and the
//! consumer binary (`cargo build -p consumer`).

use loadtest::bench::{pipeline_line, BenchConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_line_measures_its_blind_rollup_against_the_insert_ceiling_of_the_same_shards() {
    let new = testkit::fresh_cluster("new", "benchline").await;
    let config = BenchConfig {
        // The line runs on a broker of its own: the main bench's is not used.
        kafka: topics::kafka::KafkaConfig::plaintext("127.0.0.1:9"),
        kafka_config: None,
        topic_prefix: format!("{}.", testkit::unique("benchline")),
        messages: 3_000,
        old: new.file.clone(),
        new: new.file.clone(),
        consumer_bin: testkit::consumer_binary(),
        insert_rows: 8_000,
    };
    let line = pipeline_line(&config, &testkit::pipeline_file("api")).await.expect("the api line");
    assert_eq!(
        (line.pipeline.as_str(), line.table.as_str(), line.write_path.as_str()),
        ("api", "api_route_minute", "blind")
    );
    assert_eq!(line.messages, 3_000);
    assert!(line.rows > 0.0 && line.rows < 3_000.0, "coalesced rows of the table: {}", line.rows);
    assert!(line.insert_ceiling_rows_per_s > 0.0 && line.rows_per_s > 0.0 && line.ratio > 0.0, "{line:?}");
    let json = serde_json::to_string(&line).expect("json");
    assert!(!json.contains('\n'), "one line");
    let back: serde_json::Value = serde_json::from_str(&json).expect("parses");
    for field in ["insert_ceiling_rows_per_s", "rows_per_s", "steady_rows_per_s", "ratio", "steady_ratio"] {
        assert!(back[field].is_number(), "{field} in {json}");
    }
    // The repointed cluster file beside the stack's is gone.
    let dir = new.file.parent().expect("dir");
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".bench-pipeline-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `dualwrite-loadtest bench` against an authenticated Kafka: Nisshi
/// requiring TLS and SCRAM-SHA-512, the bench given only its user's
/// `[kafka]` file (`--kafka-config`, as its consumer processes are). Needs
/// the local stack, Nisshi (`compose/local/nisshi`) and every binary
/// (`cargo build --release --bins`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_runs_over_tls_and_scram_through_its_users_kafka_file() {
    use testkit::nisshi::{password, Nisshi, User};
    let pw = password();
    let user = User { name: "dualwrite-bench", password: &pw };
    let nisshi = Nisshi::start_secured(&[&user]);
    let kafka_file = nisshi.kafka_file("bench", &user, "");
    let old = testkit::fresh_cluster("old", "bench_tls").await;
    let new = testkit::fresh_cluster("new", "bench_tls").await;
    let json = nisshi.dir().join("bench.json");
    let messages = 2_000u64;
    let out = tokio::process::Command::new(testkit::workspace_binary("dualwrite-loadtest"))
        .arg("bench")
        .arg("--kafka-config")
        .arg(&kafka_file)
        .arg("--old")
        .arg(&old.file)
        .arg("--new")
        .arg(&new.file)
        .args(["--messages", &messages.to_string(), "--insert-rows", "2000", "--json"])
        .arg(&json)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(900), out).await.expect("bench ended").expect("bench");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench: {}\n{text}", out.status);
    assert!(text.contains(&format!("json: {}", json.display())), "{text}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("bench.json")).expect("bench.json parses");
    assert_eq!(report["messages"], messages);
    assert!(report["produce_msgs_per_s"].as_f64().is_some_and(|r| r > 0.0), "{report}");
    assert!(report["raw_consume_msgs_per_s"].as_f64().is_some_and(|r| r > 0.0), "{report}");
    // kcat would need the password on its argv: skipped on an authenticated broker.
    assert!(report["kcat_msgs_per_s"].is_null(), "{report}");
    assert_eq!(report["no_sink"]["messages"], messages, "{report}");
    // Every group applied every message (the bench ends a run only then, and
    // fails after 10 minutes) and wrote rows of every table.
    assert_eq!(report["one_group"]["messages"], messages, "{report}");
    assert_eq!(report["two_groups"]["messages"], 2 * messages, "{report}");
    for run in ["one_group", "two_groups"] {
        assert!(report[run]["rows_per_s"].as_f64().is_some_and(|r| r > 0.0), "{run}: {report}");
        let tables = report[run]["tables"].as_array().cloned().unwrap_or_default();
        assert!(!tables.is_empty(), "{run}: {report}");
        for table in &tables {
            assert!(table["rows"].as_f64().is_some_and(|r| r > 0.0), "{run}: no rows in {table}");
        }
    }
    assert!(!text.contains(&pw) && !nisshi.log().contains(&pw), "the password in a log");
    testkit::drop_databases(&old.config).await;
    testkit::drop_databases(&new.config).await;
}
