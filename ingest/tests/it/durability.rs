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
