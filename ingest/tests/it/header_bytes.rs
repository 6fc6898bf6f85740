//! Bad bytes in every header the webhook reads: a NUL or invalid UTF-8 in
//! `X-Workspace-Key`, `Idempotency-Key`, `Content-Type` or `X-Request-Id`
//! gets a 4xx, never a 5xx, and never reaches Kafka. Requests are written
//! on a raw socket because HTTP clients refuse to send such headers.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, MINIMAL};

/// The status, the headers and the body of one raw HTTP/1.1 exchange.
struct RawAnswer {
    status: u16,
    head: Vec<u8>,
    body: String,
}

/// Sends the webhook request with the tenant's key and a JSON content type,
/// except that header `name` has the raw `value`.
async fn post_with_raw_header(app: &TestApp, name: &str, value: &[u8]) -> RawAnswer {
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        (
            "X-Workspace-Key".into(),
            app.tenant.key.clone().into_bytes(),
        ),
        ("Content-Type".into(), b"application/json".to_vec()),
    ];
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    headers.push((name.to_owned(), value.to_vec()));
    let mut request =
        b"POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
    for (n, v) in headers {
        request.extend_from_slice(n.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(&v);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(
        format!("Content-Length: {}\r\n\r\n{MINIMAL}", MINIMAL.len()).as_bytes(),
    );
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(&request).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response))
        .await
        .expect("answered in time")
        .unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = response[..split].to_vec();
    let status = String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = String::from_utf8_lossy(&response[split + 4..]).into_owned();
    RawAnswer { status, head, body }
}

/// Asserts a 4xx whose body names the header (by the words given).
fn assert_names(answer: &RawAnswer, status: u16, words: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert!(
        answer.body.to_ascii_lowercase().contains(words),
        "the answer should name {words:?}: {}",
        answer.body
    );
}

#[tokio::test]
async fn invalid_utf8_in_any_webhook_header_gets_a_4xx_naming_it() {
    let app = TestApp::spawn().await;

    let key = post_with_raw_header(&app, "X-Workspace-Key", b"vmk_\xff\xfe_secret").await;
    let idem = post_with_raw_header(&app, "Idempotency-Key", b"run-\xff").await;
    let content_type = post_with_raw_header(&app, "Content-Type", b"application/\xffjson").await;
    let request_id = post_with_raw_header(&app, "X-Request-Id", b"ci-\xc3\x28-42").await;

    // The seed's one answer for a key that is not valid, whatever is wrong with it.
    assert_names(&key, 401, "api key");
    assert_names(&idem, 422, "idempotency-key");
    assert_names(&content_type, 415, "content-type");
    assert_names(&request_id, 422, "x-request-id");
    let loc: Value = serde_json::from_str(&request_id.body).unwrap();
    assert_eq!(
        loc["detail"][0]["loc"],
        serde_json::json!(["header", "x-request-id"])
    );
    assert!(
        !request_id.head.windows(2).any(|w| w == b"\xc3\x28"),
        "the invalid bytes are not echoed back"
    );
    assert_eq!(app.record_count().await, 0, "nothing reached Kafka");
}

#[tokio::test]
async fn a_nul_in_any_webhook_header_gets_a_4xx_and_the_service_stays_up() {
    let app = TestApp::spawn().await;
    let mut statuses = Vec::new();

    for name in [
        "X-Workspace-Key",
        "Idempotency-Key",
        "Content-Type",
        "X-Request-Id",
    ] {
        let answer = post_with_raw_header(&app, name, b"abc\0def").await;
        statuses.push((name, answer.status));
    }
    let after = app.post(MINIMAL).await;

    // hyper refuses a control byte in a header value before the app runs, so
    // the answer is its bare 400: a 4xx, though it cannot name the header.
    for (name, status) in statuses {
        assert_eq!(status, 400, "{name}");
    }
    assert_eq!(after.status(), 201, "the service still answers");
    assert_eq!(
        app.record_count().await,
        1,
        "only the good request reached Kafka"
    );
}
