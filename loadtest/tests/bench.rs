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
