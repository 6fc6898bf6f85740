//! Out-of-order reports: status only moves forward, and a late, older
//! success never replaces a newer one.

use vibemon_schemas::DeploymentStatus::*;
use vibemon_testkit::{TestDb, TestTopic};

use crate::helpers::*;

#[tokio::test]
async fn reports_of_one_external_id_arriving_out_of_order_end_in_the_latest_state() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let success = world.external("acme/api", "run-9", Success, at("2024-01-15T10:10:00Z"));
    let running = world.external("acme/api", "run-9", InProgress, at("2024-01-15T10:05:00Z"));
    let pending = world.external("acme/api", "run-9", Pending, at("2024-01-15T10:00:00Z"));
    // Success first, then the older reports; each in its own batch.
    let p = producer(&topic.brokers);
    let projector = spawn(config(&db.url, &topic, &group())).await;
    for (i, e) in [&success, &running, &pending].into_iter().enumerate() {
        publish(&p, &topic.name, std::slice::from_ref(e)).await;
        wait_rows(&db.pool, "deployment_audit", i as i64 + 1, 30).await;
    }
    projector.stop().await.unwrap();

    let (status, deployed_at, reports, created_at): (
        String,
        chrono::DateTime<chrono::Utc>,
        i32,
        chrono::DateTime<chrono::Utc>,
    ) = sqlx::query_as("SELECT status, deployed_at, reports, created_at FROM deployments")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count(&db.pool, "deployments").await, 1);
    assert_eq!(status, "success");
    assert_eq!(deployed_at, at("2024-01-15T10:10:00Z"));
    assert_eq!(reports, 3);
    assert_eq!(
        created_at,
        at("2024-01-15T10:00:00Z"),
        "created_at is the first report's receipt"
    );
}

#[tokio::test]
async fn a_late_older_success_does_not_replace_the_current_deployment() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let newer = world.report("acme/api", at("2024-01-15T12:00:00Z"));
    let older = world.report("acme/api", at("2024-01-15T09:00:00Z"));
    let p = producer(&topic.brokers);
    let projector = spawn(config(&db.url, &topic, &group())).await;
    publish(&p, &topic.name, std::slice::from_ref(&newer)).await;
    wait_rows(&db.pool, "deployment_audit", 1, 30).await;
    publish(&p, &topic.name, std::slice::from_ref(&older)).await;
    wait_rows(&db.pool, "deployment_audit", 2, 30).await;
    projector.stop().await.unwrap();

    assert_eq!(current_deployment(&db.pool).await, newer.deployment_id);
    assert_eq!(
        count(&db.pool, "deployments").await,
        2,
        "the older one is still history"
    );
}

#[tokio::test]
async fn a_failed_deployment_after_a_success_leaves_the_success_current() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let ok = world.report("acme/api", at("2024-01-15T10:00:00Z"));
    let mut failed = world.report("acme/api", at("2024-01-15T11:00:00Z"));
    failed.status = Failed;
    publish(
        &producer(&topic.brokers),
        &topic.name,
        &[ok.clone(), failed],
    )
    .await;

    project_until(&db, &topic, &group(), "deployment_audit", 2).await;

    assert_eq!(current_deployment(&db.pool).await, ok.deployment_id);
}
