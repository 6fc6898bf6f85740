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

/// The event ids in `deployment_audit` of database `name`, sorted.
async fn event_ids(db: &TestDb, name: &str) -> Vec<uuid::Uuid> {
    let pool = vibemon_store::connect(&vibemon_store::url_with_database(&db.url, name), 1)
        .await
        .unwrap();
    let ids = sqlx::query_scalar("SELECT event_id FROM deployment_audit ORDER BY event_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    ids
}

fn sorted(events: &[&vibemon_schemas::DeploymentReported]) -> Vec<uuid::Uuid> {
    let mut ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_can_start_at_a_time_and_keep_one_workspace() {
    let (live, topic) = (TestDb::new().await, TestTopic::new(2).await);
    let (a, b) = (World::new(), World::new());
    let p = producer(&topic.brokers);
    // Uneven on purpose: 2 records before --since and 3 after; 3 of workspace
    // a and 2 of b. An inverted filter keeps the other side, a different
    // count as well as different ids.
    let (a1, b1) = (
        a.report("acme/api", at("2024-01-15T10:00:00Z")),
        b.report("acme/api", at("2024-01-15T10:00:00Z")),
    );
    publish(&p, &topic.name, &[a1.clone(), b1.clone()]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let since = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (a2, a3, b2) = (
        a.report("acme/api", at("2024-01-15T11:00:00Z")),
        a.report("acme/web", at("2024-01-15T11:00:00Z")),
        b.report("acme/web", at("2024-01-15T11:00:00Z")),
    );
    publish(&p, &topic.name, &[a2.clone(), a3.clone(), b2.clone()]).await;
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
        event_ids(&live, &later).await,
        sorted(&[&a2, &a3, &b2]),
        "exactly the 3 records at or after --since, none of the 2 before"
    );
    assert_eq!(
        event_ids(&live, &only_a).await,
        sorted(&[&a1, &a2, &a3]),
        "exactly workspace a's 3 events, none of b's 2"
    );
    assert_eq!(count(&live, &later, "deployments").await, 3);
    assert_eq!(count(&live, &only_a, "deployments").await, 3);
    drop_db(&live, &later).await;
    drop_db(&live, &only_a).await;
}

/// Sum of the replay group's checkpoints in database `name`, once it exists.
async fn replayed_offsets(db: &TestDb, name: &str) -> Option<i64> {
    let url = vibemon_store::url_with_database(&db.url, name);
    let pool = vibemon_store::connect(&url, 1).await.ok()?;
    let sum = sqlx::query_scalar::<_, Option<i64>>(
        "SELECT sum(next_offset)::bigint FROM projector_checkpoints WHERE consumer_group = 'vibemon-replay'",
    )
    .fetch_one(&pool)
    .await
    .ok()
    .flatten();
    pool.close().await;
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_part_way_resumes_from_its_checkpoints_to_the_full_digest_with_nothing_doubled(
) {
    let (live, topic) = (TestDb::new().await, TestTopic::new(3).await);
    let world = World::new();
    let n = 2000;
    let events: Vec<_> = (0..n)
        .map(|i| {
            world.report(
                ["acme/api", "acme/web", "acme/db"][i % 3],
                at("2024-01-15T10:00:00Z") + chrono::Duration::seconds(i as i64),
            )
        })
        .collect();
    publish(&producer(&topic.brokers), &topic.name, &events).await;
    let (resumed, full) = (
        format!("resumed_{}", uuid::Uuid::new_v4().simple()),
        format!("full_{}", uuid::Uuid::new_v4().simple()),
    );
    // Small batches, so the replay commits many checkpoints on its way.
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
        .args(["--json", "replay", "--kafka-topic", &topic.name])
        .args(["--into", &resumed, "--batch-max", "10"])
        .env("DATABASE_URL", &live.url)
        .env("KAFKA_BROKERS", &topic.brokers)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let moved = vibemon_testkit::eventually(Duration::from_secs(60), || async {
        replayed_offsets(&live, &resumed)
            .await
            .filter(|done| *done >= 100)
    })
    .await;
    first.kill().expect("SIGKILL the replay");
    let first_exit = first.wait().unwrap();
    let at_kill = replayed_offsets(&live, &resumed).await.unwrap_or(0);
    let second = replay(&live.url, &topic, &["--into", &resumed]);
    let whole = replay(&live.url, &topic, &["--into", &full]);

    println!(
        "replay killed at {at_kill} of {n} records; the second run did {}",
        second["records"]
    );
    assert!(
        moved.is_some(),
        "the first replay never checkpointed 100 records"
    );
    assert!(
        !first_exit.success(),
        "the first replay finished before the kill"
    );
    assert!(
        at_kill > 0 && at_kill < n as i64,
        "the kill was not part way: {at_kill} of {n}"
    );
    assert_eq!(
        second["records"],
        n as i64 - at_kill,
        "the second run starts at the checkpoints, not at the beginning"
    );
    assert_eq!(
        second["digest"], whole["digest"],
        "the resumed replay equals a full one"
    );
    let pool = vibemon_store::connect(&vibemon_store::url_with_database(&live.url, &resumed), 1)
        .await
        .unwrap();
    assert_eq!(count(&live, &resumed, "deployment_audit").await, n as i64);
    assert_eq!(count(&live, &resumed, "deployments").await, n as i64);
    assert_eq!(
        vibemon_testkit::ledger::reports_beyond_audit(&pool).await,
        0,
        "an event counted twice into deployments.reports"
    );
    pool.close().await;
    drop_db(&live, &resumed).await;
    drop_db(&live, &full).await;
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

    // A tail that misses a partition waits forever for its second line:
    // bounded, so that breaks the test instead of hanging it.
    let o = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
            .args([
                "tail",
                "--kafka-topic",
                &topic.name,
                "--from-beginning",
                "--environment",
                "production",
                "--limit",
                "2",
            ])
            .env("KAFKA_BROKERS", kafka_brokers())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("tail prints its 2 lines within 60 s")
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

#[tokio::test]
async fn replay_names_an_invalid_projector_variable_and_exits_2_instead_of_projecting() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
        .args(["replay", "--kafka-topic", &topic.name])
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BROKERS", kafka_brokers())
        .env("PROJECTOR_WRITE_TIMEOUT_SECS", "soon")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("a PROJECTOR_* environment variable is invalid") && err.contains("soon"),
        "{err}"
    );
}
