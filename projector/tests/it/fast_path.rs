//! The writer's two paths: a batch of events new to the ledger is appended
//! with `COPY`, and anything the `COPY` finds already there (an applied
//! event, a known deployment) is merged instead, with the same rows.

use std::collections::BTreeMap;

use vibemon_projector::batch::Located;
use vibemon_projector::writer::write_batch;
use vibemon_store::checkpoints::digest;
use vibemon_testkit::TestDb;

use crate::helpers::*;

type History = (i64, i32, chrono::DateTime<chrono::Utc>, uuid::Uuid);

async fn history(db: &TestDb) -> History {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM deployments), max(reports), max(deployed_at), max(last_event_id::text)::uuid FROM deployments",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_new_report_of_a_deployment_the_history_already_holds_is_merged_not_refused() {
    // Two reports of one deployment with no external id: the copy path
    // expects a deployment of its own and meets the stored row.
    let (db, world) = (TestDb::new().await, World::new());
    let first = world.report("acme/api", at("2024-01-15T10:00:00Z"));
    let mut second = world.report("acme/api", at("2024-01-15T10:05:00Z"));
    second.deployment_id = first.deployment_id;
    let second_id = second.event_id;

    write_batch(
        &db.pool,
        "g",
        &[Located::new(first, "t", 0, 0)],
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    let applied = write_batch(
        &db.pool,
        "g",
        &[Located::new(second, "t", 0, 1)],
        &BTreeMap::new(),
    )
    .await
    .expect("the known deployment is merged");

    assert_eq!(applied.new_events, 1);
    assert_eq!(count(&db.pool, "deployment_audit").await, 2);
    assert_eq!(
        history(&db).await,
        (1, 2, at("2024-01-15T10:05:00Z"), second_id),
        "one deployment, both reports, the later one current"
    );
}

#[tokio::test]
async fn a_batch_mixing_applied_and_new_events_gives_the_rows_of_one_event_at_a_time() {
    let world = World::new();
    let events: Vec<Located> = (0..6i64)
        .map(|i| {
            let e = world.report(
                "acme/api",
                at("2024-01-15T10:00:00Z") + chrono::Duration::minutes(i),
            );
            let mut l = Located::new(e, "t", 0, i);
            // Each from a traced request: both paths keep the trace in the
            // audit row (the digest covers it).
            l.traceparent = vibemon_schemas::event::TraceParent::new(0xabc0 + i as u128, 7, 1);
            l
        })
        .collect();
    // One event at a time: every batch takes the copy path.
    let one_by_one = TestDb::new().await;
    for l in &events {
        write_batch(
            &one_by_one.pool,
            "g",
            std::slice::from_ref(l),
            &BTreeMap::new(),
        )
        .await
        .unwrap();
    }
    // Half first, then everything again with a repeat inside the batch: the
    // second batch meets applied events and merges.
    let mixed = TestDb::new().await;
    write_batch(&mixed.pool, "g", &events[..3], &BTreeMap::new())
        .await
        .unwrap();
    let mut again = events.clone();
    again.push(events[4].clone());
    let applied = write_batch(&mixed.pool, "g", &again, &BTreeMap::new())
        .await
        .unwrap();

    assert_eq!((applied.new_events, applied.duplicates), (3, 4));
    assert_eq!(
        digest(&mixed.pool).await.unwrap(),
        digest(&one_by_one.pool).await.unwrap()
    );
    let traced: Vec<String> = sqlx::query_scalar(
        "SELECT traceparent FROM deployment_audit WHERE traceparent IS NOT NULL ORDER BY kafka_offset",
    )
    .fetch_all(&mixed.pool)
    .await
    .unwrap();
    let sent: Vec<String> = events
        .iter()
        .map(|l| l.traceparent.unwrap().to_string())
        .collect();
    assert_eq!(traced, sent, "the merge path kept every trace too");
}
