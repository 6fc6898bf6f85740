//! Reads cannot starve authentication: the read API has its own Postgres
//! pool, so a pile of slow reads cannot take the connections a webhook with
//! an uncached key needs to look its key up.
//!
//! The slow reads are real: a test transaction holds an ACCESS EXCLUSIVE
//! lock on `deployments`, so every history query blocks in Postgres while
//! holding its pool connection, exactly as an expensive scan would, without
//! a test-only slow path in the service.

use std::time::{Duration, Instant};

use vibemon_schemas::DisplayName;
use vibemon_store::keys;

use crate::helpers::{TestApp, MINIMAL};

/// A transaction holding an ACCESS EXCLUSIVE lock on `deployments`: every
/// history query blocks behind it until it is rolled back.
async fn lock_deployments(app: &TestApp) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut lock = app.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE deployments IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    lock
}

#[tokio::test]
async fn a_webhook_with_an_uncached_key_gets_201_while_slow_reads_fill_the_read_pool() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_per_ip = 0;
        c.rate_limit_per_key = 0;
    })
    .await;
    let (_, fresh_key) = keys::create(
        &app.db.pool,
        app.tenant.workspace_id,
        &DisplayName::parse("fresh").unwrap(),
        vibemon_store::scopes::Scopes::DEFAULT_FOR_NEW_KEYS,
    )
    .await
    .unwrap();
    let read = || {
        app.get_as(
            &app.tenant.key,
            "/api/v1/deployments?repository=acme/nowhere",
        )
    };
    assert_eq!(
        read().await.unwrap().status(),
        200,
        "the reading key is warm"
    );
    let lock = lock_deployments(&app).await;

    let reads: Vec<_> = (0..24).map(|_| tokio::spawn(read())).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let webhook = app.post_as(Some(&fresh_key), MINIMAL).await;
    let took = started.elapsed();
    let webhook_status = webhook.status().as_u16();
    let webhook_body = webhook.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.rollback().await.unwrap();
    let mut read_statuses = Vec::new();
    for r in reads {
        read_statuses.push(r.await.unwrap().map_or(0, |r| r.status().as_u16()));
    }

    assert_eq!(webhook_status, 201, "after {took:?}: {webhook_body}");
    assert!(
        read_statuses.iter().all(|s| *s == 200 || *s == 503),
        "reads got {read_statuses:?}"
    );
}

#[tokio::test]
async fn a_read_stuck_in_postgres_is_cancelled_at_the_statement_timeout_with_a_503() {
    let app = TestApp::spawn_with(|c| c.read_statement_timeout_ms = 300).await;
    let read = || app.get_as(&app.tenant.key, "/api/v1/deployments");
    assert_eq!(
        read().await.unwrap().status(),
        200,
        "the reading key is warm"
    );
    let lock = lock_deployments(&app).await;

    let started = Instant::now();
    // Bounded, so that without the statement timeout this fails rather than
    // waiting forever on the lock it holds.
    let resp = tokio::time::timeout(Duration::from_secs(5), read()).await;
    let took = started.elapsed();
    lock.rollback().await.unwrap();

    let resp = resp.expect("an answer within 5 s").unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}
