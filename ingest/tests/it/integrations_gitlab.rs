//! Native intake from GitLab ("Deployment Hook"): every status of the
//! mapping on the real topic and one projected, the full SHA recovered from
//! `commit_url`, one event per retried hook, and every refusal with nothing
//! published. The ingest and receivers are `integrations::Intake`'s.

use serde_json::{json, Value};
use uuid::Uuid;
use vibemon_schemas::event::{
    idempotent_event_id, request_fingerprint, REQUEST_FINGERPRINT_HEADER,
};
use vibemon_store::integrations::{self, Provider};

use crate::helpers::json;
use crate::integrations::{fixture, header, Intake};

const SHA: &str = "279484c09fbe69ededfced8c1bb6e6d24616b468";

/// GitLab's payload with `change` applied.
fn gitlab_body(change: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v = fixture("gitlab-deployment.json");
    change(&mut v);
    serde_json::to_vec(&v).unwrap()
}

/// GitLab's headers for a Deployment Hook with `token`.
fn gitlab_headers(token: &str, idempotency_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_owned()),
        ("User-Agent", "GitLab/17.5.0".to_owned()),
        ("X-Gitlab-Event", "Deployment Hook".to_owned()),
        ("X-Gitlab-Token", token.to_owned()),
        ("X-Gitlab-Instance", "https://gitlab.example.com".to_owned()),
        (
            "X-Gitlab-Webhook-UUID",
            "a6ae8ec1-2c4c-4f1e-9d2c-5b6a3b1f0c11".to_owned(),
        ),
        ("X-Gitlab-Event-UUID", Uuid::new_v4().to_string()),
        ("Idempotency-Key", idempotency_key.to_owned()),
    ]
}

#[tokio::test]
async fn every_gitlab_status_is_published_with_its_mapped_status_and_the_full_sha() {
    let intake = Intake::spawn().await;
    let (receiver, token) = intake
        .receiver(Provider::Gitlab, &[("staging", "production")], false)
        .await;
    let cases = [
        ("running", "in_progress"),
        ("success", "success"),
        ("failed", "failed"),
        ("canceled", "cancelled"),
    ];

    let mut sent = std::collections::BTreeMap::new();
    for (gitlab_status, status) in cases {
        let key = format!("key-{gitlab_status}");
        let body = gitlab_body(|v| v["status"] = json!(gitlab_status));
        let (code, answer) = json(
            intake
                .post(&receiver.path(), &gitlab_headers(&token, &key), &body)
                .await,
        )
        .await;
        assert_eq!(
            (code, answer["status"].clone()),
            (201, json!(status)),
            "{gitlab_status}: {answer}"
        );
        sent.insert(format!("gitlab-idempotency:{key}"), (body, status));
    }

    let records = intake.events(cases.len()).await;
    assert_eq!(records.len(), cases.len());
    for (record, event) in &records {
        let key = event["extra_data"]["delivery_id"].as_str().unwrap();
        let (body, status) = &sent[key];
        assert_eq!(event["status"], *status);
        assert_eq!(event["source"], "gitlab");
        assert_eq!(event["schema_version"], 3);
        assert_eq!(event["commit_sha"], SHA);
        assert_eq!(event["repository"], "root/test-deployment-webhooks");
        assert_eq!(event["branch"], "master");
        assert_eq!(event["environment"], "production", "mapped from staging");
        assert_eq!(event["external_id"], "gitlab-15");
        assert_eq!(
            event["deployed_at"], "2021-04-28T19:50:00Z",
            "21:50 at +0200"
        );
        assert_eq!(event["api_key_name"], "gitlab integration: deploys");
        let extra = &event["extra_data"];
        assert_eq!(extra["environment"], "staging");
        assert_eq!(extra["deployment_id"], 15);
        assert_eq!(extra["deployable_id"], 796);
        assert_eq!(
            extra["deployable_url"],
            "http://10.126.0.2:3000/root/test-deployment-webhooks/-/jobs/796"
        );
        assert_eq!(extra["actor"], "root");
        let event_id = idempotent_event_id(intake.app.tenant.workspace_id, key);
        assert_eq!(event["event_id"], json!(event_id));
        assert_eq!(
            header(record, REQUEST_FINGERPRINT_HEADER),
            Some(request_fingerprint(body).as_str())
        );
    }

    intake.project(&records).await;
    let (status, reports): (String, i32) =
        sqlx::query_as("SELECT status, reports FROM deployments WHERE external_id = 'gitlab-15'")
            .fetch_one(&intake.app.db.pool)
            .await
            .unwrap();
    assert_eq!(reports, 4, "one row for every status of deployment 15");
    assert!(
        ["success", "failed", "cancelled"].contains(&status.as_str()),
        "{status}"
    );
}

#[tokio::test]
async fn a_gitlab_running_then_success_projects_to_one_successful_row() {
    let intake = Intake::spawn().await;
    let (receiver, token) = intake.receiver(Provider::Gitlab, &[], true).await;
    for (i, s) in ["running", "success"].iter().enumerate() {
        let body = gitlab_body(|v| {
            v["status"] = json!(s);
            v["status_changed_at"] = json!(format!("2021-04-28 21:5{i}:00 +0200"));
        });
        let resp = intake
            .post(
                &receiver.path(),
                &gitlab_headers(&token, &format!("k{i}")),
                &body,
            )
            .await;
        assert_eq!(resp.status(), 201);
    }

    let records = intake.events(2).await;
    intake.project(&records).await;

    let row: (String, String, Option<String>, String) = sqlx::query_as(
        "SELECT status, environment, commit_sha, deployed_at::text FROM deployments WHERE external_id = 'gitlab-15'",
    )
    .fetch_one(&intake.app.db.pool)
    .await
    .unwrap();
    assert_eq!(row.0, "success");
    assert_eq!(row.1, "staging", "created on first sight");
    assert_eq!(row.2.as_deref(), Some(SHA));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_gitlab_hook_is_one_event_by_its_idempotency_key_or_else_by_its_status_change() {
    let intake = Intake::spawn().await;
    let (receiver, token) = intake
        .receiver(Provider::Gitlab, &[("staging", "production")], false)
        .await;
    let body = gitlab_body(|_| {});
    let retry = gitlab_headers(&token, "b4d7e1c2-retry");

    let first = intake.post(&receiver.path(), &retry, &body).await.status();
    let raced = futures::future::join_all(
        (0..6).map(|_| intake.request(&receiver.path(), &retry, &body).send()),
    )
    .await;
    // Before GitLab 17.4 there is no Idempotency-Key; each attempt has an
    // X-Gitlab-Event-UUID of its own, and one is shared by every hook a
    // request sets off: the deployment, status and time name the change.
    let older = || {
        let mut h = gitlab_headers(&token, "unused");
        h.retain(|(k, _)| *k != "Idempotency-Key");
        h
    };
    let older_first = intake
        .post(&receiver.path(), &older(), &body)
        .await
        .status();
    let older_again = intake
        .post(&receiver.path(), &older(), &body)
        .await
        .status();
    let mut shared_uuid = older();
    shared_uuid.retain(|(k, _)| *k != "X-Gitlab-Event-UUID");
    shared_uuid.push(("X-Gitlab-Event-UUID", "9f0e1d2c-shared".to_owned()));
    let running = gitlab_body(|v| v["status"] = json!("running"));
    let failed = gitlab_body(|v| v["status"] = json!("failed"));
    let first_shared = intake
        .post(&receiver.path(), &shared_uuid, &running)
        .await
        .status();
    let second_shared = intake
        .post(&receiver.path(), &shared_uuid, &failed)
        .await
        .status();

    assert_eq!(
        (first.as_u16(), older_first.as_u16(), older_again.as_u16()),
        (201, 201, 201)
    );
    assert!(
        raced.iter().all(|r| r.as_ref().unwrap().status() == 201),
        "{raced:?}"
    );
    assert_eq!(
        (first_shared.as_u16(), second_shared.as_u16()),
        (201, 201),
        "two changes under one X-Gitlab-Event-UUID are two events"
    );
    assert_eq!(
        intake.app.record_count().await,
        4,
        "one per Idempotency-Key, one per status change without it"
    );
}

#[tokio::test]
async fn gitlab_refusals_publish_nothing_and_say_why() {
    let intake = Intake::spawn().await;
    let (receiver, token) = intake
        .receiver(Provider::Gitlab, &[("staging", "production")], false)
        .await;
    let (github, github_secret) = intake.receiver(Provider::Github, &[], false).await;
    let (revoked, revoked_token) = intake.receiver(Provider::Gitlab, &[], false).await;
    integrations::revoke(&intake.app.db.pool, revoked.id)
        .await
        .unwrap();
    let path = receiver.path();
    let body = gitlab_body(|_| {});
    let post = |path: String, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let intake = &intake;
        async move { json(intake.post(&path, &headers, &body).await).await }
    };

    let wrong = post(
        path.clone(),
        gitlab_headers("not-the-token", "k"),
        body.clone(),
    )
    .await;
    let mut tokenless = gitlab_headers(&token, "k");
    tokenless.retain(|(k, _)| *k != "X-Gitlab-Token");
    let missing = post(path.clone(), tokenless, body.clone()).await;
    let as_gitlab = post(
        format!("/api/v1/integrations/gitlab/{}", github.id),
        gitlab_headers(&github_secret, "k"),
        body.clone(),
    )
    .await;
    let was_revoked = post(
        revoked.path(),
        gitlab_headers(&revoked_token, "k"),
        body.clone(),
    )
    .await;
    let short_mismatch = post(
        path.clone(),
        gitlab_headers(&token, "k1"),
        gitlab_body(|v| v["short_sha"] = json!("deadbeef")),
    )
    .await;
    let bad_url = post(
        path.clone(),
        gitlab_headers(&token, "k2"),
        gitlab_body(|v| v["commit_url"] = json!("http://x/-/commit/279484c0")),
    )
    .await;
    let bad_time = post(
        path.clone(),
        gitlab_headers(&token, "k3"),
        gitlab_body(|v| v["status_changed_at"] = json!("28/04/2021")),
    )
    .await;
    let mut push = gitlab_headers(&token, "k4");
    push[2].1 = "Push Hook".to_owned();
    let ignored = post(path.clone(), push, br#"{"object_kind":"push"}"#.to_vec()).await;

    assert_eq!(wrong.0, 401, "{}", wrong.1);
    assert!(
        wrong.1["detail"]
            .as_str()
            .unwrap()
            .contains("X-Gitlab-Token"),
        "{}",
        wrong.1
    );
    assert_eq!(missing.0, 401, "{}", missing.1);
    assert_eq!(as_gitlab.0, 404, "{}", as_gitlab.1);
    assert_eq!(was_revoked.0, 401, "{}", was_revoked.1);
    assert!(
        was_revoked.1["detail"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{}",
        was_revoked.1
    );
    for (name, (code, answer)) in [
        ("commit_url", &short_mismatch),
        ("commit_url", &bad_url),
        ("status_changed_at", &bad_time),
    ] {
        assert_eq!(*code, 422, "{name}: {answer}");
        assert_eq!(answer["detail"][0]["loc"][1], name, "{answer}");
    }
    assert!(
        short_mismatch
            .1
            .to_string()
            .contains("does not start with short_sha"),
        "{}",
        short_mismatch.1
    );
    assert_eq!(ignored.0, 202, "{}", ignored.1);
    assert_eq!(intake.app.record_count().await, 0);
    assert_eq!(intake.deliveries("gitlab", "bad_signature").await, 2.0);
    assert_eq!(intake.deliveries("gitlab", "unknown_receiver").await, 1.0);
    assert_eq!(intake.deliveries("gitlab", "revoked").await, 1.0);
    assert_eq!(intake.deliveries("gitlab", "invalid_body").await, 3.0);
    assert_eq!(intake.deliveries("gitlab", "ignored_event").await, 1.0);
}
