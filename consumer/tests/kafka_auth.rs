//! Every job against an authenticated Kafka: Nisshi requiring TLS and
//! SCRAM-SHA-512. A correct `[kafka]` file creates the topics, produces and
//! consumes; a wrong setting stops the job at start with one line naming the
//! broker, the cause and the setting, and a non-zero exit; a broker that is
//! down is waited for, not a reason to exit.

use testkit as common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::nisshi::{password, Nisshi, User};
use common::{assert_matches_truth, fresh_cluster, wait_applied, workspace_binary};

/// How long a misconfigured job may take to exit (the preflight's verdict
/// comes within a second or two of reaching the broker).
const FAIL_FAST: Duration = Duration::from_secs(60);

/// A job run to its end (or killed at `timeout`): exit status and stderr.
async fn run_job(bin: &Path, args: &[&str], timeout: Duration) -> (Option<std::process::ExitStatus>, String) {
    let child = tokio::process::Command::new(bin)
        .args(args)
        .env("RUST_LOG", "info,rdkafka=warn")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn job");
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("job output");
            let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
            (Some(out.status), text)
        }
        Err(_) => (None, String::new()),
    }
}

/// The jobs' topic flags: a fresh prefix per test.
fn prefix(tag: &str) -> String {
    format!("{}.", common::unique(tag))
}

async fn create_topics(kafka_file: &Path, prefix: &str) {
    let bin = workspace_binary("dualwrite-topics");
    let file = kafka_file.to_str().expect("utf-8 path");
    let args = ["create", "--kafka-config", file, "--topic-prefix", prefix, "--partitions", "4", "--replication", "1"];
    let (status, log) = run_job(&bin, &args, FAIL_FAST).await;
    assert!(status.is_some_and(|s| s.success()), "topics create: {status:?}\n{log}");
}

async fn produce(
    kafka_file: &Path,
    prefix: &str,
    messages: u64,
    truth: &Path,
) -> (Option<std::process::ExitStatus>, String) {
    let bin = workspace_binary("dualwrite-loadtest");
    let args = [
        "produce",
        "--kafka-config",
        kafka_file.to_str().expect("utf-8 path"),
        "--topic-prefix",
        prefix,
        "--messages",
        &messages.to_string(),
        "--truth",
        truth.to_str().expect("utf-8 path"),
    ];
    run_job(&bin, &args, Duration::from_secs(300)).await
}

fn consumer_args<'a>(cluster: &'a Path, kafka_file: &'a Path, prefix: &'a str, group: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--group",
        group,
        "--cluster",
        cluster.to_str().expect("utf-8 path"),
        "--kafka-config",
        kafka_file.to_str().expect("utf-8 path"),
        "--topic-prefix",
        prefix,
        "--batch-max-wait",
        "100ms",
        "--metrics-addr",
        "127.0.0.1:0",
        "--kafka",
        "session.timeout.ms=6000",
    ]
}

/// A copy of `file` with `from` replaced by `to` (one wrong setting).
fn variant(file: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(file).expect("kafka file");
    assert!(text.contains(from), "{from} not in {text}");
    let out = file.with_file_name(format!("{name}.toml"));
    std::fs::write(&out, text.replace(from, to)).expect("write variant");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_kafka_file_creates_produces_and_consumes_over_tls_and_scram() {
    let (producer_pw, group_pw, cutover_pw) = (password(), password(), password());
    let producer = User { name: "producer", password: &producer_pw };
    let group_a = User { name: "group-a", password: &group_pw };
    let cutover = User { name: "cutover", password: &cutover_pw };
    let nisshi = Nisshi::start_secured(&[&producer, &group_a, &cutover]);
    let producer_file = nisshi.kafka_file("producer", &producer, "");
    let group_file = nisshi.kafka_file("group-a", &group_a, "");
    let cutover_file = nisshi.kafka_file("cutover", &cutover, "");
    let prefix = prefix("auth_ok");
    create_topics(&producer_file, &prefix).await;
    let truth_file = nisshi.dir().join("truth.json");
    let (status, log) = produce(&producer_file, &prefix, 3000, &truth_file).await;
    assert!(status.is_some_and(|s| s.success()), "produce: {status:?}\n{log}");
    assert!(!log.contains(&producer_pw), "a password in the producer's output");
    let truth = loadtest::truth::Truth::load(&truth_file).expect("ground truth");

    let cluster = fresh_cluster("old", "auth_ok").await;
    let group = common::unique("g_auth");
    let bin = common::consumer_binary();
    let mut child = tokio::process::Command::new(&bin)
        .args(consumer_args(&cluster.file, &group_file, &prefix, &group))
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(nisshi.dir().join("consumer.log")).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn consumer");
    wait_applied(&cluster.config, truth.messages, Duration::from_secs(180)).await;
    assert_matches_truth(&cluster.config, &truth).await;
    // Status reads the end offsets through the same file: lag known on every partition.
    let status_args = [
        "status",
        "--cluster",
        cluster.file.to_str().expect("utf-8 path"),
        "--kafka-config",
        group_file.to_str().expect("utf-8 path"),
        "--topic-prefix",
        &prefix,
        "--json",
    ];
    let (status, out) = run_job(&bin, &status_args, FAIL_FAST).await;
    assert!(status.is_some_and(|s| s.success()), "status: {status:?}\n{out}");
    assert!(out.contains("lag_messages") && !out.contains("\"lag_messages\": null"), "status without lag:\n{out}");

    // Dead letters go the same way: malformed messages produced through the
    // producer's file are dead-lettered, then replayed through it (the copies
    // are malformed too, so they come back as letters of their own).
    let cluster_arg = cluster.file.to_str().expect("utf-8 path");
    let producer_arg = producer_file.to_str().expect("utf-8 path");
    let bad_truth = nisshi.dir().join("bad.json");
    let malformed = [
        "produce",
        "--kafka-config",
        producer_arg,
        "--topic-prefix",
        &prefix,
        "--messages",
        "0",
        "--malformed",
        "2",
        "--truth",
        bad_truth.to_str().expect("utf-8 path"),
    ];
    let (status, log) = run_job(&workspace_binary("dualwrite-loadtest"), &malformed, FAIL_FAST).await;
    assert!(status.is_some_and(|s| s.success()), "produce malformed: {status:?}\n{log}");
    wait_letters(&bin, cluster_arg, 2).await;
    let replay = ["dead-letters", "replay", "--all", "--cluster", cluster_arg, "--kafka-config", producer_arg];
    let (status, out) = run_job(&bin, &replay, FAIL_FAST).await;
    assert!(status.is_some_and(|s| s.success()), "replay: {status:?}\n{out}");
    assert_eq!(out.matches(" -> ").count(), 2, "both letters replayed:\n{out}");
    wait_letters(&bin, cluster_arg, 4).await;

    // The cutover's lag gate reads the end offsets through its own user's
    // file: every partition of group A's cluster is known, and caught up.
    let new = fresh_cluster("new", "auth_ok").await;
    let gate_args = [
        "status",
        "--json",
        "--old",
        cluster_arg,
        "--new",
        new.file.to_str().expect("utf-8 path"),
        "--kafka-config",
        cutover_file.to_str().expect("utf-8 path"),
        "--topic-prefix",
        &prefix,
    ];
    let (status, out) = run_job(&workspace_binary("dualwrite-cutover"), &gate_args, FAIL_FAST).await;
    assert!(status.is_some_and(|s| s.success()), "cutover status: {status:?}\n{out}");
    let report: serde_json::Value = serde_json::from_str(pretty_json(&out)).unwrap_or_else(|e| panic!("{e}: {out}"));
    let partitions = report["inputs"]["lag"]["Ok"]["old"]["partitions"].as_array().cloned().unwrap_or_default();
    assert!(!partitions.is_empty(), "no lag read through the cutover's file: {}", report["inputs"]["lag"]);
    assert!(
        partitions.iter().all(|p| p["end_offset"].as_i64().is_some() && p["lag_messages"] == 0),
        "group A is caught up on every partition: {partitions:?}"
    );
    assert!(!out.contains(&cutover_pw), "a password in the cutover's output");
    common::drop_databases(&new.config).await;
    let pid = child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exit").expect("wait");
    let log = std::fs::read_to_string(nisshi.dir().join("consumer.log")).unwrap_or_default();
    assert!(exit.success(), "consumer: {exit}\n{log}");
    assert!(!log.contains(&group_pw), "a password in the consumer's log");
    assert!(!nisshi.log().contains(&group_pw) && !nisshi.log().contains(&producer_pw), "a password in nisshi's log");
}

/// The pretty-printed JSON document a job wrote to stdout, after its log
/// lines on stderr: from the first line that opens one (`{`, `[` or `[]`).
fn pretty_json(out: &str) -> &str {
    let mut at = 0;
    for line in out.split_inclusive('\n') {
        if matches!(line.trim_end(), "{" | "[" | "[]") {
            return &out[at..];
        }
        at += line.len();
    }
    ""
}

/// Waits (bounded) until `dead-letters list` shows `n` letters on the cluster.
async fn wait_letters(bin: &Path, cluster: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, out) = run_job(bin, &["dead-letters", "list", "--json", "--cluster", cluster], FAIL_FAST).await;
        assert!(status.is_some_and(|s| s.success()), "dead-letters list: {status:?}\n{out}");
        let letters: Vec<serde_json::Value> = serde_json::from_str(pretty_json(&out)).unwrap_or_default();
        if letters.len() >= n {
            assert_eq!(letters.len(), n, "{letters:?}");
            return;
        }
        assert!(Instant::now() < deadline, "{n} dead letters not recorded within 120 s: {letters:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Asserts a job failed fast with the one line naming `broker`, `cause` and `setting`.
fn assert_refused(
    case: &str,
    status: Option<std::process::ExitStatus>,
    log: &str,
    broker: &str,
    cause: &str,
    setting: &str,
) {
    let status = status.unwrap_or_else(|| panic!("{case}: still running after {FAIL_FAST:?}"));
    assert!(!status.success(), "{case}: exited {status}\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains(cause) && l.contains(setting))
        .unwrap_or_else(|| panic!("{case}: no line naming '{cause}' and '{setting}':\n{log}"));
    assert!(line.contains(broker), "{case}: the line does not name the broker {broker}: {line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kafka_settings_stop_every_job_at_start_with_one_line_naming_broker_cause_and_setting() {
    let pw = password();
    let jobs = User { name: "jobs", password: &pw };
    let nisshi = Nisshi::start_secured(&[&jobs]);
    let good = nisshi.kafka_file("good", &jobs, "");
    let prefix = prefix("auth_bad");
    create_topics(&good, &prefix).await;
    let port = nisshi.bootstrap.rsplit(':').next().expect("port").to_owned();
    let truth = nisshi.dir().join("truth.json");

    // A wrong password: the consumer, which used to retry for ever.
    let wrong_pw = nisshi.kafka_file("wrong-pw", &User { name: "jobs", password: "not-the-password" }, "");
    let cluster = fresh_cluster("old", "auth_bad").await;
    let group = common::unique("g_bad");
    let args = consumer_args(&cluster.file, &wrong_pw, &prefix, &group);
    let (status, log) = run_job(&common::consumer_binary(), &args, FAIL_FAST).await;
    assert_refused(
        "wrong password",
        status,
        &log,
        &nisshi.bootstrap,
        "authentication failed",
        "kafka.sasl_password_file",
    );
    assert!(!log.contains(&pw) && !log.contains("not-the-password"), "a password in the log:\n{log}");

    // A topic prefix naming topics that do not exist: the consumer again.
    let args = consumer_args(&cluster.file, &good, "nope.", &group);
    let (status, log) = run_job(&common::consumer_binary(), &args, FAIL_FAST).await;
    assert_refused("unknown topic", status, &log, &nisshi.bootstrap, "unknown topic nope.", "--topic-prefix");

    // A CA that did not sign the broker's certificate: the producer.
    let other_ca = common::nisshi::make_ca(&nisshi.dir().join("other"), "other-ca");
    let ca = nisshi.ca.as_ref().expect("secured").display().to_string();
    let wrong_ca = variant(&good, "wrong-ca", &ca, &other_ca.display().to_string());
    let (status, log) = produce(&wrong_ca, &prefix, 10, &truth).await;
    assert_refused("wrong CA", status, &log, &port, "broker certificate not trusted", "kafka.ssl_ca_file");

    // A host name the certificate does not name (it names 127.0.0.1 only).
    let localhost = variant(&good, "localhost", "\"127.0.0.1:", "\"localhost:");
    let (status, log) = produce(&localhost, &prefix, 10, &truth).await;
    assert_refused("host name", status, &log, "localhost", "does not match the host name", "kafka.bootstrap");

    // A plaintext client on the TLS listener.
    let plaintext = nisshi.dir().join("plaintext.toml");
    std::fs::write(&plaintext, format!("[kafka]\nbootstrap = \"{}\"\n", nisshi.bootstrap)).expect("write");
    let (status, log) = produce(&plaintext, &prefix, 10, &truth).await;
    assert_refused("plaintext", status, &log, &port, "plaintext client on a TLS listener", "kafka.security_protocol");

    // A mechanism the broker does not offer (Nisshi refuses PLAIN).
    let plain = variant(&good, "plain", "SCRAM-SHA-512", "PLAIN");
    let (status, log) = produce(&plain, &prefix, 10, &truth).await;
    assert_refused("mechanism", status, &log, &port, "does not offer this SASL mechanism", "kafka.sasl_mechanism");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_is_waited_for_not_a_reason_to_exit() {
    let port = common::nisshi::free_port();
    let prefix = prefix("auth_down");
    let bin = workspace_binary("dualwrite-topics");
    let bootstrap = format!("127.0.0.1:{port}");
    let args =
        ["create", "--brokers", &bootstrap, "--topic-prefix", &prefix, "--partitions", "1", "--replication", "1"];
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn topics create");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = log.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while log.lock().expect("log").matches("kafka unreachable").count() < 2 {
        assert!(Instant::now() < deadline, "no waiting logged:\n{}", log.lock().expect("log"));
        assert!(child.try_wait().expect("try_wait").is_none(), "exited on an outage:\n{}", log.lock().expect("log"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The broker comes up on that port: the job goes on and succeeds.
    let nisshi = Nisshi::start_on(port);
    let exit = tokio::time::timeout(Duration::from_secs(120), child.wait()).await.expect("exit").expect("wait");
    let _ = reader.await;
    assert!(exit.success(), "{exit}\n{}\nnisshi:\n{}", log.lock().expect("log"), nisshi.log());
}

/// The `[kafka]` file the TLS stack (`compose/local/stack up --tls`) wrote
/// for its broker's `user`.
fn stack_kafka_file(user: &str) -> PathBuf {
    let dir = common::tls_stack_dir();
    let file = dir.join("clusters/kafka").join(format!("{user}.toml"));
    assert!(
        file.exists(),
        "{} missing: start the TLS stack with its broker: DUALWRITE_STACK_DIR={} \
         DUALWRITE_STACK_CONF=compose/local/stack-tls.conf compose/local/stack up --tls",
        file.display(),
        dir.display()
    );
    file
}

/// A consumer process writing its log to `log`.
fn spawn_consumer(args: Vec<&str>, log: &Path) -> tokio::process::Child {
    tokio::process::Command::new(common::consumer_binary())
        .args(args)
        .env("RUST_LOG", "info,rdkafka=warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn consumer")
}

/// SIGTERM, then a clean exit within 60 s.
async fn stop_consumer(mut child: tokio::process::Child, log: &Path) {
    let pid = child.id().expect("pid").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let exit = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.expect("exit").expect("wait");
    assert!(exit.success(), "consumer: {exit}\n{}", std::fs::read_to_string(log).unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_stacks_own_broker_carries_every_job_through_the_kafka_files_the_stack_wrote() {
    // As an operator of the stack would: one user's file per job, nothing else.
    let [admin, producer, group_a, group_b, cutover] =
        ["admin", "producer", "group-a", "group-b", "cutover"].map(stack_kafka_file);
    let work = tempfile::tempdir().expect("tempdir");
    let prefix = prefix("stack_kafka");
    create_topics(&admin, &prefix).await;
    let truth_file = work.path().join("truth.json");
    let (status, log) = produce(&producer, &prefix, 2000, &truth_file).await;
    assert!(status.is_some_and(|s| s.success()), "produce: {status:?}\n{log}");
    let truth = loadtest::truth::Truth::load(&truth_file).expect("ground truth");

    // Group A into old, group B into new: the TLS stack's shards, over TLS too.
    let old = common::fresh_tls_cluster("old", "stack_kafka").await;
    let new = common::fresh_tls_cluster("new", "stack_kafka").await;
    let (name_a, name_b) = (common::unique("g_stack_a"), common::unique("g_stack_b"));
    let (log_a, log_b) = (work.path().join("group-a.log"), work.path().join("group-b.log"));
    let a = spawn_consumer(consumer_args(&old.file, &group_a, &prefix, &name_a), &log_a);
    let b = spawn_consumer(consumer_args(&new.file, &group_b, &prefix, &name_b), &log_b);
    wait_applied(&old.config, truth.messages, Duration::from_secs(180)).await;
    wait_applied(&new.config, truth.messages, Duration::from_secs(180)).await;
    assert_matches_truth(&old.config, &truth).await;
    assert_matches_truth(&new.config, &truth).await;

    // The cutover's lag gate through its own file: both groups caught up on every partition.
    let gate_args = [
        "status",
        "--json",
        "--old",
        old.file.to_str().expect("utf-8 path"),
        "--new",
        new.file.to_str().expect("utf-8 path"),
        "--kafka-config",
        cutover.to_str().expect("utf-8 path"),
        "--topic-prefix",
        &prefix,
    ];
    let (status, out) = run_job(&workspace_binary("dualwrite-cutover"), &gate_args, FAIL_FAST).await;
    assert!(status.is_some_and(|s| s.success()), "cutover status: {status:?}\n{out}");
    let report: serde_json::Value = serde_json::from_str(pretty_json(&out)).unwrap_or_else(|e| panic!("{e}: {out}"));
    for side in ["old", "new"] {
        let partitions = report["inputs"]["lag"]["Ok"][side]["partitions"].as_array().cloned().unwrap_or_default();
        assert_eq!(partitions.len(), 8, "{side}: two topics of 4 partitions: {}", report["inputs"]["lag"]);
        // A partition holding no message has no fence (and no lag) to show.
        assert!(
            partitions
                .iter()
                .all(|p| p["end_offset"].as_i64().is_some() && (p["end_offset"] == 0 || p["lag_messages"] == 0)),
            "{side}: caught up on every partition: {partitions:?}"
        );
        let ends: i64 = partitions.iter().filter_map(|p| p["end_offset"].as_i64()).sum();
        assert_eq!(
            u64::try_from(ends).expect("ends"),
            truth.messages,
            "{side}: every message produced is on the broker"
        );
    }
    stop_consumer(a, &log_a).await;
    stop_consumer(b, &log_b).await;

    // No password of the stack's users in any output here, nor in the broker's log.
    let stack = common::tls_stack_dir();
    let broker_log = std::fs::read_to_string(stack.join("broker/broker.log")).expect("the stack's broker log");
    let outputs = [
        log,
        out,
        std::fs::read_to_string(&log_a).unwrap_or_default(),
        std::fs::read_to_string(&log_b).unwrap_or_default(),
        broker_log,
    ];
    for user in ["admin", "producer", "group-a", "group-b", "cutover"] {
        let secret =
            std::fs::read_to_string(stack.join("secrets").join(format!("kafka-{user}"))).expect("password file");
        assert!(secret.trim().len() >= 16, "a real password for {user}");
        assert!(outputs.iter().all(|o| !o.contains(secret.trim())), "the password of {user} in a log");
    }
    common::drop_databases(&old.config).await;
    common::drop_databases(&new.config).await;
}
