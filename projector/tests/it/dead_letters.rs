//! Records that cannot be applied go to the DLQ with their reason, and the
//! projector moves on; too many in a row stop it loudly.

use std::time::Duration;

use vibemon_testkit::{read_topic, TestDb, TestTopic};

use crate::helpers::*;

#[tokio::test]
async fn a_poison_record_goes_to_the_dlq_with_its_reason_and_the_projector_continues() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let p = producer(&topic.brokers);
    publish(
        &p,
        &topic.name,
        &[world.report("acme/api", at("2024-01-15T10:00:00Z"))],
    )
    .await;
    publish_raw(&p, &topic.name, "k", b"{not json").await;
    let mut future = world.report("acme/api", at("2024-01-15T10:01:00Z"));
    future.schema_version = 2;
    publish_raw(&p, &topic.name, "k", &future.encode()).await;
    publish(
        &p,
        &topic.name,
        &[world.report("acme/api", at("2024-01-15T10:02:00Z"))],
    )
    .await;

    let projector = spawn(config(&db.url, &topic, &group())).await;
    wait_rows(&db.pool, "deployment_audit", 2, 30).await;
    let dlq = read_topic(
        &topic.brokers,
        &format!("{}.dlq", topic.name),
        2,
        Duration::from_secs(20),
    )
    .await;
    projector.stop().await.unwrap();

    assert_eq!(dlq.len(), 2);
    let header = |i: usize, name: &str| {
        dlq[i]
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert!(
        header(0, "dlq_reason").contains("invalid"),
        "{}",
        header(0, "dlq_reason")
    );
    assert!(
        header(1, "dlq_reason").contains("schema_version 2"),
        "{}",
        header(1, "dlq_reason")
    );
    assert_eq!(header(0, "dlq_original_topic"), topic.name);
    assert_eq!(header(0, "dlq_original_offset"), "1");
    assert_eq!(header(1, "dlq_original_partition"), "0");
    assert!(header(0, "dlq_time").starts_with("20"));
    assert_eq!(
        dlq[0].payload.as_deref(),
        Some(&b"{not json"[..]),
        "the original bytes are kept"
    );
}

#[tokio::test]
async fn too_many_invalid_records_in_a_row_stop_the_projector_without_moving_its_checkpoint() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let p = producer(&topic.brokers);
    for _ in 0..8 {
        publish_raw(&p, &topic.name, "k", b"garbage").await;
    }
    let mut cfg = config(&db.url, &topic, &group());
    cfg.dlq_max_consecutive = 5;
    cfg.batch_linger_ms = 500;

    let result = tokio::time::timeout(Duration::from_secs(60), spawn(cfg).await.handle)
        .await
        .expect("stops by itself")
        .unwrap();

    let err = result.expect_err("the projector must stop with an error");
    assert!(
        err.to_string().contains("invalid records in a row"),
        "{err}"
    );
    let next: Option<i64> =
        sqlx::query_scalar("SELECT max(next_offset) FROM projector_checkpoints")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        next.unwrap_or(0) < 8,
        "the checkpoint never passed the run of bad records: {next:?}"
    );
}
