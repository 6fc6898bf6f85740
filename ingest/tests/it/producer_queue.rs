//! librdkafka's local queue full: the answer is 503 with `Retry-After` at
//! once, never a wait and never a half-written event, and what was queued
//! before still gets the broker's outcome.
//!
//! `queue.buffering.max.messages` is 1, so one record waiting in the
//! producer fills the queue. It waits because of `linger.ms` on the real
//! broker (then it is acknowledged), or because the broker is unreachable
//! (then it times out).

use std::time::{Duration, Instant};

use vibemon_testkit::TestDb;

use crate::helpers::{TestApp, MINIMAL};

/// Waits until the producer holds one record (the queue is full).
async fn until_one_record_is_queued(app: &TestApp) {
    let queued = vibemon_testkit::eventually(Duration::from_secs(5), || async {
        (app.metric("vibemon_ingest_producer_queue_messages ").await == Some(1.0)).then_some(())
    })
    .await;
    assert!(
        queued.is_some(),
        "the first record never reached the producer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_producer_queue_answers_503_at_once_and_only_acknowledged_events_are_on_the_topic() {
    full_queue_case(|c| c.kafka_queue_max_messages = 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_queue_full_by_bytes_answers_503_at_once_too() {
    // 1 KiB holds one minimal record (about 700 bytes) but not two.
    full_queue_case(|c| c.kafka_queue_max_kbytes = 1).await;
}

/// One record waits in the producer (linger), which fills the queue by the
/// bound `fill` sets; the next request must be refused at once.
async fn full_queue_case(fill: impl FnOnce(&mut vibemon_ingest::config::Config)) {
    let app = TestApp::spawn_with(|c| {
        fill(c);
        c.kafka_linger_ms = 3_000;
        c.kafka_message_timeout_ms = 10_000;
    })
    .await;
    let first = {
        let sent = app.post_as(Some(&app.tenant.key), MINIMAL);
        tokio::spawn(async move { sent.await.status().as_u16() })
    };
    until_one_record_is_queued(&app).await;

    let started = Instant::now();
    let refused = app.post(MINIMAL).await;
    let refused_after = started.elapsed();
    let first = first.await.unwrap();

    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        refused_after < Duration::from_millis(500),
        "took {refused_after:?}"
    );
    assert_eq!(first, 201, "the queued event still gets its outcome");
    assert_eq!(app.record_count().await, 1, "records = 201s");
    let full = app
        .metric(r#"vibemon_ingest_produce_errors_total{reason="queue_full"}"#)
        .await;
    assert_eq!(full, Some(1.0), "the full queue is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_unreachable_a_full_queue_answers_503_at_once_and_the_queued_event_within_the_message_timeout(
) {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (db, topic) = (
        TestDb::new().await,
        vibemon_testkit::TestTopic::new(1).await,
    );
    let app = TestApp::spawn_on(db, topic, |c| {
        c.kafka.brokers = format!("127.0.0.1:{closed_port}");
        c.kafka_queue_max_messages = 1;
        c.kafka_message_timeout_ms = 2_000;
    })
    .await;
    let started = Instant::now();
    let first = {
        let sent = app.post_as(Some(&app.tenant.key), MINIMAL);
        tokio::spawn(async move {
            let resp = sent.await;
            (
                resp.status().as_u16(),
                resp.headers().contains_key("retry-after"),
                started.elapsed(),
            )
        })
    };
    until_one_record_is_queued(&app).await;

    let second_started = Instant::now();
    let refused = app.post(MINIMAL).await;
    let refused_after = second_started.elapsed();
    let (first_status, first_retry_after, first_after) = first.await.unwrap();

    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        refused_after < Duration::from_millis(500),
        "took {refused_after:?}"
    );
    assert_eq!((first_status, first_retry_after), (503, true));
    // librdkafka looks for timed-out messages once a second, hence the slack.
    assert!(
        first_after < Duration::from_millis(4_000),
        "the queued event answered after {first_after:?}, message timeout 2 s"
    );
    assert_eq!(app.record_count().await, 0, "nothing reached the topic");
}
