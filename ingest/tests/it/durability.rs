//! 201 means durable: when Kafka cannot acknowledge, the answer is 503 with
//! `Retry-After`, in bounded time, and ingest recovers by itself.

use std::time::{Duration, Instant};

use vibemon_testkit::TestDb;

use crate::helpers::{TestApp, MINIMAL};

#[tokio::test]
async fn a_topic_kafka_cannot_write_to_gives_503_with_retry_after_within_the_message_timeout() {
    // A topic that does not exist (auto-creation is off) cannot acknowledge.
    let db = TestDb::new().await;
    let topic = vibemon_testkit::TestTopic::new(1).await;
    let mut app = TestApp::spawn_on(db, topic, |c| {
        c.kafka.topic = format!("missing-{}", uuid::Uuid::new_v4().simple());
        c.kafka_message_timeout_ms = 1500;
    })
    .await;
    app.client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let started = Instant::now();
    let resp = app.post(MINIMAL).await;

    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("retry"));
}

#[tokio::test]
async fn a_killed_broker_gives_503_then_ingest_recovers_without_a_restart() {
    let broker = vibemon_testkit::PrivateBroker::start();
    let db = TestDb::new().await;
    let topic = vibemon_testkit::TestTopic::on(&broker.brokers(), 1).await;
    let mut app = TestApp::spawn_on(db, topic, |c| c.kafka_message_timeout_ms = 2000).await;
    app.client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(app.post(MINIMAL).await.status(), 201);

    broker.kill();
    let started = Instant::now();
    let during = app.post(MINIMAL).await;
    let waited = started.elapsed();
    broker.up();
    let recovered = vibemon_testkit::eventually(Duration::from_secs(30), || async {
        (app.post(MINIMAL).await.status() == 201).then_some(())
    })
    .await;

    assert_eq!(during.status(), 503);
    assert!(during.headers().contains_key("retry-after"));
    assert!(waited < Duration::from_secs(6), "503 took {waited:?}");
    assert!(
        recovered.is_some(),
        "ingest did not recover after the broker came back"
    );
    let records = app.events(100, Duration::from_secs(3)).await;
    assert!(
        records.len() >= 2,
        "the 201s before and after the outage are on the topic"
    );
}

mod slow_clients {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::helpers::TestApp;

    #[tokio::test]
    async fn trickled_headers_are_cut_off_by_the_header_timeout() {
        let app = TestApp::spawn_with(|c| c.header_timeout_ms = 1000).await;
        let mut conn = TcpStream::connect(app.addr).await.unwrap();
        conn.write_all(b"POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();

        // Keep trickling a header byte now and then, never finishing.
        let mut buf = [0u8; 1024];
        let closed = loop {
            if started.elapsed() > Duration::from_secs(5) {
                break false;
            }
            if conn.write_all(b"X").await.is_err() {
                break true;
            }
            match tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => {}
                Err(_) => {}
            }
        };

        assert!(closed, "the slow client was not cut off");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "cut off after {:?}",
            started.elapsed()
        );
    }

    async fn open_connections(app: &TestApp) -> i64 {
        app.metric("vibemon_http_open_connections ")
            .await
            .expect("the open-connections gauge") as i64
    }

    #[tokio::test]
    async fn after_twenty_slowloris_clients_are_cut_off_open_connections_return_to_baseline() {
        let app = TestApp::spawn_with(|c| c.header_timeout_ms = 1000).await;
        let baseline = open_connections(&app).await;

        let mut slow = Vec::new();
        for _ in 0..20 {
            let mut conn = TcpStream::connect(app.addr).await.unwrap();
            conn.write_all(b"POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            slow.push(conn);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let during = open_connections(&app).await;
        let after = vibemon_testkit::eventually(Duration::from_secs(5), || async {
            let n = open_connections(&app).await;
            (n == baseline).then_some(n)
        })
        .await;

        assert!(
            during >= baseline + 20,
            "baseline {baseline}, during {during}"
        );
        assert_eq!(
            after,
            Some(baseline),
            "connections (and their tasks) did not return to baseline"
        );
        drop(slow);
    }

    #[tokio::test]
    async fn a_trickled_body_gets_408_after_the_body_timeout() {
        let app = TestApp::spawn_with(|c| c.body_timeout_ms = 1000).await;
        let mut conn = TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST /api/v1/deployments/webhook HTTP/1.1\r\nHost: x\r\nX-Workspace-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"environment\"",
            app.tenant.key
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();

        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut response)).await;

        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_a_cached_key_keeps_being_accepted_and_an_uncached_one_gets_503() {
    let pg = vibemon_testkit::PrivatePostgres::start();
    let pool = vibemon_store::connect(&pg.url(), 2).await.unwrap();
    vibemon_store::migrate(&pool).await.unwrap();
    let topic = vibemon_testkit::TestTopic::new(1).await;
    let tenant = vibemon_testkit::Tenant::create(&pool, "warm").await;
    let cold = vibemon_testkit::Tenant::create(&pool, "cold").await;
    let url = pg.url();
    let app = crate::helpers::TestApp::spawn_on(TestDb::new().await, topic, |c| {
        c.database_url = url;
        c.key_cache_ttl_secs = 60;
        c.env_cache_ttl_secs = 60;
    })
    .await;
    let post = |key: String| app.post_as(Some(&key), MINIMAL);
    assert_eq!(
        post(tenant.key.clone()).await.status(),
        201,
        "warms the caches"
    );

    pg.stop();
    let warm = post(tenant.key.clone()).await;
    let uncached = post(cold.key.clone()).await;
    pg.up();

    assert_eq!(
        warm.status(),
        201,
        "a cached key and environment need no Postgres"
    );
    assert_eq!(uncached.status(), 503);
    assert!(uncached.headers().contains_key("retry-after"));
}
