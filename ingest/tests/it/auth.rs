//! `X-Workspace-Key`: one 401 for every bad key, fast cached verification,
//! revocation within the TTL, and 503 (not 401) when Postgres is away.

use std::time::Duration;

use serde_json::json;
use vibemon_store::keys;
use vibemon_testkit::eventually;

use crate::helpers::{json, TestApp, MINIMAL};

#[tokio::test]
async fn a_missing_malformed_unknown_or_wrong_key_gets_exactly_the_seed_401_body() {
    let app = TestApp::spawn().await;
    let real = app.tenant.key.clone();
    let wrong_secret = format!(
        "{}{}",
        &real[..real.len() - 4],
        if real.ends_with("AAAA") {
            "BBBB"
        } else {
            "AAAA"
        }
    );
    let unknown = keys::generate().plaintext;

    for key in [
        None,
        Some("not-a-key"),
        Some(""),
        Some(unknown.as_str()),
        Some(wrong_secret.as_str()),
    ] {
        let (status, body) = json(app.post_as(key, MINIMAL).await).await;
        assert_eq!(status, 401, "{key:?}");
        assert_eq!(body, json!({"detail": "Invalid API key"}), "{key:?}");
    }
    assert!(app.events(1, Duration::from_millis(300)).await.is_empty());
}

#[tokio::test]
async fn an_unknown_lookup_id_costs_an_argon2_verification_like_a_wrong_secret() {
    let app = TestApp::spawn().await;
    let before = app.argon2_verifications("invalid").await;

    let unknown = keys::generate().plaintext;
    assert_eq!(app.post_as(Some(&unknown), MINIMAL).await.status(), 401);

    let after = app.argon2_verifications("invalid").await;
    assert_eq!(
        after - before,
        1.0,
        "an unknown key is verified against the dummy hash"
    );
}

#[tokio::test]
async fn a_verified_key_is_served_from_the_cache_without_argon2() {
    let app = TestApp::spawn().await;

    for _ in 0..5 {
        assert_eq!(app.post(MINIMAL).await.status(), 201);
    }

    assert_eq!(app.argon2_verifications("valid").await, 1.0);
    assert_eq!(
        app.count("vibemon_ingest_auth_cache_total{result=\"hit\"}")
            .await,
        4.0
    );
}

#[tokio::test]
async fn a_revoked_key_is_refused_within_the_cache_ttl() {
    let app = TestApp::spawn_with(|c| c.key_cache_ttl_secs = 1).await;
    assert_eq!(app.post(MINIMAL).await.status(), 201);

    keys::revoke(&app.db.pool, app.tenant.key_id, None)
        .await
        .unwrap();
    let refused = eventually(Duration::from_secs(5), || async {
        (app.post(MINIMAL).await.status() == 401).then_some(())
    })
    .await;

    assert!(
        refused.is_some(),
        "the revoked key still worked 5 s after a 1 s TTL"
    );
}

#[tokio::test]
async fn an_uncached_key_with_postgres_unreachable_is_503_not_401() {
    let app = TestApp::spawn_with(|c| {
        c.database_url = "postgres://vibemon:vibemon@127.0.0.1:1/none".into()
    })
    .await;

    let resp = app.post(MINIMAL).await;

    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn key_use_is_recorded_in_last_used_at_in_the_background() {
    let app = TestApp::spawn().await;
    assert_eq!(app.post(MINIMAL).await.status(), 201);

    let recorded = eventually(Duration::from_secs(10), || async {
        let all = keys::list(&app.db.pool, app.tenant.workspace_id)
            .await
            .unwrap();
        all[0].last_used_at
    })
    .await;

    assert!(recorded.is_some());
}
