//! Records that cannot be applied go to the DLQ with their reason, and the
//! projector moves on; too many in a row stop it loudly.

use std::time::Duration;

use vibemon_testkit::ledger::{records_on, set_topic_config};
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
    // The poison record came from a traced request: its trace goes with it.
    let traced = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "ce_traceparent",
        value: Some(traced),
    });
    p.send(
        rdkafka::producer::FutureRecord::to(&topic.name)
            .key("k")
            .payload(&b"{not json"[..])
            .headers(headers),
        Duration::from_secs(10),
    )
    .await
    .expect("acknowledged");
    let mut future = world.report("acme/api", at("2024-01-15T10:01:00Z"));
    future.schema_version = vibemon_schemas::LATEST_SCHEMA_VERSION + 1;
    publish_raw(&p, &topic.name, "k", &future.encode()).await;
    publish(
        &p,
        &topic.name,
        &[world.report("acme/api", at("2024-01-15T10:02:00Z"))],
    )
    .await;

    let projector = spawn(config(&db.url, &topic, &group())).await;
    wait_rows(&db.pool, "deployment_audit", 2, 30).await;
    let dlq = read_topic(&topic.brokers, &topic.dlq(), 2, Duration::from_secs(20)).await;
    projector.stop().await.unwrap();

    // read_topic stops at the 2 it wants; the watermarks show there are no more.
    assert_eq!(records_on(&topic.brokers, &topic.dlq()), 2);
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
    let newer = format!(
        "schema_version {}",
        vibemon_schemas::LATEST_SCHEMA_VERSION + 1
    );
    assert!(
        header(1, "dlq_reason").contains(&newer),
        "{}",
        header(1, "dlq_reason")
    );
    assert_eq!(header(0, "dlq_reason_class"), "invalid");
    assert_eq!(header(1, "dlq_reason_class"), "unsupported_version");
    assert_eq!(header(0, "dlq_original_topic"), topic.name);
    assert_eq!(header(0, "dlq_original_offset"), "1");
    assert_eq!(header(1, "dlq_original_partition"), "0");
    assert!(header(0, "dlq_time").starts_with("20"));
    assert_eq!(
        dlq[0].payload.as_deref(),
        Some(&b"{not json"[..]),
        "the original bytes are kept"
    );
    assert_eq!(header(0, "ce_traceparent"), traced, "its trace is kept");
    assert!(
        dlq[1].headers.iter().all(|(k, _)| k != "ce_traceparent"),
        "a record without a trace gets none"
    );
}

/// The next offset the checkpoints of `db` hold for partition 0 (0 if none).
async fn checkpoint(db: &TestDb) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>(
        "SELECT max(next_offset) FROM projector_checkpoints WHERE partition = 0",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
    .unwrap_or(0)
}

#[tokio::test]
async fn too_many_invalid_records_in_a_row_stop_the_projector_before_its_checkpoint_passes_more_than_the_limit(
) {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let p = producer(&topic.brokers);
    for _ in 0..8 {
        publish_raw(&p, &topic.name, "k", b"garbage").await;
    }
    let mut cfg = config(&db.url, &topic, &group());
    cfg.dlq_max_consecutive = 5;
    // Batches of two, so the first bad records are dead-lettered and
    // checkpointed before the run grows past the limit: the checkpoint moves,
    // and the test can tell "stopped within the limit" from "never started".
    cfg.batch_max = 2;
    cfg.batch_linger_ms = 500;

    let err = failure(cfg).await;

    assert!(
        err.to_string().contains("invalid records in a row"),
        "{err}"
    );
    let next = checkpoint(&db).await;
    let dead_lettered = records_on(&topic.brokers, &topic.dlq());
    println!("8 bad records, limit 5: checkpoint at {next}, {dead_lettered} on the DLQ");
    assert!(
        next <= 5,
        "the checkpoint passed {next} bad records in a row; the limit is 5"
    );
    assert!(
        next > 0,
        "with batches of two, the first bad records are dead-lettered before the stop"
    );
    assert_eq!(
        dead_lettered, next,
        "every record the checkpoint passed is on the DLQ, and no other"
    );
}

#[tokio::test]
async fn a_dlq_send_that_fails_stops_the_projector_before_its_checkpoint_passes_the_record() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let dlq = topic.dlq();
    // The broker refuses any record bigger than this on the DLQ; the
    // dead-lettered copy of the bad record (with its dlq_* headers) is bigger.
    set_topic_config(&topic.brokers, &dlq, "max.message.bytes", "64").await;
    let p = producer(&topic.brokers);
    let before = world.report("acme/api", at("2024-01-15T10:00:00Z"));
    let after = world.report("acme/api", at("2024-01-15T10:02:00Z"));
    publish(&p, &topic.name, std::slice::from_ref(&before)).await;
    publish_raw(&p, &topic.name, "k", b"{not json").await;
    publish(&p, &topic.name, std::slice::from_ref(&after)).await;
    let mut cfg = config(&db.url, &topic, &group());
    cfg.batch_max = 1;

    let err = failure(cfg).await;

    assert!(err.to_string().contains("Kafka"), "{err}");
    let applied: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT event_id FROM deployment_audit")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let next = checkpoint(&db).await;
    println!("DLQ send refused: checkpoint at {next}, applied {applied:?}");
    assert!(
        next <= 1,
        "the checkpoint passed offset 1, a record neither applied nor dead-lettered: {next}"
    );
    assert!(
        !applied.contains(&after.event_id),
        "a record after the failed one was applied"
    );
    assert_eq!(records_on(&topic.brokers, &dlq), 0);
    // With batches of one, the record before was applied on its own.
    assert_eq!(applied, vec![before.event_id]);
    assert_eq!(next, 1);
}
