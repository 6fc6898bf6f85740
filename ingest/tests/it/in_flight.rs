//! The cap on requests in flight (`INGEST_MAX_IN_FLIGHT`): past it a request
//! is answered 503 with `Retry-After` at once, before its body is read, and
//! under it requests are served as usual.
//!
//! A slot is held by a webhook whose head arrived but whose body has not:
//! admitted, it waits in the body read until the body timeout.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, MINIMAL};

/// A webhook head announcing `MINIMAL`'s length, followed by `body_sent`
/// bytes of it.
async fn webhook_sending(app: &TestApp, body_sent: usize) -> TcpStream {
    let mut conn = TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Workspace-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.tenant.key,
        MINIMAL.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&MINIMAL.as_bytes()[..body_sent])
        .await
        .unwrap();
    conn
}

/// Waits until ingest counts `n` requests in flight.
async fn until_in_flight(app: &TestApp, n: usize) {
    let reached = vibemon_testkit::eventually(Duration::from_secs(5), || async {
        (app.metric("vibemon_http_requests_in_flight ").await == Some(n as f64)).then_some(())
    })
    .await;
    assert!(reached.is_some(), "never {n} requests in flight");
}

/// The whole answer on `conn` (ingest closes it), or a panic after 5 s.
async fn answer(mut conn: TcpStream) -> String {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut bytes))
        .await
        .expect("answered and closed within 5 s")
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn a_request_past_the_in_flight_cap_gets_an_immediate_503_before_its_body_is_read_and_those_under_it_are_served(
) {
    let app = TestApp::spawn_with(|c| {
        c.max_in_flight = 2;
        c.body_timeout_ms = 10_000;
    })
    .await;
    let first_stalled = webhook_sending(&app, 10).await;
    until_in_flight(&app, 1).await;

    let under_the_cap = app.post(MINIMAL).await.status().as_u16();
    let second_stalled = webhook_sending(&app, 10).await;
    until_in_flight(&app, 2).await;
    let started = Instant::now();
    // No body at all: only a refusal that does not wait for it can answer.
    let refused = answer(webhook_sending(&app, 0).await).await;
    let refused_in = started.elapsed();
    let refused_total = app.metric("vibemon_http_requests_refused_total").await;
    drop((first_stalled, second_stalled));
    let served_again = vibemon_testkit::eventually(Duration::from_secs(5), || async {
        let status = app.post(MINIMAL).await.status().as_u16();
        (status == 201).then_some(status)
    })
    .await;

    assert_eq!(under_the_cap, 201, "one slot of two was free");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{refused}"
    );
    let body: serde_json::Value =
        serde_json::from_str(refused.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Too many requests in progress"),
        "{body}"
    );
    assert!(
        refused_in < Duration::from_secs(1),
        "refused after {refused_in:?}"
    );
    assert_eq!(refused_total, Some(1.0));
    assert!(served_again.is_some(), "no 201 once the slots were freed");
    assert_eq!(app.record_count().await, 2, "records = 201s");
}
