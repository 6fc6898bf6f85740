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
    let anonymous = || app.post_as(Some(&vibemon_store::keys::generate().plaintext), MINIMAL);

    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(anonymous().await.status().as_u16());
    }
    let metrics = app.metrics_text().await;

    assert_eq!(statuses, [401, 401, 429]);
    assert!(
        metrics.contains(r#"vibemon_ingest_rejections_total{reason="rate_limited"} 1"#),
        "{metrics}"
    );
}

/// Sends one webhook on a fresh connection and returns the raw answer.
async fn post_raw(app: &TestApp) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let req = format!(
        "POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Workspace-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{MINIMAL}",
        app.tenant.key,
        MINIMAL.len()
    );
    let _ = conn.write_all(req.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        conn.read_to_end(&mut answer),
    )
    .await
    .expect("answered and closed in time");
    String::from_utf8_lossy(&answer).into_owned()
}

/// `n` connections that sent half a request head and wait, each holding a
/// connection slot until the header timeout.
async fn idle_connections(app: &TestApp, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut idle = Vec::new();
    for _ in 0..n {
        let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        conn.write_all(b"POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        idle.push(conn);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    idle
}

/// Closes the idle connections, then posts until a 201 comes back (within
/// 5 s): the raw answer, or `None`.
async fn served_once_closed(app: &TestApp, idle: Vec<tokio::net::TcpStream>) -> Option<String> {
    drop(idle);
    vibemon_testkit::eventually(std::time::Duration::from_secs(5), || async {
        let answer = post_raw(app).await;
        answer.starts_with("HTTP/1.1 201").then_some(answer)
    })
    .await
}

#[tokio::test]
async fn one_client_holding_its_share_of_connections_gets_503_while_the_cap_has_room() {
    let app = TestApp::spawn_with(|c| {
        c.max_connections = 100;
        c.max_connections_per_ip = 3;
        c.header_timeout_ms = 10_000;
    })
    .await;
    let idle = idle_connections(&app, 3).await;

    let refused = post_raw(&app).await;
    let served = served_once_closed(&app, idle).await;

    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        served.is_some(),
        "no 201 once the client's idle connections closed"
    );
}

#[tokio::test]
async fn a_connection_over_the_cap_gets_an_immediate_503_and_a_freed_slot_serves_again() {
    let app = TestApp::spawn_with(|c| {
        c.max_connections = 4;
        c.header_timeout_ms = 10_000;
    })
    .await;
    let idle = idle_connections(&app, 4).await;

    let started = std::time::Instant::now();
    let refused = post_raw(&app).await;
    let refused_in = started.elapsed();
    let served = served_once_closed(&app, idle).await;

    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("Retry-After: 1"), "{refused}");
    assert!(
        refused_in < std::time::Duration::from_secs(1),
        "refused after {refused_in:?}"
    );
    assert!(served.is_some(), "no 201 once the idle connections closed");
    // At least the one above; a retry racing the idle connections' close
    // may have been refused too.
    let refused_total = app.metric("vibemon_http_connections_refused_total").await;
    assert!(refused_total >= Some(1.0), "{refused_total:?}");
}

#[tokio::test]
async fn the_read_api_is_behind_the_per_ip_limit_too() {
    let app = TestApp::spawn_with(|c| c.rate_limit_per_ip = 1).await;

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let random = vibemon_store::keys::generate().plaintext;
        let resp = app.get_as(&random, "/api/v1/deployments").await.unwrap();
        statuses.push(resp.status().as_u16());
    }

    assert_eq!(
        statuses,
        [401, 401, 429],
        "per-IP is checked before any key"
    );
}
