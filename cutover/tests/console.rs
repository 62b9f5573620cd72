//! The migration console against real servers: its JSON answer agrees with
//! the routing and audit tables before and after a switch, with each
//! cluster's dead-letter table and with the verify history; the page holds
//! every section, self-contained.

mod common;

use std::collections::BTreeMap;

use cluster::config::ClusterConfig;
use common::{api_client_builder, control, cutover_command, router_config, Api};
use consumer::plan::DeadLetter;
use mysql_async::prelude::Queryable;
use testkit::{drop_databases, fresh_cluster};
use verify::history::{WindowResult, WindowVerdict};

async fn console_json(api: &Api) -> serde_json::Value {
    api_client_builder()
        .build()
        .expect("client")
        .get(format!("{}/console", api.base))
        .header("Accept", "application/json")
        .send()
        .await
        .expect("console")
        .json()
        .await
        .expect("json")
}

async fn console_html(api: &Api) -> String {
    let client = api_client_builder().build().expect("client");
    client.get(format!("{}/console", api.base)).send().await.expect("console").text().await.expect("text")
}

/// The routing rows and audit ids the console shows, next to the tables' own.
async fn check_against_tables(json: &serde_json::Value, pool: &mysql_async::Pool) {
    let routing = cutover::state::load(pool).await.expect("routing");
    let shown: Vec<(String, String, u64)> = json["routing"]["Ok"]["groups"]
        .as_array()
        .expect("routing groups")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap_or("").to_owned(),
                g["active"].as_str().unwrap_or("").to_owned(),
                g["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let stored: Vec<(String, String, u64)> =
        routing.groups.iter().map(|g| (g.group.as_str().to_owned(), g.active.clone(), g.version)).collect();
    assert_eq!(shown, stored);
    let audit = cutover::state::audit_log(pool, 20).await.expect("audit");
    let shown: Vec<u64> =
        json["audit"]["Ok"].as_array().expect("audit rows").iter().filter_map(|a| a["id"].as_u64()).collect();
    assert_eq!(shown, audit.iter().map(|a| a.id).collect::<Vec<_>>());
}

/// A cluster's own control database.
fn own_control(cluster: &ClusterConfig) -> mysql_async::Pool {
    let endpoint = cluster.control.as_ref().expect("[control]");
    mysql_async::Pool::new(cluster::pool::opts_for(endpoint, &cluster.auth))
}

/// (reason, letters) per reason of `cluster`, as its control table holds them.
async fn stored_dead_letters(cluster: &ClusterConfig) -> BTreeMap<String, u64> {
    let pool = own_control(cluster);
    let rows: Vec<(String, u64)> = pool
        .get_conn()
        .await
        .expect("conn")
        .exec("SELECT reason, COUNT(*) FROM dw_dead_letters WHERE cluster = ? GROUP BY reason", (&cluster.name,))
        .await
        .expect("dead letters");
    pool.disconnect().await.expect("disconnect");
    rows.into_iter().collect()
}

/// (reason, letters) per reason of the console's entry for `cluster`.
fn shown_dead_letters(json: &serde_json::Value, cluster: &str) -> BTreeMap<String, u64> {
    let entry = json["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .iter()
        .find(|c| c["cluster"] == cluster)
        .unwrap_or_else(|| panic!("no dead-letter entry for {cluster}: {}", json["dead_letters"]));
    entry["reasons"]["Ok"]
        .as_array()
        .unwrap_or_else(|| panic!("{cluster}: {}", entry["reasons"]))
        .iter()
        .map(|r| (r["reason"].as_str().unwrap_or("").to_owned(), r["letters"].as_u64().unwrap_or(0)))
        .collect()
}

/// Windows per state the console's verify timeline shows for `tbl`.
fn shown_windows(json: &serde_json::Value, tbl: &str) -> BTreeMap<String, u64> {
    let timeline = json["verify_timeline"]["Ok"]["timelines"]
        .as_array()
        .expect("timelines")
        .iter()
        .find(|t| t["tbl"] == tbl)
        .unwrap_or_else(|| panic!("no timeline of {tbl}"));
    let mut out = BTreeMap::new();
    for span in timeline["spans"].as_array().expect("spans") {
        let state = span["state"].as_str().unwrap_or("unchecked").to_owned();
        *out.entry(state).or_insert(0) += span["windows"].as_u64().unwrap_or(0);
    }
    out
}

fn letter(topic: &str, offset: i64, reason: &'static str) -> DeadLetter {
    DeadLetter {
        topic: topic.into(),
        partition: 1,
        offset,
        reason,
        detail: format!("console test letter at {offset}"),
        key: None,
        payload: Some(vec![0xff]),
        message_ms: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_what_the_tables_hold_before_and_after_a_switch() {
    let old = fresh_cluster("old", "console").await;
    let new = fresh_cluster("new", "console").await;
    let pool = control(&new);
    let api = Api::start(&old, &new, router_config("console-router", 0.0)).await;

    let json = console_json(&api).await;
    check_against_tables(&json, &pool).await;
    assert_eq!(json["routers"]["Ok"][0]["router_id"], "console-router");
    let gates: Vec<&str> = json["gates"].as_array().expect("gates").iter().filter_map(|g| g["gate"].as_str()).collect();
    assert_eq!(gates, ["retention", "verify", "copier", "shadow_reads", "consumer_lag"]);
    // No broker was given: the lag section says why instead of guessing.
    assert!(
        json["inputs"]["lag"]["Err"].as_str().is_some_and(|e| e.contains("--brokers")),
        "{}",
        json["inputs"]["lag"]
    );

    // Nothing recorded yet: no dead letters, a timeline of unchecked windows.
    for c in [&old.config, &new.config] {
        assert_eq!(shown_dead_letters(&json, &c.name), BTreeMap::new(), "{}", c.name);
    }
    assert!(!shown_windows(&json, "query_stats_minute").contains_key("equal"), "{}", json["verify_timeline"]);

    let page = console_html(&api).await;
    assert!(
        page.contains(&format!("No dead letters on {} or {}.", old.config.name, new.config.name)),
        "dead letters section"
    );
    for id in ["reads", "routing", "routers", "readiness", "gates", "lag", "copier", "verify", "dead_letters", "audit"]
    {
        assert!(page.contains(&format!(" id=\"{id}\">")), "section {id} missing");
    }
    assert!(page.contains("http-equiv=\"refresh\""), "the page refreshes itself");
    assert!(!page.contains("http://") && !page.contains("https://"), "self-contained");
    assert!(
        page.contains("class=\"fail\">FAIL</td><td class=\"detail\">not evaluated: no Kafka configured"),
        "lag gate with its reason"
    );

    // Each group's dead letters in its own control database (the consumer's
    // writer), and a verify run's windows in the new one (verify's writer).
    let old_control = own_control(&old.config);
    let topic = "console.query-stats";
    let old_letters =
        [letter(topic, 10, "avro_decode"), letter(topic, 11, "avro_decode"), letter(topic, 12, "future_event")];
    consumer::dead_letter::record(&old_control, &old.config.name, "console-a", &old_letters)
        .await
        .expect("old letters");
    old_control.disconnect().await.expect("disconnect");
    consumer::dead_letter::record(&pool, &new.config.name, "console-b", &[letter(topic, 12, "future_event")])
        .await
        .expect("new letters");
    verify::history::ensure_tables(&pool).await.expect("verify tables");
    let run = verify::history::start_run(&pool, "windows", "windows", &old.config.name, &new.config.name, (0, 0), None)
        .await
        .expect("run");
    let size = i64::try_from(new.config.time.minute_window.as_secs()).expect("size");
    let first = (chrono::Utc::now().timestamp() - 3600).div_euclid(size) * size;
    let states = [WindowVerdict::Equal, WindowVerdict::Equal, WindowVerdict::Different, WindowVerdict::Equal];
    let windows: Vec<WindowResult> = states
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let start = first + i64::try_from(i).expect("i") * size;
            WindowResult::without_digest("query_stats_minute", start, size, *state, (Some(5), Some(5)))
        })
        .collect();
    verify::history::save_windows(&pool, run, &windows).await.expect("windows");

    let json = console_json(&api).await;
    for c in [&old.config, &new.config] {
        let stored = stored_dead_letters(c).await;
        assert!(!stored.is_empty(), "{}", c.name);
        assert_eq!(shown_dead_letters(&json, &c.name), stored, "{}", c.name);
    }
    let stored: Vec<(String, u64)> = pool
        .get_conn()
        .await
        .expect("conn")
        .query("SELECT state, COUNT(*) FROM dw_verify_windows WHERE tbl = 'query_stats_minute' GROUP BY state")
        .await
        .expect("verify windows");
    let shown = shown_windows(&json, "query_stats_minute");
    for (state, count) in &stored {
        assert_eq!(shown.get(state), Some(count), "{state}: {}", json["verify_timeline"]);
    }
    assert_eq!(stored.iter().map(|(_, n)| n).sum::<u64>(), 4);
    let page = console_html(&api).await;
    assert!(page.contains("<td>avro_decode</td><td>2</td><td>2</td>"), "old's avro_decode letters, all recent");
    assert!(page.contains(&format!("{topic}/1@12")), "the newest letter's position");
    assert!(page.contains("class=\"different\" style=\"flex-grow:1\""), "the different window on the timeline");

    let out =
        cutover_command(&old, &new, &["switch-reads", "--to", "new", "--force", "--reason", "console test"]).await;
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let json = console_json(&api).await;
    check_against_tables(&json, &pool).await;
    let actions: Vec<&str> =
        json["audit"]["Ok"].as_array().expect("audit").iter().filter_map(|a| a["action"].as_str()).collect();
    assert!(actions.contains(&"switch") && actions.contains(&"prepare"), "{actions:?}");
    assert!(console_html(&api).await.contains(&format!("<td><b>{}</b></td>", new.config.name)));

    api.stop().await;
    pool.disconnect().await.expect("disconnect");
    drop_databases(&old.config).await;
    drop_databases(&new.config).await;
}
