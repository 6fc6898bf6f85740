//! Encrypted Postgres: `sslmode=require` and `sslmode=verify-full` in
//! DATABASE_URL work end to end, and the connection really is TLS.

use std::time::Duration;

use vibemon_testkit::{PrivatePostgres, TestTopic};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projector_writes_through_a_verified_tls_connection() {
    let pg = PrivatePostgres::start_with_tls(true);
    let cert = pg.dir.join("ca.crt").display().to_string();
    let require = format!("{}?sslmode=require", pg.url());
    let verify = format!("{}?sslmode=verify-full&sslrootcert={cert}", pg.url());
    let pool = vibemon_store::connect(&verify, 2)
        .await
        .expect("verify-full connects");
    vibemon_store::migrate(&pool).await.unwrap();
    let (topic, world) = (TestTopic::new(1).await, World::new());
    publish(
        &producer(&topic.brokers),
        &topic.name,
        &[world.report("acme/api", at("2024-01-15T10:00:00Z"))],
    )
    .await;

    let projector = spawn(config(&require, &topic, &group())).await;
    wait_rows(&pool, "deployment_audit", 1, 30).await;
    projector.stop().await.unwrap();

    let tls: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(tls, "the connection is encrypted");
    let plain = PrivatePostgres::start();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        vibemon_store::connect(&format!("{}?sslmode=require", plain.url()), 1),
    )
    .await
    .unwrap();
    assert!(
        refused.is_err(),
        "sslmode=require must refuse a server without TLS"
    );
}
