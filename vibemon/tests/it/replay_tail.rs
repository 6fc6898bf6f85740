//! `vibemon replay` rebuilds the read model from the topic (all of it, from
//! a time, or one workspace), resumably; `vibemon tail` prints the topic as
//! NDJSON.

use std::time::Duration;

use vibemon_testkit::events::{at, producer, publish, World};
use vibemon_testkit::{kafka_brokers, TestDb, TestTopic};

use crate::cli::{stdout, vibemon};

fn replay(db_url: &str, topic: &TestTopic, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "replay", "--kafka-topic", &topic.name];
    args.extend_from_slice(extra);
    let o = vibemon(db_url, &args);
    assert!(
        o.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(&stdout(&o)).unwrap()
}

async fn count(db: &TestDb, name: &str, table: &str) -> i64 {
    let pool = vibemon_store::connect(&vibemon_store::url_with_database(&db.url, name), 1)
        .await
        .unwrap();
    let n = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

async fn drop_db(db: &TestDb, name: &str) {
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_into_a_fresh_database_resumably_and_into_the_live_one_idempotently() {
    let (live, topic) = (TestDb::new().await, TestTopic::new(3).await);
    let (a, b) = (World::new(), World::new());
    let mut events = Vec::new();
    for i in 0..40 {
        let w = if i % 4 == 0 { &b } else { &a };
        events.push(w.report(
            ["acme/api", "acme/web"][i % 2],
            at("2024-01-15T10:00:00Z") + chrono::Duration::minutes(i as i64),
        ));
    }
    publish(&producer(&topic.brokers), &topic.name, &events).await;
    let fresh = format!("replay_{}", uuid::Uuid::new_v4().simple());

    let into_live = replay(&live.url, &topic, &[]);
    let into_fresh = replay(&live.url, &topic, &["--into", &fresh]);
    let resumed = replay(&live.url, &topic, &["--into", &fresh]);
    let live_again = replay(&live.url, &topic, &["--restart"]);

    assert_eq!(into_live["records"], 40);
    assert_eq!(
        into_fresh["digest"], into_live["digest"],
        "a rebuild has the live digest"
    );
    assert_eq!(
        resumed["records"], 0,
        "a finished replay has nothing left to do"
    );
    assert_eq!(
        live_again["applied"], 0,
        "replaying over the live database applies nothing twice"
    );
    assert_eq!(live_again["digest"], into_live["digest"]);
    assert_eq!(count(&live, &fresh, "deployments").await, 40);
    drop_db(&live, &fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_can_start_at_a_time_and_keep_one_workspace() {
    let (live, topic) = (TestDb::new().await, TestTopic::new(2).await);
    let (a, b) = (World::new(), World::new());
    let p = producer(&topic.brokers);
    publish(
        &p,
        &topic.name,
        &[
            a.report("acme/api", at("2024-01-15T10:00:00Z")),
            b.report("acme/api", at("2024-01-15T10:00:00Z")),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let since = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(
        &p,
        &topic.name,
        &[
            a.report("acme/api", at("2024-01-15T11:00:00Z")),
            b.report("acme/web", at("2024-01-15T11:00:00Z")),
        ],
    )
    .await;
    let (later, only_a) = (
        format!("since_{}", uuid::Uuid::new_v4().simple()),
        format!("only_{}", uuid::Uuid::new_v4().simple()),
    );

    replay(&live.url, &topic, &["--into", &later, "--since", &since]);
    replay(
        &live.url,
        &topic,
        &[
            "--into",
            &only_a,
            "--workspace",
            &a.workspace_id.to_string(),
        ],
    );

    assert_eq!(
        count(&live, &later, "deployment_audit").await,
        2,
        "only records at or after --since"
    );
    assert_eq!(
        count(&live, &only_a, "deployment_audit").await,
        2,
        "only workspace a"
    );
    drop_db(&live, &later).await;
    drop_db(&live, &only_a).await;
}

#[tokio::test]
async fn tail_prints_decoded_events_as_ndjson_filtered_by_environment() {
    let topic = TestTopic::new(2).await;
    let world = World::new();
    let mut staging = world.report("acme/api", at("2024-01-15T10:00:00Z"));
    staging.environment = vibemon_schemas::EnvironmentName::parse("staging").unwrap();
    let prod = [
        world.report("acme/api", at("2024-01-15T10:01:00Z")),
        world.report("acme/web", at("2024-01-15T10:02:00Z")),
    ];
    publish(
        &producer(&topic.brokers),
        &topic.name,
        &[staging, prod[0].clone(), prod[1].clone()],
    )
    .await;

    let o = tokio::task::spawn_blocking({
        let name = topic.name.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
                .args([
                    "tail",
                    "--kafka-topic",
                    &name,
                    "--from-beginning",
                    "--environment",
                    "production",
                    "--limit",
                    "2",
                ])
                .env("KAFKA_BROKERS", kafka_brokers())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();

    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let mut ids: Vec<String> = lines
        .iter()
        .map(|l| l["event_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = prod.iter().map(|e| e.event_id.to_string()).collect();
    want.sort();
    assert_eq!(ids, want);
    assert!(lines.iter().all(|l| l["environment"] == "production"));
}
