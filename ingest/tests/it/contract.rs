//! The webhook contract of `deployment-webhooks.md`, status code by status code.

use std::time::Duration;

use serde_json::{json, Value};
use vibemon_schemas::DEPLOYMENT_REPORTED_V1_SCHEMA;

use crate::helpers::{json, TestApp, MINIMAL};

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(DEPLOYMENT_REPORTED_V1_SCHEMA).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

#[tokio::test]
async fn the_seed_minimal_body_is_answered_201_with_the_seed_response_fields() {
    let app = TestApp::spawn().await;

    let (status, body) = json(app.post(MINIMAL).await).await;

    assert_eq!(status, 201, "{body}");
    let fields: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "id",
        "environment_id",
        "repo_full_name",
        "branch",
        "commit_sha",
        "status",
        "source",
        "deployed_at",
        "created_at",
    ];
    expected.sort_unstable();
    let mut got = fields.clone();
    got.sort_unstable();
    assert_eq!(got, expected);
    assert_eq!(
        body["environment_id"],
        app.tenant.environment_id.to_string()
    );
    assert_eq!(body["repo_full_name"], "owner/repo");
    assert_eq!(body["status"], "success", "the seed's default status");
    assert_eq!(body["source"], "webhook", "the seed's default source");
    assert_eq!(body["branch"], Value::Null);
    assert_eq!(
        body["deployed_at"], body["created_at"],
        "deployed_at defaults to the time received"
    );
    let deployed_at = body["deployed_at"].as_str().unwrap();
    assert!(deployed_at.ends_with('Z'), "RFC 3339 UTC: {deployed_at}");
    chrono::DateTime::parse_from_rfc3339(deployed_at).unwrap();
}

#[tokio::test]
async fn an_accepted_webhook_is_one_schema_valid_event_with_cloudevents_headers_on_the_topic() {
    let app = TestApp::spawn().await;
    let body = json!({
        "environment": "production", "repository": "acme/payments-api", "branch": "main",
        "commit_sha": "4F2C1D9E8B7A6F5E4D3C2B1A0F9E8D7C6B5A4F3E", "status": "success",
        "source": "github_actions", "deployed_at": "2024-01-15T10:30:00Z",
        "extra_data": {"workflow_run_id": "12345"}
    });

    let (status, resp) = json(app.post(&body.to_string()).await).await;
    assert_eq!(status, 201, "{resp}");
    let records = app.events(2, Duration::from_secs(5)).await;

    assert_eq!(records.len(), 1, "exactly one event per accepted webhook");
    let r = &records[0];
    let event: Value = serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
    let errors: Vec<String> = schema()
        .iter_errors(&event)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(event["deployment_id"], resp["id"]);
    assert_eq!(
        event["commit_sha"], "4f2c1d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
        "normalised to lower case"
    );
    assert_eq!(event["api_key_name"], "GitHub Actions");
    assert_eq!(event["extra_data"], json!({"workflow_run_id": "12345"}));
    let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
    assert_eq!(
        key,
        format!("{}:{}", app.tenant.workspace_id, app.tenant.environment_id)
    );
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("ce_specversion").as_deref(), Some("1.0"));
    assert_eq!(
        header("ce_id"),
        event["event_id"].as_str().map(str::to_owned)
    );
    assert_eq!(
        header("ce_type").as_deref(),
        Some("com.vibemonitor.deployment.reported.v1")
    );
    assert_eq!(
        header("ce_source"),
        Some(format!("/workspaces/{}", app.tenant.workspace_id))
    );
    assert!(header("ce_time").is_some());
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
}

#[tokio::test]
async fn an_environment_that_is_not_configured_is_404_naming_it_and_case_matters() {
    let app = TestApp::spawn().await;

    for name in ["Production", "staging"] {
        let body = json!({"environment": name, "repository": "owner/repo"}).to_string();
        let (status, resp) = json(app.post(&body).await).await;
        assert_eq!(status, 404, "{resp}");
        assert!(
            resp["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("'{name}'")),
            "{resp}"
        );
    }
    assert!(
        app.events(1, Duration::from_millis(500)).await.is_empty(),
        "nothing rejected reaches Kafka"
    );
}

async fn issues(app: &TestApp, body: &str) -> Vec<(String, String)> {
    let (status, resp) = json(app.post(body).await).await;
    assert_eq!(status, 422, "{body} -> {resp}");
    resp["detail"]
        .as_array()
        .unwrap_or_else(|| panic!("detail is a list: {resp}"))
        .iter()
        .map(|i| {
            assert!(i["msg"].as_str().is_some_and(|m| !m.is_empty()), "{i}");
            (
                serde_json::to_string(&i["loc"]).unwrap(),
                i["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_validation_failure_is_a_422_listing_each_problem_with_its_location() {
    let app = TestApp::spawn().await;
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (r#"{"environment": "production", "repository": "#, vec![]),
        (
            r#"{"repository": "owner/repo"}"#,
            vec![(r#"["body","environment"]"#, "missing")],
        ),
        (
            r#"{"environment": "production"}"#,
            vec![(r#"["body","repository"]"#, "missing")],
        ),
        (
            r#"{"environment": "production", "repository": "owner/repo", "commit_sha": "abc123"}"#,
            vec![(r#"["body","commit_sha"]"#, "string_pattern_mismatch")],
        ),
        (
            r#"{"environment": "production", "repository": "owner/repo", "deployed_at": "15/01/2024"}"#,
            vec![(r#"["body","deployed_at"]"#, "datetime_parsing")],
        ),
        (
            r#"{"environment": "production", "repository": "owner/repo", "status": "succeeded"}"#,
            vec![(r#"["body","status"]"#, "enum")],
        ),
        (
            r#"{"environment": "production", "repository": "owner/repo", "source": "circleci"}"#,
            vec![(r#"["body","source"]"#, "enum")],
        ),
        (
            r#"{"environment": 42, "repository": ["owner/repo"]}"#,
            vec![
                (r#"["body","environment"]"#, "string_type"),
                (r#"["body","repository"]"#, "string_type"),
            ],
        ),
        (
            r#"{"environment": "production", "repository": "owner/repo", "commitSha": "4f2c1d9e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"}"#,
            vec![(r#"["body","commitSha"]"#, "extra_forbidden")],
        ),
        (
            r#"{"environment": "production", "repository": "owner/repo", "extra_data": "run 5"}"#,
            vec![(r#"["body","extra_data"]"#, "dict_type")],
        ),
    ];
    for (body, expected) in cases {
        let got = issues(&app, body).await;
        if expected.is_empty() {
            assert_eq!(got[0].1, "json_invalid", "{body}");
            continue;
        }
        for (loc, kind) in expected {
            assert!(
                got.contains(&(loc.to_owned(), kind.to_owned())),
                "{body}: want {loc} {kind}, got {got:?}"
            );
        }
    }
    let long =
        json!({"environment": "production", "repository": "owner/repo", "branch": "b".repeat(300)});
    assert_eq!(
        issues(&app, &long.to_string()).await,
        [(
            r#"["body","branch"]"#.to_owned(),
            "string_too_long".to_owned()
        )]
    );
    assert!(
        app.events(1, Duration::from_millis(500)).await.is_empty(),
        "nothing rejected reaches Kafka"
    );
}

#[tokio::test]
async fn unknown_status_and_source_messages_list_the_allowed_values() {
    let app = TestApp::spawn().await;
    let body = r#"{"environment": "production", "repository": "owner/repo", "status": "done", "source": "travis"}"#;
    let (_, resp) = json(app.post(body).await).await;
    let text = resp.to_string();
    for allowed in [
        "pending",
        "in_progress",
        "success",
        "failed",
        "cancelled",
        "webhook",
        "github_actions",
        "argocd",
        "jenkins",
    ] {
        assert!(text.contains(allowed), "{allowed} missing from {text}");
    }
}

#[tokio::test]
async fn a_deployed_at_beyond_the_allowed_clock_skew_is_refused() {
    let app = TestApp::spawn_with(|c| c.max_future_skew_secs = 60).await;
    let future = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let near = (chrono::Utc::now() + chrono::Duration::seconds(20)).to_rfc3339();

    let refused = issues(
        &app,
        &json!({"environment": "production", "repository": "o/r", "deployed_at": future})
            .to_string(),
    )
    .await;
    let accepted = app
        .post(
            &json!({"environment": "production", "repository": "o/r", "deployed_at": near})
                .to_string(),
        )
        .await;

    assert_eq!(
        refused,
        [(
            r#"["body","deployed_at"]"#.to_owned(),
            "datetime_future".to_owned()
        )]
    );
    assert_eq!(accepted.status(), 201);
}

#[tokio::test]
async fn a_body_that_is_not_declared_json_is_415() {
    let app = TestApp::spawn().await;
    for content_type in [
        Some("application/x-www-form-urlencoded"),
        Some("text/plain"),
        None,
    ] {
        let mut req = app
            .client
            .post(app.url("/api/v1/deployments/webhook"))
            .header("X-Workspace-Key", &app.tenant.key)
            .body(MINIMAL);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        let (status, body) = json(req.send().await.unwrap()).await;
        assert_eq!(status, 415, "{content_type:?}: {body}");
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("application/json"));
    }
    let ok = app
        .post_with(
            MINIMAL,
            &[("Content-Type", "application/json; charset=utf-8")],
        )
        .await;
    assert_eq!(ok.status(), 201);
}

#[tokio::test]
async fn a_body_over_the_documented_limit_is_413() {
    let app = TestApp::spawn().await;
    let big = json!({"environment": "production", "repository": "o/r", "extra_data": {"blob": "x".repeat(260 * 1024)}});

    let (status, body) = json(app.post(&big.to_string()).await).await;

    assert_eq!(status, 413, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("262144"));
}

#[tokio::test]
async fn a_retried_request_with_the_same_idempotency_key_gets_the_same_id_and_one_event() {
    let app = TestApp::spawn().await;
    let idem = [("Idempotency-Key", "deploy-2024-01-15-run-12345")];

    let (s1, first) = json(app.post_with(MINIMAL, &idem).await).await;
    let (s2, second) = json(app.post_with(MINIMAL, &idem).await).await;
    let (s3, other) = json(
        app.post_with(MINIMAL, &[("Idempotency-Key", "another")])
            .await,
    )
    .await;

    assert_eq!((s1, s2, s3), (201, 201, 201));
    assert_eq!(first, second, "the retry is answered with the same body");
    assert_ne!(first["id"], other["id"]);
    let records = app.events(3, Duration::from_secs(3)).await;
    assert_eq!(records.len(), 2, "the retry was not published again");
}

#[tokio::test]
async fn reports_sharing_an_external_id_keep_one_deployment_id() {
    let app = TestApp::spawn().await;
    let report = |status: &str| {
        json!({"environment": "production", "repository": "o/r", "external_id": "run-77", "status": status}).to_string()
    };

    let (_, pending) = json(app.post(&report("pending")).await).await;
    let (_, running) = json(app.post(&report("in_progress")).await).await;
    let (_, done) = json(app.post(&report("success")).await).await;
    let (_, other) = json(
        app.post(
            &json!({"environment": "production", "repository": "o/r", "external_id": "run-78"})
                .to_string(),
        )
        .await,
    )
    .await;

    assert_eq!(pending["id"], running["id"]);
    assert_eq!(running["id"], done["id"]);
    assert_ne!(done["id"], other["id"]);
    assert_eq!(done["status"], "success");
}

#[tokio::test]
async fn a_request_id_is_echoed_back_or_generated() {
    let app = TestApp::spawn().await;

    let given = app
        .post_with(MINIMAL, &[("X-Request-Id", "ci-run-42")])
        .await;
    let generated = app.post(MINIMAL).await;

    assert_eq!(given.headers()["x-request-id"], "ci-run-42");
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_sent_ten_times_at_once_is_one_event() {
    let app = TestApp::spawn().await;

    let answers = futures::future::join_all((0..10).map(|_| async {
        json(
            app.post_with(MINIMAL, &[("Idempotency-Key", "concurrent-retry-1")])
                .await,
        )
        .await
    }))
    .await;

    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one id for all ten");
    let records = app.events(10, Duration::from_secs(3)).await;
    assert_eq!(records.len(), 1, "one event on the topic");
}
