//! The guarantees a hostile topic or a careless operator tries to break: a
//! record Postgres refuses, a deployment that changes repository, an
//! `Idempotency-Key` reused for another body, a checkpoint from another
//! topic, and two writers on one environment at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;
use vibemon_projector::batch::Located;
use vibemon_projector::writer::write_batch;
use vibemon_schemas::{DeploymentReported, DeploymentStatus, ExternalId};
use vibemon_store::checkpoints::digest;
use vibemon_store::checkpoints::Position;
use vibemon_testkit::events::publish_fingerprinted;
use vibemon_testkit::ledger::records_on;
use vibemon_testkit::{read_topic, TestDb, TestTopic};

use crate::helpers::*;

/// Runs a projector until it has read everything on the topic.
async fn project_all(db_url: &str, topic: &TestTopic, group: &str) -> anyhow::Result<()> {
    run_until_caught_up(config(db_url, topic, group)).await
}

/// One deployment reported first for acme/api, then for acme/web, both
/// successes: as events written before external ids included the
/// repository could say.
fn moving_deployment(
    world: &World,
    external_id: &str,
    first_at: &str,
    second_at: &str,
) -> (DeploymentReported, DeploymentReported) {
    let first = world.external(
        "acme/api",
        external_id,
        DeploymentStatus::Success,
        at(first_at),
    );
    let mut second = world.external(
        "acme/web",
        external_id,
        DeploymentStatus::Success,
        at(second_at),
    );
    second.deployment_id = first.deployment_id;
    (first, second)
}

async fn rebuilt_digest(topic: &TestTopic) -> String {
    let rebuilt = TestDb::new().await;
    project_all(&rebuilt.url, topic, &group()).await.unwrap();
    digest(&rebuilt.pool).await.unwrap()
}

fn header(record: &vibemon_testkit::ReadRecord, name: &str) -> String {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", record.headers))
}

#[tokio::test]
async fn a_deployment_that_moves_to_another_repository_in_a_later_batch_leaves_no_stale_current_state(
) {
    // Events written before external ids included the repository: one
    // deployment id, reported first for acme/api and then for acme/web.
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let p = producer(&topic.brokers);
    let (first, second) =
        moving_deployment(&world, "42", "2024-01-15T10:00:00Z", "2024-01-15T10:05:00Z");
    let group = group();

    publish(&p, &topic.name, std::slice::from_ref(&first)).await;
    project_all(&db.url, &topic, &group).await.unwrap();
    publish(&p, &topic.name, std::slice::from_ref(&second)).await;
    project_all(&db.url, &topic, &group).await.unwrap();

    assert_eq!(
        current_by_repository(&db.pool).await,
        vec![("acme/web".to_owned(), first.deployment_id)],
        "acme/api no longer has a successful deployment"
    );
    assert_eq!(
        digest(&db.pool).await.unwrap(),
        rebuilt_digest(&topic).await,
        "the live tables equal a rebuild that saw both reports in one batch"
    );
}

#[tokio::test]
async fn one_external_id_reported_for_two_repositories_is_two_deployments() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let t = at("2024-01-15T10:00:00Z");
    let events = [
        world.external("acme/api", "BUILD-7", DeploymentStatus::Success, t),
        world.external("acme/web", "BUILD-7", DeploymentStatus::Success, t),
    ];
    assert_ne!(events[0].deployment_id, events[1].deployment_id);
    publish(&producer(&topic.brokers), &topic.name, &events).await;

    project_all(&db.url, &topic, &group()).await.unwrap();

    assert_eq!(count(&db.pool, "deployments").await, 2);
    assert_eq!(count(&db.pool, "current_deployments").await, 2);
}

#[tokio::test]
async fn a_record_postgres_refuses_goes_to_the_dlq_with_the_reason_and_the_rest_of_its_batch_is_applied(
) {
    // Arrange: a rule only Postgres knows, so the record decodes but cannot
    // be written (the fault a real broker and a valid producer cannot make).
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    sqlx::query(
        "ALTER TABLE deployments ADD CONSTRAINT test_no_poison CHECK (repo_full_name <> 'acme/poison')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (total, poison) = (1000, 617);
    let mut events = Vec::new();
    for i in 0..total {
        let repo = if i == poison {
            "acme/poison"
        } else {
            "acme/api"
        };
        events.push(world.report(
            repo,
            at("2024-01-15T10:00:00Z") + chrono::Duration::seconds(i),
        ));
    }
    publish(&producer(&topic.brokers), &topic.name, &events).await;

    // Act: one batch holds every record, so the whole batch is refused first.
    let mut cfg = config(&db.url, &topic, &group());
    cfg.batch_max = 2000;
    cfg.batch_linger_ms = 1000;
    cfg.batch_idle_ms = 1000;
    let started = std::time::Instant::now();
    run_until_caught_up(cfg).await.unwrap();
    let with_poison = started.elapsed();

    // Assert
    assert_eq!(count(&db.pool, "deployment_audit").await, total - 1);
    let poison_applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deployment_audit WHERE event_id = $1")
            .bind(events[poison as usize].event_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        poison_applied, 0,
        "no part of the refused event was written"
    );
    let next: i64 = sqlx::query_scalar("SELECT next_offset FROM projector_checkpoints")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        next, total,
        "the checkpoint passed the dead-lettered record"
    );
    let dlq = read_topic(&topic.brokers, &topic.dlq(), 2, Duration::from_secs(5)).await;
    assert_eq!(dlq.len(), 1);
    assert_eq!(header(&dlq[0], "dlq_original_offset"), poison.to_string());
    assert_eq!(header(&dlq[0], "dlq_reason_class"), "rejected_by_postgres");
    assert!(
        header(&dlq[0], "dlq_reason").contains("test_no_poison"),
        "{}",
        header(&dlq[0], "dlq_reason")
    );
    assert_eq!(
        dlq[0].payload.as_deref(),
        Some(&events[poison as usize].encode()[..])
    );

    // For the record: the same records into a database without the rule.
    let clean = TestDb::new().await;
    let started = std::time::Instant::now();
    project_all(&clean.url, &topic, &group()).await.unwrap();
    eprintln!(
        "{total} events from start to caught up: {with_poison:?} with one record refused by Postgres, {:?} without",
        started.elapsed()
    );
}

#[tokio::test]
async fn records_ingest_would_have_refused_go_to_the_dlq_instead_of_stalling_the_projector() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let p = producer(&topic.brokers);
    let good = world.report("acme/api", at("2024-01-15T10:00:00Z"));
    let hostile: Vec<(&str, Value)> = vec![
        ("api_key_name", Value::from("ci\u{0}key")),
        ("extra_data", serde_json::json!({"note": "a\u{0}b"})),
        ("extra_data", serde_json::json!({"k\u{0}": 1})),
        ("api_key_name", Value::from("x".repeat(5000))),
        ("deployed_at", Value::from("0001-01-01T00:00:00Z")),
    ];
    for (field, value) in &hostile {
        let mut v: Value = serde_json::from_slice(&good.encode()).unwrap();
        v["event_id"] = Value::from(Uuid::now_v7().to_string());
        v[*field] = value.clone();
        publish_raw(&p, &topic.name, "k", v.to_string().as_bytes()).await;
    }
    publish(&p, &topic.name, std::slice::from_ref(&good)).await;

    project_all(&db.url, &topic, &group()).await.unwrap();

    assert_eq!(count(&db.pool, "deployment_audit").await, 1);
    let dlq = read_topic(
        &topic.brokers,
        &topic.dlq(),
        hostile.len() + 1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(dlq.len(), hostile.len());
    for r in &dlq {
        assert_eq!(header(r, "dlq_reason_class"), "invalid");
    }
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_body_keeps_the_first_report_and_records_the_conflict(
) {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let p = producer(&topic.brokers);
    let first = world.report("acme/api", at("2024-01-15T10:00:00Z"));
    let mut reuse = world.report("acme/web", at("2024-01-15T10:01:00Z"));
    reuse.event_id = first.event_id;
    reuse.deployment_id = first.deployment_id;
    publish_fingerprinted(&p, &topic.name, &first, "sha256:aaaa").await;
    publish_fingerprinted(&p, &topic.name, &first, "sha256:aaaa").await; // a true retry
    publish_fingerprinted(&p, &topic.name, &reuse, "sha256:bbbb").await;
    let group = group();

    let projector = spawn(config(&db.url, &topic, &group)).await;
    // Wait for the checkpoint to pass all three, then stop before asserting,
    // so a failed assertion does not leave the projector running.
    vibemon_testkit::eventually(Duration::from_secs(30), || async {
        (next_offset(&db.pool).await == Some(3)).then_some(())
    })
    .await;
    let metrics = reqwest::get(format!("http://{}/metrics", projector.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    projector.stop().await.unwrap();

    let kept: (String, i32) =
        sqlx::query_as("SELECT repo_full_name, reports FROM deployments WHERE id = $1")
            .bind(first.deployment_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(kept, ("acme/api".to_owned(), 1), "the first report stays");
    let conflict: (Uuid, String, String, i64) = sqlx::query_as(
        "SELECT event_id, kept_fingerprint, rejected_fingerprint, kafka_offset FROM idempotency_conflicts",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        conflict,
        (
            first.event_id,
            "sha256:aaaa".to_owned(),
            "sha256:bbbb".to_owned(),
            2
        )
    );
    assert!(
        metrics.contains("vibemon_projector_idempotency_conflicts_total 1"),
        "{metrics}"
    );
    assert_eq!(
        digest(&db.pool).await.unwrap(),
        rebuilt_digest(&topic).await
    );
}

#[tokio::test]
async fn a_checkpoint_beyond_the_end_of_the_topic_stops_the_projector_and_says_to_replay() {
    // As after the topic was deleted and created again: the database says
    // 100 records were applied, the topic holds 2.
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let group = group();
    sqlx::query(
        "INSERT INTO projector_checkpoints (consumer_group, topic, partition, next_offset) VALUES ($1, $2, 0, 100)",
    )
    .bind(&group)
    .bind(&topic.name)
    .execute(&db.pool)
    .await
    .unwrap();
    let events = [
        world.report("acme/api", at("2024-01-15T10:00:00Z")),
        world.report("acme/api", at("2024-01-15T10:01:00Z")),
    ];
    publish(&producer(&topic.brokers), &topic.name, &events).await;

    let err = format!("{:#}", failure(config(&db.url, &topic, &group)).await);

    assert!(err.contains("beyond the end"), "{err}");
    assert!(err.contains("vibemon replay"), "{err}");
    assert_eq!(count(&db.pool, "deployment_audit").await, 0);
    assert_eq!(
        next_offset(&db.pool).await,
        Some(100),
        "the checkpoint is left for the operator to judge"
    );
    assert_eq!(records_on(&topic.brokers, &topic.name), 2);
}

#[tokio::test]
async fn a_topic_recreated_and_filled_past_the_checkpoint_stops_the_projector() {
    // The database projected 3 records of one topic; the "same" topic now
    // holds 5 other records, so offset 3 exists but follows other records.
    let (db, old, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let p = producer(&old.brokers);
    let t = at("2024-01-15T10:00:00Z");
    let first: Vec<_> = (0..3).map(|_| world.report("acme/api", t)).collect();
    publish(&p, &old.name, &first).await;
    let group = group();
    project_all(&db.url, &old, &group).await.unwrap();
    let new = TestTopic::new(1).await;
    let other: Vec<_> = (0..5).map(|_| world.report("acme/web", t)).collect();
    publish(&p, &new.name, &other).await;
    sqlx::query("UPDATE projector_checkpoints SET topic = $1")
        .bind(&new.name)
        .execute(&db.pool)
        .await
        .unwrap();

    let err = format!("{:#}", failure(config(&db.url, &new, &group)).await);

    assert!(
        err.contains("is not the one this database applied"),
        "{err}"
    );
    assert_eq!(count(&db.pool, "deployment_audit").await, 3);
}

#[tokio::test]
async fn a_projector_paused_past_its_session_drops_its_lost_batch_and_nothing_is_lost_or_doubled() {
    // Arrange: A holds a batch it will not write for a minute.
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let t = at("2024-01-15T10:00:00Z");
    let events: Vec<_> = (0..40).map(|_| world.report("acme/api", t)).collect();
    publish(&producer(&topic.brokers), &topic.name, &events).await;
    let group = group();
    let log = std::env::temp_dir().join(format!("projector-{}.log", uuid::Uuid::new_v4()));
    let mut a = projector_command(&db.url, &topic, &group)
        .env("PROJECTOR_BATCH_MAX", "100000")
        .env("PROJECTOR_BATCH_LINGER_MS", "60000")
        .env("PROJECTOR_BATCH_IDLE_MS", "60000")
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let assigned = vibemon_testkit::eventually(Duration::from_secs(30), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("partitions assigned")
            .then_some(())
    })
    .await;
    assert!(assigned.is_some(), "A was never assigned the partition");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Act: A is frozen past its 10 s session; B takes over and applies all;
    // then A wakes up with its batch.
    let signal = |sig: &str, pid: u32| {
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
    };
    assert!(signal("-STOP", a.id()).success());
    let mut b = projector_command(&db.url, &topic, &group).spawn().unwrap();
    wait_rows(&db.pool, "deployment_audit", 40, 60).await;
    assert!(signal("-CONT", a.id()).success());
    let lost = vibemon_testkit::eventually(Duration::from_secs(30), || async {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("partitions lost")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = (a.kill(), b.kill(), a.wait(), b.wait());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);

    // Assert
    assert!(
        lost.is_some(),
        "A never said it lost its partitions:\n{text}"
    );
    assert!(
        text.contains("dropped=40") || text.contains("\"dropped\":40"),
        "{text}"
    );
    assert_eq!(count(&db.pool, "deployment_audit").await, 40);
    let doubled: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(reports), 0)::int8 - (SELECT count(*) FROM deployment_audit) FROM deployments",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0);
}

#[tokio::test]
async fn concurrent_writers_on_one_environment_never_leave_current_state_behind_the_newest_success()
{
    // Two projectors during a rebalance, or a replay over the live database:
    // several transactions write one (environment, repository) at once.
    let db = TestDb::new().await;
    let world = World::new();
    let base = at("2024-01-15T10:00:00Z");
    for round in 0..30i64 {
        let events: Vec<Located> = (0..6i64)
            .map(|i| {
                let minutes = (round * 7 + i * 13) % 41 + round * 100;
                let e = world.report("acme/api", base + chrono::Duration::minutes(minutes));
                Located::new(e, "t", 0, round * 6 + i)
            })
            .collect();
        let writes = events.iter().enumerate().map(|(i, l)| {
            let pool = db.pool.clone();
            let l = l.clone();
            async move {
                write_batch(&pool, &format!("g{i}"), &[l], &BTreeMap::new())
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(writes).await;
        let newest = events
            .iter()
            .max_by_key(|l| (l.event.deployed_at, l.event.deployment_id))
            .unwrap();
        assert_eq!(
            current_deployment(&db.pool).await,
            newest.event.deployment_id,
            "round {round}: current state is the newest success"
        );
    }
}

#[tokio::test]
async fn a_checkpoint_never_moves_backwards() {
    let db = TestDb::new().await;
    let offsets = |n: i64| BTreeMap::from([(("t".to_owned(), 0), Position::at(n))]);

    write_batch(&db.pool, "g", &[], &offsets(10)).await.unwrap();
    write_batch(&db.pool, "g", &[], &offsets(5)).await.unwrap();

    assert_eq!(next_offset(&db.pool).await, Some(10));
}

#[tokio::test]
async fn an_external_deployment_moving_repository_inside_one_batch_updates_both_keys() {
    let db = TestDb::new().await;
    let world = World::new();
    let (a, mut b) = moving_deployment(&world, "7", "2024-01-15T10:00:00Z", "2024-01-15T10:01:00Z");
    b.external_id = Some(ExternalId::parse("7").unwrap());
    let batch = [Located::new(a, "t", 0, 0), Located::new(b, "t", 0, 1)];

    write_batch(&db.pool, "g", &batch, &BTreeMap::new())
        .await
        .unwrap();

    let repos: Vec<String> =
        sqlx::query_scalar("SELECT repo_full_name FROM current_deployments ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(repos, ["acme/web"]);
}
