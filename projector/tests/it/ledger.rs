//! What the audit ledger stores: each event as this build encodes it, as
//! JSON text, so whatever bytes carried it onto the topic, it reads back.

use std::collections::BTreeMap;

use vibemon_projector::batch::{Prepared, Record};
use vibemon_projector::writer::write_batch;
use vibemon_schemas::DeploymentReported;
use vibemon_store::checkpoints::digest;
use vibemon_testkit::TestDb;

use crate::helpers::*;

/// `e` encoded, with one more field the event does not know.
fn with_unknown_field(e: &DeploymentReported, value: &[u8]) -> Vec<u8> {
    let mut bytes = e.encode();
    assert_eq!(bytes.pop(), Some(b'}'));
    bytes.extend_from_slice(b",\"unknown\":");
    bytes.extend_from_slice(value);
    bytes.push(b'}');
    bytes
}

#[tokio::test]
async fn an_event_carrying_hostile_unknown_fields_is_applied_and_its_deployment_reads_back() {
    let db = TestDb::new().await;
    let world = World::new();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    // Values serde skips without checking, but that Postgres's json input
    // keeps and a reader then cannot parse (or cannot store at all).
    let hostile: [&[u8]; 5] = [
        br#""\ud800""#,
        b"1e400",
        deep.as_bytes(),
        b"\"\xff\xfe\"",
        br#""a\u0000b""#,
    ];
    let mut records = Vec::new();
    let mut events = Vec::new();
    for (i, value) in hostile.iter().enumerate() {
        let e = world.report(
            "acme/api",
            at("2024-01-15T10:00:00Z") + chrono::Duration::minutes(i as i64),
        );
        records.push(Record {
            topic: "t".into(),
            partition: 0,
            offset: i as i64,
            payload: Some(with_unknown_field(&e, value)),
            key: None,
            fingerprint: None,
            traceparent: None,
        });
        events.push(e);
    }
    let prepared = Prepared::from_records(records, None);
    assert_eq!(prepared.events.len(), hostile.len(), "each decodes");

    let applied = write_batch(&db.pool, "g", &prepared.events, &prepared.next_offsets)
        .await
        .expect("every event is applied");

    assert_eq!(applied.new_events, hostile.len());
    for e in &events {
        let detail = vibemon_store::read::get_deployment(&db.pool, e.workspace_id, e.deployment_id)
            .await
            .expect("the deployment reads back")
            .expect("it exists");
        let payload = &detail.report_log[0].payload;
        assert_eq!(payload, &serde_json::to_value(e).unwrap());
        assert!(payload.get("unknown").is_none());
    }
}

#[tokio::test]
async fn a_ledger_row_written_as_jsonb_before_the_upgrade_matches_its_rebuild() {
    let world = World::new();
    let batch: Vec<_> = (0..3i64)
        .map(|i| {
            let e = world.report(
                "acme/api",
                at("2024-01-15T10:00:00Z") + chrono::Duration::minutes(i),
            );
            vibemon_projector::batch::Located::new(e, "t", 0, i)
        })
        .collect();
    let (live, rebuilt) = (TestDb::new().await, TestDb::new().await);
    for db in [&live, &rebuilt] {
        write_batch(&db.pool, "g", &batch, &BTreeMap::new())
            .await
            .unwrap();
    }
    // What the migration leaves of rows the projector wrote as jsonb: the
    // text jsonb renders (keys sorted, spaces after separators).
    sqlx::query("UPDATE deployment_audit SET payload = payload::jsonb::json")
        .execute(&live.pool)
        .await
        .unwrap();
    let rendered: String = sqlx::query_scalar("SELECT payload::text FROM deployment_audit LIMIT 1")
        .fetch_one(&live.pool)
        .await
        .unwrap();
    assert!(rendered.contains("\": "), "{rendered}");

    assert_eq!(
        digest(&live.pool).await.unwrap(),
        digest(&rebuilt.pool).await.unwrap()
    );
}
