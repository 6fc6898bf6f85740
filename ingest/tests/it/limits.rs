//! Rate limits: per API key and per client IP, 429 with Retry-After.

use crate::helpers::{json, TestApp, MINIMAL};

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let app = TestApp::spawn_with(|c| c.rate_limit_per_key = 1).await;

    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let resp = app.post(MINIMAL).await;
        statuses.push(resp.status().as_u16());
        last = Some(resp);
    }

    assert_eq!(
        statuses,
        [201, 201, 429],
        "a burst of twice the rate, then 429"
    );
    let resp = last.unwrap();
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1);
    let (_, body) = json(resp).await;
    assert!(
        body["detail"].as_str().unwrap().contains("API key"),
        "{body}"
    );
}

#[tokio::test]
async fn a_client_address_over_its_rate_gets_429_before_any_key_is_checked() {
    let app = TestApp::spawn_with(|c| c.rate_limit_per_ip = 1).await;
    let anonymous = || {
        app.client
            .post(app.url("/api/v1/deployments/webhook"))
            .header("Content-Type", "application/json")
            .header("X-Workspace-Key", vibemon_store::keys::generate().plaintext)
            .body(MINIMAL)
            .send()
    };

    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(anonymous().await.unwrap().status().as_u16());
    }
    let metrics = app.metrics_text().await;

    assert_eq!(statuses, [401, 401, 429]);
    assert!(
        metrics.contains(r#"vibemon_ingest_rejections_total{reason="rate_limited"} 1"#),
        "{metrics}"
    );
}
