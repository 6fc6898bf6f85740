//! The read API: history with filters and cursors, one deployment with its
//! reports, environments now, and "what was running at T" on a crafted
//! timeline with late and failed reports. Rows are written by the
//! projector's own batch writer.

use std::collections::BTreeMap;

use serde_json::Value;
use vibemon_projector::batch::Located;
use vibemon_schemas::DeploymentReported;
use vibemon_schemas::DeploymentStatus::{Failed, InProgress, Pending, Success};
use vibemon_testkit::events::{at, World};

use crate::helpers::TestApp;

/// The tenant's world: its workspace, `production` environment and key.
fn world(app: &TestApp) -> World {
    World {
        workspace_id: app.tenant.workspace_id,
        environment_id: app.tenant.environment_id,
        key_id: app.tenant.key_id,
    }
}

/// Projects events one batch each, in the order given (arrival order).
async fn project(app: &TestApp, events: &[DeploymentReported]) {
    for (i, e) in events.iter().enumerate() {
        let located = Located::new(e.clone(), "t", 0, i as i64);
        vibemon_projector::writer::write_batch(&app.db.pool, "g", &[located], &BTreeMap::new())
            .await
            .unwrap();
    }
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.get_as(&app.tenant.key, path).await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn sha_of(v: &Value, repo: &str) -> Option<String> {
    v["deployed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["repo_full_name"] == repo)
        .map(|d| d["commit_sha"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn what_was_running_at_t_is_right_with_late_out_of_order_and_failed_reports() {
    let app = TestApp::spawn().await;
    let w = world(&app);
    let v1 = w.report("acme/api", at("2024-01-15T10:00:00Z"));
    let v2 = w.report("acme/api", at("2024-01-15T12:00:00Z"));
    let mut broken = w.report("acme/api", at("2024-01-15T13:00:00Z"));
    broken.status = Failed;
    let web = w.report("acme/web", at("2024-01-15T11:00:00Z"));
    // v2 arrives first, v1 (older) arrives late; a failure comes after v2.
    project(&app, &[v2.clone(), web.clone(), broken, v1.clone()]).await;
    let sha = |e: &DeploymentReported| e.commit_sha.as_ref().unwrap().to_string();

    let (s, before_all) = get(
        &app,
        "/api/v1/environments/production/deployed?at=2024-01-15T09:00:00Z",
    )
    .await;
    let (_, at_1030) = get(
        &app,
        "/api/v1/environments/production/deployed?at=2024-01-15T10:30:00Z",
    )
    .await;
    let (_, at_1130_offset) = get(
        &app,
        "/api/v1/environments/production/deployed?at=2024-01-15T13:30:00%2B02:00",
    )
    .await;
    let (_, after_failure) = get(
        &app,
        "/api/v1/environments/production/deployed?at=2024-01-15T14:00:00Z",
    )
    .await;
    let (_, only_web) = get(
        &app,
        "/api/v1/environments/production/deployed?at=2024-01-15T14:00:00Z&repository=acme/web",
    )
    .await;

    assert_eq!(s, 200);
    assert_eq!(
        before_all["deployed"],
        Value::Array(vec![]),
        "nothing deployed yet is an empty answer, not an error"
    );
    assert_eq!(sha_of(&at_1030, "acme/api"), Some(sha(&v1)));
    assert_eq!(
        sha_of(&at_1030, "acme/web"),
        None,
        "absent before its first deployment"
    );
    assert_eq!(
        sha_of(&at_1130_offset, "acme/api"),
        Some(sha(&v1)),
        "13:30+02:00 is 11:30Z"
    );
    assert_eq!(sha_of(&at_1130_offset, "acme/web"), Some(sha(&web)));
    assert_eq!(
        sha_of(&after_failure, "acme/api"),
        Some(sha(&v2)),
        "a failed deployment leaves the success live"
    );
    assert_eq!(only_web["deployed"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn history_is_newest_first_filtered_and_paged_with_an_opaque_cursor() {
    let app = TestApp::spawn().await;
    let w = world(&app);
    let events: Vec<_> = (0..7)
        .map(|i| {
            w.report(
                if i % 2 == 0 { "acme/api" } else { "acme/web" },
                at("2024-01-15T10:00:00Z") + chrono::Duration::minutes(i),
            )
        })
        .collect();
    project(&app, &events).await;

    let (_, p1) = get(&app, "/api/v1/deployments?limit=3").await;
    let cursor = p1["next_cursor"].as_str().unwrap().to_owned();
    let (_, p2) = get(
        &app,
        &format!("/api/v1/deployments?limit=3&cursor={cursor}"),
    )
    .await;
    let (_, p3) = get(
        &app,
        &format!(
            "/api/v1/deployments?limit=3&cursor={}",
            p2["next_cursor"].as_str().unwrap()
        ),
    )
    .await;
    let (_, api) = get(&app, "/api/v1/deployments?repository=acme/api&environment=production&since=2024-01-15T10:01:00Z&until=2024-01-15T10:05:00Z").await;
    let (_, huge) = get(&app, "/api/v1/deployments?limit=100000").await;

    let ids = |p: &Value| {
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let all: Vec<String> = [ids(&p1), ids(&p2), ids(&p3)].concat();
    let expected: Vec<String> = events
        .iter()
        .rev()
        .map(|e| e.deployment_id.to_string())
        .collect();
    assert_eq!(all, expected, "newest first, no gap, no repeat");
    assert_eq!(p3["next_cursor"], Value::Null);
    assert_eq!(
        ids(&api),
        vec![
            events[4].deployment_id.to_string(),
            events[2].deployment_id.to_string()
        ]
    );
    assert_eq!(ids(&huge).len(), 7, "limit is capped, not refused");
}

#[tokio::test]
async fn one_deployment_shows_every_report_and_who_sent_it() {
    let app = TestApp::spawn().await;
    let w = world(&app);
    let reports = [
        w.external("acme/api", "run-1", Pending, at("2024-01-15T10:00:00Z")),
        w.external("acme/api", "run-1", InProgress, at("2024-01-15T10:01:00Z")),
        w.external("acme/api", "run-1", Success, at("2024-01-15T10:05:00Z")),
    ];
    project(
        &app,
        &[reports[2].clone(), reports[0].clone(), reports[1].clone()],
    )
    .await;

    let (status, d) = get(
        &app,
        &format!("/api/v1/deployments/{}", reports[0].deployment_id),
    )
    .await;

    assert_eq!(status, 200);
    assert_eq!(d["status"], "success");
    assert_eq!(d["reports"], 3);
    let log = d["report_log"].as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["status"], "pending", "oldest first");
    assert_eq!(log[0]["api_key_name"], "test");
}

#[tokio::test]
async fn environments_show_what_is_deployed_now() {
    let app = TestApp::spawn().await;
    let w = world(&app);
    let (old, new) = (
        w.report("acme/api", at("2024-01-15T10:00:00Z")),
        w.report("acme/api", at("2024-01-15T11:00:00Z")),
    );
    project(&app, &[new.clone(), old]).await;

    let (_, v) = get(&app, "/api/v1/environments").await;

    let prod = &v["environments"][0];
    assert_eq!(prod["name"], "production");
    assert_eq!(
        prod["deployed"][0]["deployment_id"],
        new.deployment_id.to_string()
    );
}

#[tokio::test]
async fn a_key_never_sees_another_workspaces_data() {
    let app = TestApp::spawn().await;
    let other = vibemon_testkit::Tenant::create(&app.db.pool, "other").await;
    let theirs = World {
        workspace_id: other.workspace_id,
        environment_id: other.environment_id,
        key_id: other.key_id,
    }
    .report("secret/repo", at("2024-01-15T10:00:00Z"));
    project(&app, std::slice::from_ref(&theirs)).await;

    let (list_status, list) = get(&app, "/api/v1/deployments").await;
    let (one_status, _) = get(
        &app,
        &format!("/api/v1/deployments/{}", theirs.deployment_id),
    )
    .await;
    let (_, now) = get(&app, "/api/v1/environments/production/deployed").await;

    assert_eq!(list_status, 200);
    assert_eq!(list["items"], Value::Array(vec![]));
    assert_eq!(one_status, 404, "another workspace's id is not found");
    assert_eq!(now["deployed"], Value::Array(vec![]));
}

#[tokio::test]
async fn bad_query_parameters_are_422_naming_them_and_bad_keys_401() {
    let app = TestApp::spawn().await;

    let (s1, v1) = get(
        &app,
        "/api/v1/deployments?since=yesterday&limit=0&colour=red",
    )
    .await;
    let (s2, _) = get(&app, "/api/v1/deployments?cursor=not-a-cursor").await;
    let (s3, _) = get(&app, "/api/v1/environments/Production/deployed").await;
    let anonymous = app
        .client
        .get(app.url("/api/v1/deployments"))
        .send()
        .await
        .unwrap();

    assert_eq!(s1, 422);
    let locs: Vec<String> = v1["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["loc"][1].as_str().unwrap().to_owned())
        .collect();
    for name in ["since", "limit", "colour"] {
        assert!(locs.contains(&name.to_owned()), "{name} missing from {v1}");
    }
    assert_eq!(s2, 422);
    assert_eq!(s3, 404, "environment names are case-sensitive");
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_deployments_report_log_is_capped_while_reports_counts_them_all() {
    let app = TestApp::spawn().await;
    let w = world(&app);
    let max = vibemon_store::read::MAX_REPORT_LOG as usize;
    let batch: Vec<Located> = (0..max + 5)
        .map(|i| {
            Located::new(
                w.external(
                    "acme/api",
                    "run-1",
                    InProgress,
                    at("2024-01-15T10:00:00Z") + chrono::Duration::seconds(i as i64),
                ),
                "t",
                0,
                i as i64,
            )
        })
        .collect();
    vibemon_projector::writer::write_batch(&app.db.pool, "g", &batch, &BTreeMap::new())
        .await
        .unwrap();

    let (status, d) = get(
        &app,
        &format!("/api/v1/deployments/{}", batch[0].event.deployment_id),
    )
    .await;

    assert_eq!(status, 200);
    assert_eq!(d["reports"], max + 5);
    let log = d["report_log"].as_array().unwrap();
    assert_eq!(log.len(), max);
    let id = |i: usize| Value::from(batch[i].event.event_id.to_string());
    assert_eq!(
        log[0]["event_id"],
        id(5),
        "the latest reports, oldest first"
    );
    assert_eq!(
        log[max - 1]["event_id"],
        id(max + 4),
        "the last report is shown"
    );
}

#[tokio::test]
async fn instants_postgres_cannot_hold_are_a_422_naming_the_parameter_not_a_503() {
    let app = TestApp::spawn().await;
    use base64::Engine;
    let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode("-8000000000000000000|00000000-0000-0000-0000-000000000000");
    for (path, name) in [
        ("/api/v1/deployments?since=-5000-01-01T00:00:00", "since"),
        ("/api/v1/deployments?until=+99999-01-01T00:00:00", "until"),
        (
            "/api/v1/environments/production/deployed?at=-0001-01-01T00:00:00",
            "at",
        ),
        (
            &format!("/api/v1/deployments?cursor={cursor}") as &str,
            "cursor",
        ),
    ] {
        let (status, body) = get(&app, path).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert!(body.to_string().contains(name), "{path}: {body}");
    }
}
