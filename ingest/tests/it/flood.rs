//! Valid keys under a flood of random ones: a valid key's cache entry is
//! refreshed ahead of expiry, and once expired is re-checked against Postgres
//! alone, so it never waits in the argon2 queue behind unknown keys. Also the
//! argon2 bound itself (503 past the queue timeout) and the environment
//! cache's TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vibemon_store::{keys, reference};

use crate::helpers::{TestApp, MINIMAL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_key_keeps_getting_quick_201s_through_a_flood_lasting_three_ttls() {
    let app = Arc::new(
        TestApp::spawn_with(|c| {
            c.key_cache_ttl_secs = 1;
            c.rate_limit_per_ip = 0;
            c.rate_limit_per_key = 0;
            c.argon2_concurrency = 1;
        })
        .await,
    );
    assert_eq!(app.post(MINIMAL).await.status(), 201, "the key is warm");
    let until = Instant::now() + Duration::from_millis(3_500);
    let flood: Vec<_> = (0..48)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                while Instant::now() < until {
                    let random = keys::generate_unhashed_plaintext();
                    let _ = app.post_as(Some(&random), MINIMAL).await;
                }
            })
        })
        .collect();

    let mut answers = Vec::new();
    while Instant::now() < until {
        let started = Instant::now();
        let status = app.post(MINIMAL).await.status().as_u16();
        answers.push((status, started.elapsed()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for f in flood {
        f.await.unwrap();
    }
    let flooded = app.argon2_verifications("invalid").await;
    let valid_verifications = app.argon2_verifications("valid").await;

    let worst = answers.iter().map(|(_, d)| *d).max().unwrap();
    let not_201: Vec<_> = answers.iter().filter(|(s, _)| *s != 201).collect();
    assert!(
        flooded >= 20.0,
        "the flood ran only {flooded} verifications"
    );
    assert!(not_201.is_empty(), "the valid key got {not_201:?}");
    assert_eq!(
        valid_verifications, 1.0,
        "the valid key went through the argon2 queue again"
    );
    // Loose, since the suite shares two cores with the flood: before
    // refresh-ahead the worst was the argon2 queue's wait, 1.6 s or a 503.
    assert!(
        worst < Duration::from_millis(1_000),
        "worst valid-key latency {worst:?} over {} requests",
        answers.len()
    );
}

#[tokio::test]
async fn a_recently_valid_key_is_rechecked_after_its_ttl_without_argon2() {
    let app = TestApp::spawn_with(|c| c.key_cache_ttl_secs = 1).await;
    assert_eq!(app.post(MINIMAL).await.status(), 201);

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let again = app.post(MINIMAL).await.status();

    assert_eq!(again, 201);
    assert_eq!(
        app.argon2_verifications("valid").await,
        1.0,
        "the second verification needed only Postgres"
    );
}

#[tokio::test]
async fn a_key_in_constant_use_past_its_recheck_window_is_still_rechecked_without_argon2() {
    // Window 3 s from the last use, TTL 1 s. The key is used for 4 s (past
    // the window counted from its one argon2 check), then pauses past its
    // TTL: its entry expired, and it must be re-checked without argon2.
    let app = TestApp::spawn_with(|c| {
        c.key_cache_ttl_secs = 1;
        c.key_recheck_window_secs = 3;
    })
    .await;
    for _ in 0..10 {
        assert_eq!(app.post(MINIMAL).await.status(), 201);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(app.post(MINIMAL).await.status(), 201);

    assert_eq!(
        app.argon2_verifications("valid").await,
        1.0,
        "one argon2 verification in all"
    );
}

#[tokio::test]
async fn a_key_revoked_between_uses_is_refused_after_its_ttl_even_when_recently_valid() {
    let app = TestApp::spawn_with(|c| c.key_cache_ttl_secs = 1).await;
    assert_eq!(app.post(MINIMAL).await.status(), 201);

    keys::revoke(&app.db.pool, app.tenant.key_id, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let after = app.post(MINIMAL).await.status();

    assert_eq!(after, 401);
}

#[tokio::test]
async fn more_verifications_than_the_argon2_bound_allows_get_503_with_retry_after() {
    let app = Arc::new(
        TestApp::spawn_with(|c| {
            c.rate_limit_per_ip = 0;
            c.argon2_concurrency = 1;
            c.argon2_queue_timeout_ms = 1;
        })
        .await,
    );

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                let resp = app
                    .post_as(Some(&keys::generate_unhashed_plaintext()), MINIMAL)
                    .await;
                let retry = resp.headers().get("retry-after").cloned();
                (resp.status().as_u16(), retry, resp.text().await.unwrap())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }

    let busy: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(!busy.is_empty(), "no 503 among {answers:?}");
    assert!(
        answers.iter().all(|(s, _, _)| *s == 503 || *s == 401),
        "{answers:?}"
    );
    for (_, retry, body) in busy {
        assert_eq!(retry.as_ref().map(|v| v.to_str().unwrap()), Some("1"));
        assert!(body.contains("Too many key verifications"), "{body}");
    }
}

#[tokio::test]
async fn a_new_environment_is_accepted_once_the_environment_cache_ttl_passes() {
    let app = TestApp::spawn_with(|c| c.env_cache_ttl_secs = 1).await;
    let staging = r#"{"environment": "staging", "repository": "owner/repo"}"#;
    assert_eq!(app.post(staging).await.status(), 404);

    reference::create_environment(&app.db.pool, app.tenant.workspace_id, "staging")
        .await
        .unwrap();
    let cached = app.post(staging).await.status();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let expired = app.post(staging).await.status();

    assert_eq!(cached, 404, "the missing answer is cached for the TTL");
    assert_eq!(expired, 201, "and the new environment is seen after it");
}
