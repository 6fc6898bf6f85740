//! The hostile-request corpus (`tests/corpus/hostile.jsonl`, made by
//! `generate.py` beside it): invalid JSON, wrong types, deep nesting,
//! duplicate keys, invalid UTF-8 and NUL, 1 MB and 100 MB bodies, wrong or
//! missing content types, bad keys, injection strings in every field, Unicode
//! look-alikes, extreme timestamps. Each request must get its expected status,
//! the service must stay up, and only the accepted ones may reach Kafka.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::TestApp;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    expect: u16,
    content_type: Option<String>,
    key: String,
    body: Option<String>,
    body_b64: Option<String>,
    body_bytes: Option<usize>,
}

fn corpus() -> Vec<Case> {
    include_str!("../corpus/hostile.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a corpus line"))
        .collect()
}

/// Declares a huge body but sends only a little more than the limit: the
/// answer must come without the server reading the rest.
async fn oversized(app: &TestApp, declared: usize) -> u16 {
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\nX-Workspace-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n",
        app.tenant.key
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut body =
        br#"{"environment":"production","repository":"acme/api","extra_data":{"x":""#.to_vec();
    body.resize(declared.min(70_000), b'a');
    let _ = conn.write_all(&body).await;
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("answered in time")
        .unwrap();
    let status = String::from_utf8_lossy(&buf[..n]);
    status
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn every_hostile_request_gets_its_expected_status_and_only_accepted_ones_reach_kafka() {
    // The corpus is replayed as fast as it goes from one address with one
    // key; rate limits have their own tests.
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_per_ip = 0;
        c.rate_limit_per_key = 0;
    })
    .await;
    let cases = corpus();
    assert!(
        cases.len() >= 200,
        "the corpus has {} requests",
        cases.len()
    );

    let mut wrong = Vec::new();
    for case in &cases {
        let status = if let Some(n) = case.body_bytes {
            oversized(&app, n).await
        } else {
            let body = match (&case.body, &case.body_b64) {
                (Some(text), _) => text.clone().into_bytes(),
                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
                _ => Vec::new(),
            };
            let mut req = app
                .client
                .post(app.url("/api/v1/deployments/webhook"))
                .body(body);
            if let Some(ct) = &case.content_type {
                req = req.header("Content-Type", ct);
            }
            match case.key.as_str() {
                "none" => {}
                "valid" => req = req.header("X-Workspace-Key", &app.tenant.key),
                literal => req = req.header("X-Workspace-Key", literal),
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            if status >= 400 {
                let v: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{}: not JSON: {text}", case.name));
                assert!(
                    v["detail"].is_string() || v["detail"].is_array(),
                    "{}: {text}",
                    case.name
                );
            }
            status
        };
        if status != case.expect {
            wrong.push(format!(
                "{}: expected {}, got {status}",
                case.name, case.expect
            ));
        }
    }

    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the service is still up");
    let accepted = cases.iter().filter(|c| c.expect == 201).count();
    let events = app.events(accepted + 10, Duration::from_secs(5)).await;
    assert_eq!(
        events.len(),
        accepted,
        "exactly the accepted requests reached Kafka"
    );
}
