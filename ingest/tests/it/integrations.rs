//! Native intake from GitHub (`deployment_status`): every state of the
//! mapping, on the real topic and, projected, in the read model; one event
//! per delivery however often GitHub redelivers; and every refusal, with its
//! status, its body and nothing on the topic. [`Intake`] is shared with
//! `integrations_gitlab`.
//!
//! The payloads are `tests/fixtures/integrations/`, shaped as GitHub's and
//! GitLab's webhook documentation shows them, with one field changed per
//! case.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use uuid::Uuid;
use vibemon_ingest::config::Config;
use vibemon_schemas::event::{
    idempotent_event_id, request_fingerprint, REQUEST_FINGERPRINT_HEADER,
};
use vibemon_store::integrations::{self, Integration, NewIntegration, Provider, SecretKey};
use vibemon_testkit::ReadRecord;

use crate::helpers::{json, TestApp};

/// An ingest with `VIBEMON_INTEGRATION_KEY` set, and receivers made with it.
pub struct Intake {
    pub app: TestApp,
    pub key: SecretKey,
}

impl Intake {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let key = SecretKey::parse(&STANDARD.encode([42u8; 32])).unwrap();
        let configured = key.clone();
        let app = TestApp::spawn_with(move |c| {
            c.integration_key = Some(configured);
            tweak(c);
        })
        .await;
        Self { app, key }
    }

    /// A receiver of `provider` in the tenant's workspace, and its secret.
    pub async fn receiver(
        &self,
        provider: Provider,
        map: &[(&str, &str)],
        create_environments: bool,
    ) -> (Integration, String) {
        let new = NewIntegration {
            workspace_id: self.app.tenant.workspace_id,
            provider,
            name: "deploys".to_owned(),
            environment_map: map
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            create_environments,
        };
        integrations::create(&self.app.db.pool, &self.key, &new)
            .await
            .unwrap()
    }

    /// POSTs `body` to `path` with `headers`.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> reqwest::Response {
        self.request(path, headers, body)
            .send()
            .await
            .expect("ingest answers")
    }

    pub fn request(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        let mut req = self.app.client.post(self.app.url(path)).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req
    }

    /// Every record on the topic, waiting for `want`.
    pub async fn events(&self, want: usize) -> Vec<(ReadRecord, Value)> {
        self.app
            .events(want, Duration::from_secs(10))
            .await
            .into_iter()
            .map(|r| {
                let v = serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap();
                (r, v)
            })
            .collect()
    }

    /// Projects the records with the projector's writer, one batch each.
    pub async fn project(&self, records: &[(ReadRecord, Value)]) {
        let mut sorted: Vec<_> = records.iter().map(|(r, _)| r).collect();
        sorted.sort_by_key(|r| (r.partition, r.offset));
        for r in sorted {
            let event =
                vibemon_schemas::DeploymentReported::decode(r.payload.as_deref().unwrap()).unwrap();
            let located = vibemon_projector::batch::Located::new(
                event,
                &self.app.topic.name,
                r.partition,
                r.offset,
            );
            vibemon_projector::writer::write_batch(
                &self.app.db.pool,
                "intake",
                &[located],
                &BTreeMap::new(),
            )
            .await
            .unwrap();
        }
    }

    /// `vibemon_ingest_integration_deliveries_total` for one outcome.
    pub async fn deliveries(&self, provider: &str, outcome: &str) -> f64 {
        self.app
            .count(&format!(
                "vibemon_ingest_integration_deliveries_total{{outcome=\"{outcome}\",provider=\"{provider}\"}}"
            ))
            .await
    }
}

/// A fixture of `tests/fixtures/integrations/`.
pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/integrations")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The value of a record's header.
pub fn header<'a>(record: &'a ReadRecord, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

const SHA: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";

/// GitHub's payload with `state`.
/// The fixture in `state`. Each state is a status of its own, as GitHub
/// gives each status its id (the fixture's is `success`'s).
fn github_body(state: &str) -> Vec<u8> {
    let mut v = fixture("github-deployment_status.json");
    v["deployment_status"]["state"] = json!(state);
    if state != "success" {
        let id = 2017326925_i64 + state.bytes().map(i64::from).sum::<i64>();
        v["deployment_status"]["id"] = json!(id);
    }
    serde_json::to_vec(&v).unwrap()
}

/// The `deployment_status.id` of a GitHub body.
fn status_id(body: &[u8]) -> i64 {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["deployment_status"]["id"].as_i64().unwrap()
}

/// `sha256=` and the hex HMAC-SHA256 of `body` with `secret`, as GitHub signs.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// GitHub's headers for a delivery of `event`, signed with `secret`.
fn github_headers(
    event: &str,
    delivery: &str,
    secret: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("Content-Type", "application/json".to_owned()),
        ("User-Agent", "GitHub-Hookshot/2f5e9b3".to_owned()),
        ("X-GitHub-Event", event.to_owned()),
        ("X-GitHub-Delivery", delivery.to_owned()),
        ("X-GitHub-Hook-ID", "292430182".to_owned()),
        ("X-Hub-Signature-256", sign(secret, body)),
    ]
}

#[tokio::test]
async fn every_github_state_is_published_with_its_mapped_status_and_inactive_is_not() {
    let intake = Intake::spawn().await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    let ws = intake.app.tenant.workspace_id;
    let cases = [
        ("error", "failed"),
        ("failure", "failed"),
        ("in_progress", "in_progress"),
        ("queued", "pending"),
        ("pending", "pending"),
        ("waiting", "pending"),
        ("success", "success"),
    ];

    let mut bodies = BTreeMap::new();
    for (state, status) in cases {
        let delivery = format!("delivery-{state}");
        let body = github_body(state);
        let (code, answer) = json(
            intake
                .post(
                    &receiver.path(),
                    &github_headers("deployment_status", &delivery, &secret, &body),
                    &body,
                )
                .await,
        )
        .await;
        assert_eq!(code, 201, "{state}: {answer}");
        assert_eq!(answer["status"], status, "{state}: {answer}");
        vibemon_testkit::openapi::assert_fits("DeploymentResponse", &answer);
        bodies.insert(delivery, (body, status));
    }
    let inactive = github_body("inactive");
    let (code, answer) = json(
        intake
            .post(
                &receiver.path(),
                &github_headers("deployment_status", "delivery-inactive", &secret, &inactive),
                &inactive,
            )
            .await,
    )
    .await;

    assert_eq!(code, 202, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains("superseded"),
        "{answer}"
    );
    let records = intake.events(cases.len()).await;
    assert_eq!(records.len(), cases.len());
    assert_eq!(
        intake.app.record_count().await,
        cases.len() as i64,
        "inactive published nothing"
    );
    let deployment_ids: std::collections::BTreeSet<_> = records
        .iter()
        .map(|(_, e)| e["deployment_id"].to_string())
        .collect();
    assert_eq!(
        deployment_ids.len(),
        1,
        "every status of one deployment is one deployment"
    );
    for (record, event) in &records {
        let delivery = event["extra_data"]["delivery_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (body, status) = &bodies[&delivery];
        assert_eq!(event["status"], *status, "{event}");
        assert_eq!(event["source"], "github");
        assert_eq!(event["repository"], "Codertocat/Hello-World");
        assert_eq!(event["environment"], "production");
        assert_eq!(
            event["environment_id"],
            json!(intake.app.tenant.environment_id)
        );
        assert_eq!(event["branch"], "main");
        assert_eq!(event["commit_sha"], SHA);
        assert_eq!(event["external_id"], "github-145988746");
        assert_eq!(event["deployed_at"], "2024-05-15T15:20:56Z", "updated_at");
        assert_eq!(event["api_key_id"], json!(receiver.id));
        assert_eq!(event["api_key_name"], "github integration: deploys");
        assert_eq!(
            event["schema_version"], 3,
            "the version that carries source github"
        );
        let extra = &event["extra_data"];
        assert_eq!(extra["provider"], "github");
        assert_eq!(extra["deployment_id"], 145988746);
        assert_eq!(extra["deployment_status_id"], status_id(body));
        assert_eq!(extra["environment"], "production");
        assert_eq!(
            extra["log_url"],
            "https://github.com/Codertocat/Hello-World/actions/runs/4913381234/job/13317227431"
        );
        assert_eq!(extra["run_id"], 4913381234_i64);
        assert_eq!(extra["actor"], "Codertocat");
        assert!(
            extra.get("ref").is_none(),
            "a branch is not kept as a ref: {extra}"
        );
        let event_id = idempotent_event_id(ws, &format!("github-status:{}", status_id(body)));
        assert_eq!(event["event_id"], json!(event_id));
        assert_eq!(header(record, "ce_id"), Some(event_id.to_string().as_str()));
        assert_eq!(
            header(record, REQUEST_FINGERPRINT_HEADER),
            Some(request_fingerprint(body).as_str())
        );
    }
    assert_eq!(intake.deliveries("github", "published").await, 7.0);
    assert_eq!(intake.deliveries("github", "inactive").await, 1.0);
}

/// status, source, branch, commit_sha, reports, extra_data of a row.
type ProjectedRow = (String, String, Option<String>, Option<String>, i32, Value);

#[tokio::test]
async fn the_statuses_of_one_github_deployment_project_into_one_row() {
    let intake = Intake::spawn().await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    for state in ["queued", "in_progress", "success"] {
        let body = github_body(state);
        let resp = intake
            .post(
                &receiver.path(),
                &github_headers("deployment_status", &format!("d-{state}"), &secret, &body),
                &body,
            )
            .await;
        assert_eq!(resp.status(), 201);
    }

    let records = intake.events(3).await;
    intake.project(&records).await;

    let rows: Vec<ProjectedRow> = sqlx::query_as(
        "SELECT status, source, branch, commit_sha, reports, extra_data FROM deployments WHERE external_id = 'github-145988746'",
    )
    .fetch_all(&intake.app.db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (status, source, branch, sha, reports, extra) = &rows[0];
    assert_eq!((status.as_str(), source.as_str()), ("success", "github"));
    assert_eq!(
        (branch.as_deref(), sha.as_deref()),
        (Some("main"), Some(SHA))
    );
    assert_eq!(*reports, 3);
    assert_eq!(extra["provider"], "github");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_or_replayed_github_status_is_one_event_sequentially_and_concurrently() {
    let intake = Intake::spawn().await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    let body = github_body("success");
    let headers = github_headers(
        "deployment_status",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        &secret,
        &body,
    );

    let (first_code, first) = json(intake.post(&receiver.path(), &headers, &body).await).await;
    let (again_code, again) = json(intake.post(&receiver.path(), &headers, &body).await).await;
    // The same signed body under another delivery GUID (a replay of a
    // captured delivery, or a second hook): the same status, one event.
    let racing = github_headers("deployment_status", "a-racing-delivery", &secret, &body);
    let raced = futures::future::join_all(
        (0..8).map(|_| intake.request(&receiver.path(), &racing, &body).send()),
    )
    .await;

    assert_eq!((first_code, again_code), (201, 201), "{first} {again}");
    assert_eq!(first, again, "the redelivery gets the first answer");
    assert!(
        raced.iter().all(|r| r.as_ref().unwrap().status() == 201),
        "{raced:?}"
    );
    assert_eq!(
        intake.app.record_count().await,
        1,
        "one record per deployment status, whatever the delivery id"
    );
}

#[tokio::test]
async fn a_ping_gets_200_and_any_other_event_202_and_neither_is_published() {
    let intake = Intake::spawn().await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    let ping = br#"{"zen":"Design for failure.","hook_id":292430182}"#;
    let push = br#"{"ref":"refs/heads/main"}"#;

    let (ping_code, ping_body) = json(
        intake
            .post(
                &receiver.path(),
                &github_headers("ping", "p1", &secret, ping),
                ping,
            )
            .await,
    )
    .await;
    let (push_code, push_body) = json(
        intake
            .post(
                &receiver.path(),
                &github_headers("push", "p2", &secret, push),
                push,
            )
            .await,
    )
    .await;

    assert_eq!(ping_code, 200, "{ping_body}");
    assert_eq!(push_code, 202, "{push_body}");
    assert!(
        push_body["detail"].as_str().unwrap().contains("\"push\""),
        "{push_body}"
    );
    assert_eq!(intake.app.record_count().await, 0);
    assert_eq!(intake.deliveries("github", "ping").await, 1.0);
    assert_eq!(intake.deliveries("github", "ignored_event").await, 1.0);
    let ignored =
        "vibemon_ingest_integration_ignored_events_total{event=\"push\",provider=\"github\"}";
    assert_eq!(intake.app.count(ignored).await, 1.0);
}

/// Sends `body` with `headers` to `path`; asserts the status and that the
/// body's text contains `says`; returns the body.
async fn refused(
    intake: &Intake,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
    status: u16,
    says: &str,
) -> Value {
    let (code, answer) = json(intake.post(path, headers, body).await).await;
    assert_eq!(code, status, "{answer}");
    assert!(
        answer.to_string().contains(says),
        "{says:?} not in {answer}"
    );
    answer
}

#[tokio::test]
async fn a_bad_signature_an_unknown_or_revoked_receiver_or_another_providers_are_refused_and_publish_nothing(
) {
    let intake = Intake::spawn().await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    let (gitlab, gitlab_secret) = intake.receiver(Provider::Gitlab, &[], false).await;
    let (revoked, revoked_secret) = intake.receiver(Provider::Github, &[], false).await;
    integrations::revoke(&intake.app.db.pool, revoked.id)
        .await
        .unwrap();
    let body = github_body("success");
    let path = receiver.path();
    let signed = |secret: &str| github_headers("deployment_status", "d1", secret, &body);

    let mut unsigned = signed(&secret);
    unsigned.retain(|(k, _)| *k != "X-Hub-Signature-256");
    refused(&intake, &path, &unsigned, &body, 401, "X-Hub-Signature-256").await;
    refused(
        &intake,
        &path,
        &signed("not-the-secret"),
        &body,
        401,
        "does not match",
    )
    .await;
    let other_body = github_body("failure");
    refused(
        &intake,
        &path,
        &signed(&secret),
        &other_body,
        401,
        "does not match",
    )
    .await;
    let mut garbled = signed(&secret);
    garbled[5].1 = garbled[5].1.replace("sha256=", "sha1=");
    refused(&intake, &path, &garbled, &body, 401, "does not match").await;
    let unknown = format!("/api/v1/integrations/github/{}", Uuid::new_v4());
    refused(&intake, &unknown, &signed(&secret), &body, 404, "not found").await;
    refused(
        &intake,
        "/api/v1/integrations/github/not-a-uuid",
        &signed(&secret),
        &body,
        404,
        "not found",
    )
    .await;
    let as_github = format!("/api/v1/integrations/github/{}", gitlab.id);
    refused(
        &intake,
        &as_github,
        &signed(&gitlab_secret),
        &body,
        404,
        "not found",
    )
    .await;
    refused(
        &intake,
        &revoked.path(),
        &signed("wrong"),
        &body,
        401,
        "does not match",
    )
    .await;
    refused(
        &intake,
        &revoked.path(),
        &signed(&revoked_secret),
        &body,
        401,
        "revoked",
    )
    .await;

    assert_eq!(intake.app.record_count().await, 0);
    assert_eq!(intake.deliveries("github", "bad_signature").await, 5.0);
    assert_eq!(intake.deliveries("github", "unknown_receiver").await, 3.0);
    assert_eq!(intake.deliveries("github", "revoked").await, 1.0);
}

/// The fixture with `change` applied, and GitHub's headers signed for it.
fn changed(
    secret: &str,
    change: impl FnOnce(&mut Value),
) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let mut v = fixture("github-deployment_status.json");
    let unchanged = v.clone();
    change(&mut v);
    // Another status is another status id, as GitHub gives it; a change
    // that leaves the id as it was keeps the fixture's.
    if v != unchanged && v["deployment_status"]["id"] == unchanged["deployment_status"]["id"] {
        let text = serde_json::to_vec(&v).unwrap();
        let id = text.iter().fold(17_i64, |h, b| {
            (h.wrapping_mul(31) + i64::from(*b)) % 1_000_000_007
        });
        v["deployment_status"]["id"] = json!(id);
    }
    let body = serde_json::to_vec(&v).unwrap();
    let headers = github_headers("deployment_status", "d-bad", secret, &body);
    (body, headers)
}

#[tokio::test]
async fn a_github_body_that_is_not_the_event_it_claims_gets_422_naming_each_problem() {
    let intake = Intake::spawn().await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    let path = receiver.path();

    let not_json = b"{\"deployment\": ";
    refused(
        &intake,
        &path,
        &github_headers("deployment_status", "d", &secret, not_json),
        not_json,
        422,
        "json_invalid",
    )
    .await;
    let (body, headers) = changed(&secret, |v| {
        v["deployment"].as_object_mut().unwrap().remove("id");
        v["deployment"]["sha"] = json!("f95f852");
        v["deployment_status"]["updated_at"] = json!("last tuesday");
        v["deployment_status"]["state"] = json!("exploded");
        v["repository"]["full_name"] = json!("no-slash");
    });
    let answer = refused(&intake, &path, &headers, &body, 422, "detail").await;
    let locs: Vec<String> = answer["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["loc"].to_string())
        .collect();
    assert_eq!(
        locs,
        [
            r#"["body","deployment_status","state"]"#,
            r#"["body","deployment","id"]"#,
            r#"["body","deployment","sha"]"#,
            r#"["body","repository","full_name"]"#,
            r#"["body","deployment_status","updated_at"]"#,
        ],
        "{answer}"
    );
    let mut no_delivery =
        github_headers("deployment_status", "d", &secret, &github_body("success"));
    no_delivery.retain(|(k, _)| *k != "X-GitHub-Delivery");
    refused(
        &intake,
        &path,
        &no_delivery,
        &github_body("success"),
        422,
        "x-github-delivery",
    )
    .await;
    let (future, headers) = changed(&secret, |v| {
        v["deployment_status"]["updated_at"] = json!("2999-01-01T00:00:00Z")
    });
    refused(&intake, &path, &headers, &future, 422, "datetime_future").await;

    assert_eq!(intake.app.record_count().await, 0);
    assert_eq!(intake.deliveries("github", "invalid_body").await, 4.0);
}

#[tokio::test]
async fn an_environment_is_mapped_or_must_exist_unless_the_receiver_creates_it() {
    let intake = Intake::spawn().await;
    let (strict, strict_secret) = intake
        .receiver(Provider::Github, &[("Production EU", "production")], false)
        .await;
    let (creating, creating_secret) = intake.receiver(Provider::Github, &[], true).await;
    let named = |name: &str, secret: &str, delivery: &str| {
        let (body, mut headers) = changed(secret, |v| {
            v["deployment"]["environment"] = json!(name);
            v["deployment_status"]["environment"] = json!(name);
        });
        headers[3].1 = delivery.to_owned();
        (body, headers)
    };

    let (mapped, headers) = named("Production EU", &strict_secret, "m1");
    let (code, answer) = json(intake.post(&strict.path(), &headers, &mapped).await).await;
    assert_eq!(
        (code, answer["environment_id"].clone()),
        (201, json!(intake.app.tenant.environment_id)),
        "{answer}"
    );
    let (unknown, headers) = named("staging", &strict_secret, "m2");
    refused(
        &intake,
        &strict.path(),
        &headers,
        &unknown,
        404,
        "environment map",
    )
    .await;
    let (invalid, headers) = named("Staging EU", &strict_secret, "m3");
    refused(
        &intake,
        &strict.path(),
        &headers,
        &invalid,
        404,
        "not a valid environment name",
    )
    .await;
    let created = futures::future::join_all((0..4).map(|i| {
        let (body, headers) = named("preview", &creating_secret, &format!("c{i}"));
        intake.request(&creating.path(), &headers, &body).send()
    }))
    .await;

    assert!(
        created.iter().all(|r| r.as_ref().unwrap().status() == 201),
        "{created:?}"
    );
    let previews: i64 =
        sqlx::query_scalar("SELECT count(*) FROM environments WHERE name = 'preview'")
            .fetch_one(&intake.app.db.pool)
            .await
            .unwrap();
    assert_eq!(previews, 1, "created once, however many raced");
    assert_eq!(
        intake.app.record_count().await,
        2,
        "the mapped one, and the racing copies of one status as one event"
    );
    assert_eq!(
        intake.deliveries("github", "refused_environment").await,
        2.0
    );
    let extra: Vec<Value> = intake
        .events(5)
        .await
        .into_iter()
        .map(|(_, e)| e["extra_data"]["environment"].clone())
        .collect();
    assert!(
        extra.contains(&json!("Production EU")),
        "the provider's name is kept: {extra:?}"
    );
}

#[tokio::test]
async fn without_an_integration_key_the_routes_say_integrations_are_not_configured() {
    let app = TestApp::spawn_with(|c| c.integration_key = None).await;
    let path = format!("/api/v1/integrations/gitlab/{}", Uuid::new_v4());

    let (code, answer) = json(
        app.client
            .post(app.url(&path))
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(code, 503, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("not configured"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_delivery_over_the_integration_body_limit_gets_413_and_a_large_one_under_it_is_taken() {
    let intake = Intake::spawn_with(|c| {
        c.max_body_bytes = 1024;
        c.max_integration_body_bytes = 64 * 1024;
    })
    .await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    let padded = |n: usize| {
        changed(&secret, |v| {
            v["deployment"]["payload"] = json!({"pad": "x".repeat(n)})
        })
    };

    let (large, headers) = padded(32 * 1024);
    let (code, answer) = json(intake.post(&receiver.path(), &headers, &large).await).await;
    let (huge, headers) = padded(80 * 1024);
    refused(&intake, &receiver.path(), &headers, &huge, 413, "65536").await;

    assert_eq!(
        code, 201,
        "over the webhook's limit, under the receivers': {answer}"
    );
    assert_eq!(intake.app.record_count().await, 1);
}

#[tokio::test]
async fn while_ingest_is_held_below_event_version_3_a_delivery_gets_503_and_nothing_is_published() {
    let intake = Intake::spawn_with(|c| c.max_event_version = 2).await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    let (body, headers) = changed(&secret, |_| {});

    let (code, answer) = json(intake.post(&receiver.path(), &headers, &body).await).await;

    assert_eq!(code, 503, "the code host retries later: {answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("INGEST_MAX_EVENT_VERSION"),
        "{answer}"
    );
    assert_eq!(intake.app.record_count().await, 0);
}

#[tokio::test]
async fn a_ping_in_another_content_type_is_refused_as_its_deployment_statuses_would_be() {
    let intake = Intake::spawn().await;
    let (receiver, secret) = intake.receiver(Provider::Github, &[], false).await;
    let ping = b"payload=%7B%22zen%22%3A%22Keep+it+logically+awesome.%22%7D";
    let mut headers = github_headers("ping", "ping-form", &secret, ping);
    headers.retain(|(k, _)| *k != "Content-Type");
    headers.push((
        "Content-Type",
        "application/x-www-form-urlencoded".to_owned(),
    ));

    let (code, answer) = json(intake.post(&receiver.path(), &headers, ping).await).await;

    assert_eq!(
        code, 415,
        "a green ping would hide that nothing can be recorded: {answer}"
    );
    assert_eq!(intake.app.record_count().await, 0);
}
