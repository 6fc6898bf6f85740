//! One deployment end to end: the CLI sets up a tenant, ingest accepts the
//! seed's minimal body, Kafka carries the event, the projector writes the row.

use std::time::Duration;

use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{eventually, TestDb, TestTopic};

use crate::cli::ok;
use crate::stack::{Ingest, Projector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_posted_to_ingest_becomes_a_row_in_postgres() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(3).await);
    let ws = ok(&db.url, &["workspace", "create", "e2e"]);
    ok(
        &db.url,
        &["environment", "create", "--workspace", &ws, "production"],
    );
    let key = ok(
        &db.url,
        &[
            "key",
            "create",
            "--workspace",
            &ws,
            "--name",
            "curl",
            "--scope",
            "ingest,read",
        ],
    );
    let kafka = KafkaArgs::local(&topic.brokers, &topic.name);

    let ingest = Ingest::spawn(&db.url, kafka.clone()).await;
    let group = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    let projector = Projector::spawn(&db.url, kafka, &group).await;

    let resp = ingest
        .post_webhook(
            &reqwest::Client::new(),
            &key,
            r#"{"environment": "production", "repository": "owner/repo"}"#,
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: serde_json::Value = resp.json().await.unwrap();
    let id = uuid::Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();

    let row: Option<(String, String, String, chrono::DateTime<chrono::Utc>)> =
        eventually(Duration::from_secs(30), || async {
            sqlx::query_as(
                "SELECT repo_full_name, status, source, deployed_at FROM deployments WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&db.pool)
            .await
            .unwrap()
        })
        .await;
    let (repo, status, source, deployed_at) = row.expect("the deployment reached Postgres");
    assert_eq!(
        (repo.as_str(), status.as_str(), source.as_str()),
        ("owner/repo", "success", "webhook")
    );
    assert_eq!(
        deployed_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        body["deployed_at"].as_str().unwrap()
    );
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deployment_audit WHERE deployment_id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(audited, 1);

    ingest.stop().await;
    projector.stop().await;
}
