//! The migration console against real servers: its JSON answer agrees with
//! the routing and audit tables before and after a switch, and the page holds
//! every section, self-contained.

mod common;

use common::{api_client_builder, control, cutover_command, router_config, Api};
use testkit::{drop_databases, fresh_cluster};

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

    let page = console_html(&api).await;
    for id in ["routing", "routers", "readiness", "gates", "lag", "copier", "verify", "audit"] {
        assert!(page.contains(&format!("<h2 id=\"{id}\">")), "section {id} missing");
    }
    assert!(page.contains("http-equiv=\"refresh\""), "the page refreshes itself");
    assert!(!page.contains("http://") && !page.contains("https://"), "self-contained");
    assert!(
        page.contains("class=\"fail\">FAIL</td><td>not evaluated: no Kafka configured"),
        "lag gate with its reason"
    );

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
