//! `Idempotency-Key` is bound to the request body, as the IETF
//! Idempotency-Key draft asks: a retry (the same bytes) gets the first
//! answer and publishes nothing new; the same key with another body is a
//! client bug and gets `422`, even when both arrive at once.

use std::time::Duration;

use serde_json::json;
use vibemon_schemas::event::{request_fingerprint, REQUEST_FINGERPRINT_HEADER};

use crate::helpers::{json, TestApp, MINIMAL};

const OTHER: &str = r#"{"environment": "production", "repository": "owner/other"}"#;

#[tokio::test]
async fn a_key_reused_with_a_different_body_gets_422_naming_the_header_and_publishes_nothing() {
    let app = TestApp::spawn().await;
    let idem = [("Idempotency-Key", "run-1-production")];

    let (first_status, first) = json(app.post_with(MINIMAL, &idem).await).await;
    let (reused_status, reused) = json(app.post_with(OTHER, &idem).await).await;
    let (retry_status, retry) = json(app.post_with(MINIMAL, &idem).await).await;

    assert_eq!(first_status, 201, "{first}");
    assert_eq!(reused_status, 422, "{reused}");
    let issue = &reused["detail"][0];
    assert_eq!(
        issue["loc"],
        json!(["header", "idempotency-key"]),
        "{reused}"
    );
    assert!(
        issue["msg"]
            .as_str()
            .unwrap()
            .contains("already used for a different request body"),
        "{reused}"
    );
    assert_eq!(retry_status, 201, "{retry}");
    assert_eq!(retry, first, "a true retry still gets the first answer");
    assert_eq!(app.record_count().await, 1, "only the first was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_sharing_a_key_with_different_bodies_let_exactly_one_body_win() {
    let app = TestApp::spawn().await;
    let bodies = [MINIMAL, OTHER];

    let answers = futures::future::join_all((0..12).map(|i| {
        let body = bodies[i % 2];
        let app = &app;
        async move {
            let (status, answer) =
                json(app.post_with(body, &[("Idempotency-Key", "race-1")]).await).await;
            (body, status, answer)
        }
    }))
    .await;

    let winners: Vec<_> = answers.iter().filter(|(_, s, _)| *s == 201).collect();
    let losers: Vec<_> = answers.iter().filter(|(_, s, _)| *s != 201).collect();
    let winning_body = winners.first().expect("one body wins").0;
    assert_eq!(
        winners.len(),
        6,
        "every request with the winning body: {answers:?}"
    );
    assert!(winners
        .iter()
        .all(|(b, _, a)| *b == winning_body && *a == winners[0].2));
    assert!(
        losers
            .iter()
            .all(|(b, s, _)| *b != winning_body && *s == 422),
        "the other body gets 422: {answers:?}"
    );
    assert_eq!(app.record_count().await, 1, "one record for the key");
}

#[tokio::test]
async fn a_request_with_an_idempotency_key_carries_its_body_fingerprint_on_the_record() {
    let app = TestApp::spawn().await;

    let keyed = app
        .post_with(MINIMAL, &[("Idempotency-Key", "fingerprinted")])
        .await;
    let unkeyed = app.post(OTHER).await;
    let records = app.events(2, Duration::from_secs(10)).await;

    assert_eq!(
        (keyed.status().as_u16(), unkeyed.status().as_u16()),
        (201, 201)
    );
    assert_eq!(records.len(), 2);
    let fingerprint_of = |repo: &str| {
        let record = records
            .iter()
            .find(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap()).contains(repo))
            .expect("the record");
        record
            .headers
            .iter()
            .find(|(k, _)| k == REQUEST_FINGERPRINT_HEADER)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        fingerprint_of("owner/repo"),
        Some(request_fingerprint(MINIMAL.as_bytes()))
    );
    assert_eq!(
        fingerprint_of("owner/other"),
        None,
        "no key, no fingerprint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_publish_still_binds_its_key_to_its_body() {
    // linger.ms holds the first record in the producer for 2 s.
    let app = TestApp::spawn_with(|c| c.kafka_linger_ms = 2_000).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\nX-Workspace-Key: {}\r\nContent-Type: application/json\r\nIdempotency-Key: hang-up-1\r\nContent-Length: {}\r\n\r\n{MINIMAL}",
        app.tenant.key,
        MINIMAL.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut conn, request.as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(conn);

    let (status, answer) = json(
        app.post_with(OTHER, &[("Idempotency-Key", "hang-up-1")])
            .await,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    assert_eq!(
        status, 422,
        "the key is still bound to the first body: {answer}"
    );
    assert_eq!(app.record_count().await, 1, "one record for the key");
}
