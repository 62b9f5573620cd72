//! Least privilege against the stack's real servers: each job, run as its
//! own login with exactly the grants `cluster::roles` gives it, does its job
//! (the real consumer, retention, comparator, copier, operator commands and
//! query API), and that login is refused what it must not do.
//!
//! Grants are per database, so the test makes its own logins (random names
//! and passwords) and grants them on its own throwaway databases with the
//! stack's administrator login; it drops the logins at the end.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster::config::{ClusterConfig, Endpoint};
use cluster::pool::ShardPools;
use cluster::roles::{Account, Role};
use cluster::secret::Secret;
use common::{api_client_builder, router_config, Api};
use cutover::state::{self, Audit};
use mysql_async::prelude::Queryable;
use rand::Rng;
use testkit::{drop_databases, fresh_cluster, Broker, Group};
use tokio_util::sync::CancellationToken;

/// Server error codes that mean "this login may not": table, column,
/// database, global privilege.
const DENIED: [u16; 5] = [1142, 1143, 1044, 1227, 1370];

/// The test's logins, one per login of the stack (both copier sides share one).
struct Logins {
    /// (the stack's user name, this test's user, its password).
    users: Vec<(&'static str, String, Secret)>,
    suffix: String,
    /// The administrator's view of both clusters: where the logins live.
    admin: [ClusterConfig; 2],
}

impl Logins {
    /// Creates the logins on every server of both clusters.
    async fn create(admin: [&ClusterConfig; 2]) -> Self {
        let mut rng = rand::rng();
        let suffix: String = (0..6).map(|_| rng.sample(rand::distr::Alphanumeric) as char).collect();
        let mut users: Vec<(&'static str, String, Secret)> = Vec::new();
        for role in Role::ALL {
            let stack_user = role.default_user();
            if users.iter().any(|(u, _, _)| *u == stack_user) {
                continue;
            }
            // <= 32 characters (MySQL 8's limit)
            let user = format!("t_{}_{suffix}", stack_user.trim_start_matches("dw_"));
            let password: String = (0..24).map(|_| rng.sample(rand::distr::Alphanumeric) as char).collect();
            users.push((stack_user, user, Secret::new(password)));
        }
        let admin = admin.map(Clone::clone);
        on_every_server(&admin, &users, |u, p| {
            format!("CREATE USER '{u}'@'127.0.0.1' IDENTIFIED BY '{}'", p.expose_secret())
        })
        .await;
        Self { users, suffix, admin }
    }

    fn login(&self, role: Role) -> (&str, &Secret) {
        let (_, user, password) =
            self.users.iter().find(|(u, _, _)| *u == role.default_user()).expect("every role has a login");
        (user, password)
    }

    fn account(&self, role: Role) -> Account {
        Account::new(self.login(role).0, "127.0.0.1").expect("account")
    }

    /// `admin` logging in as `role`'s user instead.
    fn as_role(&self, role: Role, admin: &ClusterConfig) -> ClusterConfig {
        let (user, password) = self.login(role);
        admin.with_login(user, Some(password.clone()))
    }
}

/// Runs `sql` (one statement per login) with the administrator's login on every server of both clusters.
async fn on_every_server(
    admin: &[ClusterConfig; 2],
    users: &[(&'static str, String, Secret)],
    sql: impl Fn(&str, &Secret) -> String,
) {
    let mut seen = BTreeSet::new();
    for cluster in admin {
        let endpoints: Vec<&Endpoint> =
            cluster.shards.iter().map(|s| &s.endpoint).chain(cluster.control.as_ref()).collect();
        for endpoint in endpoints {
            if !seen.insert((endpoint.host.clone(), endpoint.port)) {
                continue;
            }
            let opts = mysql_async::OptsBuilder::from_opts(cluster::pool::opts_for(endpoint, &cluster.auth))
                .db_name(None::<String>);
            let Ok(mut conn) = mysql_async::Conn::new(opts).await else {
                panic!("the administrator cannot connect to {endpoint}");
            };
            for (_, user, password) in users {
                if let Err(e) = conn.query_drop(sql(user, password)).await {
                    panic!("administrator statement for {user}: {e}");
                }
            }
            let _ = conn.disconnect().await;
        }
    }
}

/// The logins are dropped also when the test fails (on a thread of its own:
/// the test's runtime may be gone).
impl Drop for Logins {
    fn drop(&mut self) {
        let (users, admin) = (std::mem::take(&mut self.users), self.admin.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(on_every_server(&admin, &users, |u, _| format!("DROP USER IF EXISTS '{u}'@'127.0.0.1'")));
        })
        .join();
        if dropped.is_err() {
            eprintln!("dropping the test's logins failed");
        }
    }
}

/// `sql` on `pool` fails with a privilege error.
async fn assert_refused(pool: &mysql_async::Pool, what: &str, sql: &str) {
    let result = async {
        let mut conn = pool.get_conn().await?;
        conn.query_drop(sql).await
    }
    .await;
    match result {
        Err(mysql_async::Error::Server(e)) if DENIED.contains(&e.code) => {}
        other => panic!("{what} must be refused `{sql}`, got {other:?}"),
    }
}

/// `sql` on `pool` succeeds.
async fn assert_allowed(pool: &mysql_async::Pool, what: &str, sql: &str) {
    let mut conn = pool.get_conn().await.unwrap_or_else(|e| panic!("{what} connects: {e}"));
    conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{what} may run `{sql}`: {e}"));
}

fn control(config: &ClusterConfig) -> mysql_async::Pool {
    cutover::serve::control_pool(config).expect("control endpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_does_its_job_and_is_refused_the_rest() {
    let old = fresh_cluster("old", "roles").await;
    let new = fresh_cluster("new", "roles").await;
    let logins = Logins::create([&old.config, &new.config]).await;
    for role in Role::ALL {
        let account = logins.account(role);
        // the copier reads the old cluster and writes the new one; every other role works on both
        if role != Role::CopierTarget {
            cluster::roles::apply(&old.config, role, &account).await.expect("grant on old");
        }
        if role != Role::CopierSource {
            cluster::roles::apply(&new.config, role, &account).await.expect("grant on new");
        }
    }

    // --- consumer: the real consumer feeds both clusters from its own start
    let broker = Broker::new(&format!("roles{}", logins.suffix));
    let truth = broker.produce(3000, 11, None).await;
    for admin in [&old, &new] {
        let mut config = testkit::consumer_config(admin, &broker, &testkit::unique("roles"));
        config.cluster = logins.as_role(Role::Consumer, &admin.config);
        let group = Group::start_with(config);
        testkit::wait_caught_up(&admin.config, &broker, Duration::from_secs(180)).await;
        group.stop().await;
        testkit::assert_matches_truth(&admin.config, &truth).await;
    }
    let consumer = logins.as_role(Role::Consumer, &old.config);
    let letter = consumer::plan::DeadLetter {
        topic: std::sync::Arc::from("query-stats"),
        partition: 0,
        offset: 1,
        reason: "avro_decode",
        detail: "role test".into(),
        key: None,
        payload: Some(b"x".to_vec()),
        message_ms: None,
    };
    consumer::dead_letter::record(&control(&consumer), &consumer.name, "g", &[letter]).await.expect("dead letter");
    let shard = ShardPools::new(&consumer);
    assert_refused(shard.shard(0), "the consumer", "ALTER TABLE query_stats_minute DROP PARTITION p_past").await;
    assert_refused(shard.shard(0), "the consumer", "DELETE FROM query_stats_hour").await;
    assert_refused(shard.shard(0), "the consumer", "CREATE TABLE t_x (a INT)").await;
    assert_refused(&control(&consumer), "the consumer", "UPDATE dw_read_routing SET active_cluster = 'x'").await;
    assert_refused(&control(&consumer), "the consumer", "SELECT * FROM dw_read_routing").await;
    assert_refused(&control(&consumer), "the consumer", "INSERT INTO dw_verify_windows (tbl) VALUES ('x')").await;
    shard.disconnect().await;

    // --- retention: splits ahead and drops behind (a shorter keep, forced)
    let mut config = retention::RetentionConfig::for_cluster(logins.as_role(Role::Retention, &old.config));
    config.ahead = Duration::from_secs(6 * 86_400);
    config.keep = Duration::from_secs(2 * 86_400);
    config.force_reason = Some("role test".into());
    let pools = ShardPools::new(&config.cluster);
    let summary = retention::run_once(&config, &pools, chrono::Utc::now().timestamp()).await;
    assert_eq!(summary.errors, 0, "retention as its login: {summary:?}");
    assert!(summary.created > 0 && summary.dropped > 0, "retention split and dropped: {summary:?}");
    assert_refused(pools.shard(0), "retention", "INSERT INTO dw_offset_fence (topic) VALUES ('x')").await;
    assert_refused(pools.shard(0), "retention", "ALTER TABLE query_patterns ADD COLUMN x INT").await;
    assert_refused(pools.shard(0), "retention", "DELETE FROM query_stats_minute").await;
    pools.disconnect().await;

    // --- verify: the comparator over both clusters writes its history
    let verify_config = verify::windows::WindowsConfig {
        old: logins.as_role(Role::Verify, &old.config),
        new: logins.as_role(Role::Verify, &new.config),
        range: verify::windows::Range::Since(Duration::from_secs(3 * 3600)),
        recheck_all: false,
    };
    let outcome =
        verify::windows::run_windows(&verify_config, &CancellationToken::new()).await.expect("verify windows");
    assert!(outcome.run.run_id > 0, "a recorded run");
    let verify_shards = ShardPools::new(&verify_config.new);
    assert_refused(verify_shards.shard(0), "verify", "UPDATE query_stats_minute SET query_count = 0").await;
    assert_refused(&control(&verify_config.new), "verify", "INSERT INTO dw_read_routing_audit (at) VALUES (NOW())")
        .await;
    verify_shards.disconnect().await;

    // --- copier: snapshot and binlog from old, rows and sidecar on new
    let copier_config = copier::config::CopierConfig {
        from: logins.as_role(Role::CopierSource, &old.config),
        to: logins.as_role(Role::CopierTarget, &new.config),
        table: "query_patterns".into(),
        settings: copier::config::Settings::default(),
        progress: false,
    };
    let to = copier_config.to.clone();
    let shutdown = CancellationToken::new();
    let copier_task = tokio::spawn(copier::run(copier_config, shutdown.clone()));
    let target = ShardPools::new(&to);
    let streams = old.config.shards.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(!copier_task.is_finished(), "the copier stopped early");
        let mut replicating = 0;
        for i in 0..target.len() {
            let mut conn = target.shard(i).get_conn().await.expect("conn");
            let phases: Vec<String> =
                conn.query("SELECT phase FROM dw_copier_streams").await.expect("copier as its login reads its sidecar");
            replicating = replicating.max(phases.iter().filter(|p| *p == "replicating").count());
        }
        if replicating == streams {
            break;
        }
        assert!(Instant::now() < deadline, "timed out waiting for every copier stream to replicate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    copier_task.await.expect("join").expect("the copier ran as its login");
    let source = ShardPools::new(&logins.as_role(Role::CopierSource, &old.config));
    assert_allowed(source.shard(0), "the copier", "SHOW MASTER STATUS").await;
    assert_refused(source.shard(0), "the copier", "INSERT INTO query_patterns (database_id) VALUES (1)").await;
    assert_refused(source.shard(0), "the copier", "SELECT * FROM dw_offset_fence").await;
    assert_refused(target.shard(0), "the copier", "UPDATE dw_offset_fence SET next_offset = 0").await;
    source.disconnect().await;
    target.disconnect().await;

    // --- reader, before any operator: may not create the routing state
    let reader_old = logins.as_role(Role::Reader, &old.config);
    let reader_new = logins.as_role(Role::Reader, &new.config);
    let router = cutover::Router::start(
        router_config("roles-early", 0.0),
        reader_old.clone(),
        reader_new.clone(),
        control(&reader_new),
    )
    .await
    .err()
    .expect("a reader cannot initialise the routing state")
    .to_string();
    assert!(router.contains("INSERT command denied"), "{router}");

    // --- operator: creates the routing state and switches; the audit names its login
    let operator = logins.as_role(Role::Operator, &new.config);
    let ops = control(&operator);
    state::ensure_schema(&ops).await.expect("operator: routing tables present");
    let groups = cutover::group::Groups::of(&old.config.pipeline);
    let timeseries = groups.parse("timeseries").expect("an insights group");
    state::ensure_initial(&ops, &groups.all(), &old.config.name, "role-test").await.expect("operator: initial state");
    let audit = Audit {
        action: "prepare",
        changed_by: "role-test".into(),
        reason: "role test".into(),
        forced: true,
        detail: "{}".into(),
    };
    let new_name = new.config.name.clone();
    state::transition(&ops, &[timeseries], &audit, |g| {
        g.pending = Some(new_name.clone());
        Ok(())
    })
    .await
    .expect("operator: a transition");
    let entries = state::audit_log(&ops, 10).await.expect("audit");
    let (user, _) = logins.login(Role::Operator);
    assert!(entries.iter().all(|e| e.db_user == format!("{user}@127.0.0.1")), "audit rows name the login: {entries:?}");
    assert!(entries.iter().any(|e| e.action == "prepare" && e.changed_by == "role-test"));
    state::transition(&ops, &[timeseries], &Audit { action: "abort", ..audit }, |g| {
        g.pending = None;
        Ok(())
    })
    .await
    .expect("operator: abort");
    assert_refused(&ops, "the operator", "DELETE FROM dw_read_routing_audit").await;
    assert_refused(&ops, "the operator", "UPDATE dw_read_routing_audit SET changed_by = 'x'").await;
    assert_refused(&ops, "the operator", "DELETE FROM dw_verify_runs").await;
    let operator_shards = ShardPools::new(&operator);
    assert_refused(operator_shards.shard(0), "the operator", "DELETE FROM query_patterns").await;
    operator_shards.disconnect().await;

    // --- reader: the query API and its console, as the reader's login
    let api = Api::start_with(reader_old.clone(), reader_new.clone(), router_config("roles", 1.0)).await;
    let client = api_client_builder().build().expect("client");
    let to_s = chrono::Utc::now().timestamp();
    let top = client
        .get(format!("{}/v1/databases/1/patterns/top?from={}&to={to_s}&limit=5", api.base, to_s - 7200))
        .send()
        .await
        .expect("top patterns");
    assert_eq!(top.status(), 200, "{}", top.text().await.unwrap_or_default());
    let console =
        client.get(format!("{}/console", api.base)).header("Accept", "application/json").send().await.expect("console");
    assert_eq!(console.status(), 200);
    let console: serde_json::Value = console.json().await.expect("console json");
    // everything the console reads from the databases (not the Kafka lag: no broker configured here)
    let sections = [&console["routing"], &console["routers"], &console["audit"]];
    let inputs = ["retention", "verify", "copier", "shadow"].map(|k| &console["inputs"][k]);
    for section in sections.into_iter().chain(inputs) {
        assert!(section.get("Ok").is_some(), "the console as the reader: {section}");
    }
    api.stop().await;
    let reads = control(&reader_new);
    assert_refused(&reads, "the reader", "UPDATE dw_read_routing SET active_cluster = 'x'").await;
    assert_refused(&reads, "the reader", "INSERT INTO dw_read_routing_audit (at) VALUES (NOW())").await;
    assert_refused(&reads, "the reader", "DELETE FROM dw_dead_letters").await;
    let reader_shards = ShardPools::new(&reader_new);
    assert_refused(reader_shards.shard(0), "the reader", "INSERT INTO query_patterns (database_id) VALUES (1)").await;
    reader_shards.disconnect().await;

    drop(logins);
    drop_databases(&old.config).await;
    drop_databases(&new.config).await;
}
