//! The pipeline over an encrypted, authenticated Kafka listener: SASL_SSL
//! with SCRAM-SHA-512 and a certificate from a test CA, reached through the
//! documented `KAFKA_OPTIONS` pass-through of librdkafka properties.

use std::time::Duration;

use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{eventually, SaslBroker, Tenant, TestDb, TestTopic};

use crate::stack::{Ingest, Projector};

/// The seed's minimal report.
const BODY: &str = r#"{"environment": "production", "repository": "acme/api"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_projector_work_over_sasl_ssl_and_a_wrong_password_is_refused() {
    let broker = SaslBroker::start();
    let (db, topic) = (
        TestDb::new().await,
        TestTopic::on(&broker.broker.brokers(), 2).await,
    );
    let tenant = Tenant::create(&db.pool, "sasl").await;
    let kafka = KafkaArgs {
        brokers: broker.sasl_brokers(),
        topic: topic.name.clone(),
        options: broker.options(&broker.password),
    };
    let ingest = Ingest::spawn(&db.url, kafka.clone()).await;
    let projector = Projector::spawn(&db.url, kafka.clone(), "sasl").await;
    let client = reqwest::Client::new();

    let resp = ingest.post_webhook(&client, &tenant.key, BODY).await;
    assert_eq!(resp.status(), 201);
    let row = eventually(Duration::from_secs(30), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    projector.stop().await;
    ingest.stop().await;
    assert!(row.is_some(), "the projector consumed over SASL_SSL");

    let mut wrong = kafka;
    wrong.options = broker.options("not-the-password");
    let mut config = vibemon_ingest::config::Config::new(&db.url, wrong);
    config.kafka_message_timeout_ms = 2000;
    let refused = Ingest::spawn_with(config).await;
    let ready = client
        .get(format!("http://{}/readyz", refused.addr))
        .send()
        .await
        .unwrap();
    let post = refused.post_webhook(&client, &tenant.key, BODY).await;
    assert_eq!(
        ready.status(),
        503,
        "not ready without valid Kafka credentials"
    );
    assert_eq!(post.status(), 503);
    refused.stop().await;
}
