//! Events become history, audit and current state; redeliveries and replays
//! change nothing; a rebuild from the topic reproduces the tables.

use std::time::Duration;

use vibemon_store::checkpoints::digest;
use vibemon_testkit::{TestDb, TestTopic};

use crate::helpers::*;

#[tokio::test]
async fn events_on_the_topic_become_history_audit_current_state_and_checkpoints() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(3).await, World::new());
    let events = vec![
        world.report("acme/api", at("2024-01-15T10:00:00Z")),
        world.report("acme/api", at("2024-01-15T11:00:00Z")),
        world.report("acme/web", at("2024-01-15T10:30:00Z")),
    ];
    publish(&producer(&topic.brokers), &topic.name, &events).await;

    project_until(&db, &topic, &group(), "deployment_audit", 3).await;

    assert_eq!(count(&db.pool, "deployments").await, 3);
    assert_eq!(
        current_by_repository(&db.pool).await,
        vec![
            ("acme/api".into(), events[1].deployment_id),
            ("acme/web".into(), events[2].deployment_id)
        ]
    );
    let audit: (String, String, i32) = sqlx::query_as(
        "SELECT api_key_name, kafka_topic, kafka_partition FROM deployment_audit WHERE event_id = $1",
    )
    .bind(events[0].event_id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(audit.0, "test");
    assert_eq!(audit.1, topic.name);
    let next: i64 = sqlx::query_scalar("SELECT sum(next_offset)::int8 FROM projector_checkpoints")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(next, 3, "checkpoints cover every record");
}

#[tokio::test]
async fn the_same_event_delivered_twice_is_one_row_everywhere() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let event = world.report("acme/api", at("2024-01-15T10:00:00Z"));
    let p = producer(&topic.brokers);
    publish(&p, &topic.name, &[event.clone(), event.clone()]).await;

    let projector = spawn(config(&db.url, &topic, &group())).await;
    wait_rows(&db.pool, "projector_checkpoints", 1, 30).await;
    let caught_up = vibemon_testkit::eventually(Duration::from_secs(20), || async {
        (next_offset(&db.pool).await == Some(2)).then_some(())
    })
    .await;
    projector.stop().await.unwrap();

    assert!(caught_up.is_some());
    assert_eq!(count(&db.pool, "deployment_audit").await, 1);
    assert_eq!(count(&db.pool, "deployments").await, 1);
    let reports: i32 = sqlx::query_scalar("SELECT reports FROM deployments")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(reports, 1);
}

#[tokio::test]
async fn a_restarted_projector_resumes_from_its_postgres_checkpoint() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(2).await, World::new());
    let p = producer(&topic.brokers);
    let group = group();
    publish(
        &p,
        &topic.name,
        &[world.report("acme/api", at("2024-01-15T10:00:00Z"))],
    )
    .await;
    project_until(&db, &topic, &group, "deployment_audit", 1).await;

    publish(
        &p,
        &topic.name,
        &[world.report("acme/api", at("2024-01-15T11:00:00Z"))],
    )
    .await;
    project_until(&db, &topic, &group, "deployment_audit", 2).await;

    assert_eq!(count(&db.pool, "deployments").await, 2);
    let dup: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments WHERE reports <> 1")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(dup, 0);
}

#[tokio::test]
async fn replaying_the_topic_into_an_empty_database_gives_identical_tables_and_over_the_live_one_changes_nothing(
) {
    let (live, topic, world) = (TestDb::new().await, TestTopic::new(3).await, World::new());
    let p = producer(&topic.brokers);
    let mut events = Vec::new();
    for i in 0..60 {
        let t = at("2024-01-15T10:00:00Z") + chrono::Duration::minutes(i);
        events.push(world.report(["acme/api", "acme/web", "acme/worker"][i as usize % 3], t));
        if i % 7 == 0 {
            let status = [
                vibemon_schemas::DeploymentStatus::Pending,
                vibemon_schemas::DeploymentStatus::Failed,
            ][i as usize % 2];
            events.push(world.external("acme/api", &format!("run-{}", i % 3), status, t));
        }
    }
    publish(&p, &topic.name, &events).await;
    let projector = spawn(config(&live.url, &topic, &group())).await;
    wait_rows(&live.pool, "deployment_audit", events.len() as i64, 60).await;
    projector.stop().await.unwrap();
    let live_digest = digest(&live.pool).await.unwrap();

    let rebuilt = TestDb::new().await;
    let mut cfg = config(&rebuilt.url, &topic, &group());
    cfg.until_caught_up = true;
    spawn(cfg).await.finished().await.unwrap();
    let mut again = config(&live.url, &topic, &group());
    again.until_caught_up = true;
    spawn(again).await.finished().await.unwrap();

    assert_eq!(
        digest(&rebuilt.pool).await.unwrap(),
        live_digest,
        "a rebuild reproduces every table"
    );
    assert_eq!(
        digest(&live.pool).await.unwrap(),
        live_digest,
        "replaying over the live database changes nothing"
    );
}

#[tokio::test]
async fn batches_written_by_several_writers_at_once_give_the_same_tables_as_one_writer() {
    let topic = TestTopic::new(6).await;
    let worlds: Vec<World> = (0..12).map(|_| World::new()).collect();
    let mut events = Vec::new();
    for i in 0..180 {
        let world = &worlds[i % worlds.len()];
        let t = at("2024-01-15T10:00:00Z") + chrono::Duration::minutes(i as i64);
        events.push(world.report(["acme/api", "acme/web"][i % 2], t));
        if i % 5 == 0 {
            let status = [
                vibemon_schemas::DeploymentStatus::InProgress,
                vibemon_schemas::DeploymentStatus::Success,
            ][i % 2];
            events.push(world.external("acme/api", &format!("run-{}", i % 4), status, t));
        }
    }
    publish(&producer(&topic.brokers), &topic.name, &events).await;

    let mut digests = Vec::new();
    for writers in [1, 3] {
        let db = TestDb::new().await;
        let mut cfg = config(&db.url, &topic, &group());
        cfg.until_caught_up = true;
        cfg.writers = writers;
        spawn(cfg).await.finished().await.unwrap();
        assert_eq!(
            count(&db.pool, "deployment_audit").await,
            events.len() as i64
        );
        let partitions: i64 = sqlx::query_scalar("SELECT count(*) FROM projector_checkpoints")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert!(partitions > 1, "the events span several partitions");
        digests.push(digest(&db.pool).await.unwrap());
    }
    assert_eq!(digests[0], digests[1]);
}
