//! The request deadline covers what happens before an event is handed to
//! Kafka; after the hand-off the answer is the broker's outcome (201, or 503
//! with `Retry-After` within `message.timeout.ms`), never a 408 for an event
//! that then lands on the topic.
//!
//! The produce is slowed with the real broker and librdkafka's own
//! `linger.ms` (every record waits that long before it is sent), so no fake
//! sink is needed; the pre-produce stages are slowed by a client that sends
//! its body late.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, MINIMAL};

/// Sends the webhook request with half its body, waits `pause`, sends the
/// rest; returns the status and how long the answer took from the start.
async fn post_slowly(app: &TestApp, pause: Duration) -> (u16, Duration) {
    let started = Instant::now();
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Workspace-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.tenant.key,
        MINIMAL.len()
    );
    let (first, rest) = MINIMAL.split_at(MINIMAL.len() / 2);
    conn.write_all(format!("{head}{first}").as_bytes())
        .await
        .unwrap();
    let (mut reader, mut writer) = conn.into_split();
    let late_half = tokio::spawn(async move {
        tokio::time::sleep(pause).await;
        // The server may already have answered and closed; that is the answer.
        let _ = writer.write_all(rest.as_bytes()).await;
        writer
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), reader.read_to_end(&mut response)).await;
    let took = started.elapsed();
    drop(late_half.await);
    let status = String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_produce_that_outlasts_the_request_budget_answers_its_outcome_never_408() {
    // 1.2 s of body upload plus 1.5 s of linger is past the 2 s budget.
    let app = TestApp::spawn_with(|c| {
        c.request_timeout_ms = 2_000;
        c.body_timeout_ms = 5_000;
        c.kafka_linger_ms = 1_500;
        c.kafka_message_timeout_ms = 5_000;
    })
    .await;

    let answers =
        futures::future::join_all((0..3).map(|_| post_slowly(&app, Duration::from_millis(1_200))))
            .await;
    // Anything already handed to the producer lands within the linger.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert!(
        answers.iter().all(|(s, _)| *s == 201 || *s == 503),
        "only the produce's outcome may answer: {answers:?}"
    );
    assert_eq!(created, 3, "{answers:?}");
    assert_eq!(app.record_count().await, created as i64, "records = 201s");
}

#[tokio::test]
async fn a_client_slower_than_the_request_deadline_gets_408_and_nothing_is_published() {
    // The body timeout is generous; the request deadline is what stops it.
    let app = TestApp::spawn_with(|c| {
        c.request_timeout_ms = 1_000;
        c.body_timeout_ms = 10_000;
    })
    .await;

    let (status, took) = post_slowly(&app, Duration::from_millis(3_000)).await;

    assert_eq!(status, 408);
    assert!(
        took < Duration::from_millis(2_500),
        "answered after {took:?}"
    );
    assert_eq!(app.record_count().await, 0);
}

#[tokio::test]
async fn a_database_slower_than_the_request_deadline_gets_503_with_retry_after_not_408() {
    // A "database" that accepts connections and never answers: the key
    // lookup hangs past the 1 s deadline (the pool would wait 2 s).
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "postgres://ingest:x@{}/vibemon",
        blackhole.local_addr().unwrap()
    );
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = blackhole.accept().await {
            open.push(conn);
        }
    });
    let app = TestApp::spawn_with(|c| {
        c.database_url = url;
        c.request_timeout_ms = 1_000;
    })
    .await;

    let started = Instant::now();
    let resp = app.post(MINIMAL).await;
    let took = started.elapsed();

    assert_eq!(resp.status(), 503, "our slowness is not the client's");
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        took < Duration::from_millis(1_800),
        "answered after {took:?}"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("authentication"),
        "{body}"
    );
    assert_eq!(app.record_count().await, 0);
    held.abort();
}
