//! GitHub's `deployment_status` webhook: the headers and payload of one
//! delivery, read into a [`Delivery`].
//!
//! | `deployment_status.state` | status        |
//! |---------------------------|---------------|
//! | `success`                 | `success`     |
//! | `failure`, `error`        | `failed`      |
//! | `pending`, `queued`, `waiting` | `pending` |
//! | `in_progress`             | `in_progress` |
//! | `inactive`                | not recorded (202) |
//!
//! GitHub sets `inactive` on a deployment when a newer one to the same
//! environment succeeds: it says the deployment is superseded, not that it
//! changed status, so it is answered 202 and not published. `waiting` is a
//! deployment held for an environment's required reviewers.
//!
//! One event per deployment status: the event id comes from
//! `deployment_status.id`, which the signature covers, so a redelivery, or a
//! replay of a captured delivery under another `X-GitHub-Delivery`, is the
//! same event. The delivery GUID is kept in `extra_data`.

use axum::http::HeaderMap;
use serde_json::{json, Value};
use vibemon_schemas::{CommitSha, DeploymentStatus, ExternalId, RepoFullName};

use super::payload::{branch_of, decode, extra_data, Clock, Reader, Report};
use super::{header_value, Delivery};
use crate::error::ApiError;

pub const EVENT: &str = "x-github-event";
pub const DELIVERY: &str = "x-github-delivery";

/// The delivery, once its signature matched.
pub fn read(headers: &HeaderMap, body: &[u8], clock: Clock) -> Result<Delivery, ApiError> {
    let event = header_value(headers, EVENT)?;
    // A ping in another content type would pass while every deployment
    // status failed: it is refused the same way.
    if event == "ping" || event == "deployment_status" {
        crate::webhook::require_json(headers)?;
    }
    match event.as_str() {
        "ping" => return Ok(Delivery::Ping),
        "deployment_status" => {}
        _ => return Ok(Delivery::ignored_event(event)),
    }
    let delivery = header_value(headers, DELIVERY)?;
    let payload = decode(body).map_err(ApiError::Validation)?;
    let mut r = Reader::new(&payload);
    let state = r.string(&["deployment_status", "state"]);
    if state == Some("inactive") {
        return Ok(Delivery::Skipped {
            outcome: "inactive",
            event: None,
            reason: "An inactive status marks a deployment superseded (GitHub sets it when a \
                     newer deployment to the environment succeeds); it is not a new status of \
                     a deployment, so nothing was recorded"
                .to_owned(),
        });
    }
    let status = r.parsed(&["deployment_status", "state"], state, status_of);
    let report = report(&mut r, delivery, status, clock);
    r.finish(report)
        .map(Delivery::Report)
        .map_err(ApiError::Validation)
}

/// GitHub's state as ours (see the table above); `inactive` is handled
/// before.
fn status_of(state: String) -> Result<DeploymentStatus, vibemon_schemas::FieldError> {
    Ok(match state.as_str() {
        "success" => DeploymentStatus::Success,
        "failure" | "error" => DeploymentStatus::Failed,
        "pending" | "queued" | "waiting" => DeploymentStatus::Pending,
        "in_progress" => DeploymentStatus::InProgress,
        _ => {
            return Err(vibemon_schemas::FieldError::new(
                "enum",
                format!("deployment_status.state must be one of 'error', 'failure', 'inactive', 'in_progress', 'queued', 'pending', 'waiting', 'success'; got {state:?}"),
            ))
        }
    })
}

fn report(
    r: &mut Reader<'_>,
    delivery: String,
    status: Option<DeploymentStatus>,
    clock: Clock,
) -> Option<Report> {
    let deployment_id = r.id(&["deployment", "id"]);
    let status_id = r.id(&["deployment_status", "id"]);
    let sha = r.string(&["deployment", "sha"]);
    let commit_sha = r.parsed(&["deployment", "sha"], sha, CommitSha::parse);
    let reference = r.string(&["deployment", "ref"]);
    // The deployment's environment, which its statuses share, so every
    // status of one deployment lands in one row.
    // Both are read, so a mistyped one is refused either way.
    let of_deployment = r.optional_string(&["deployment", "environment"]);
    let of_status = r.optional_string(&["deployment_status", "environment"]);
    let environment = of_deployment.or(of_status);
    if environment.is_none() {
        r.problem(&["deployment", "environment"], "missing", "Field required");
    }
    let name = r.string(&["repository", "full_name"]);
    let repository = r.parsed(&["repository", "full_name"], name, RepoFullName::parse);
    let deployed_at = match r.optional_string(&["deployment_status", "updated_at"]) {
        Some(t) => r.time(&["deployment_status", "updated_at"], Some(t), clock),
        None => {
            let t = r.string(&["deployment_status", "created_at"]);
            r.time(&["deployment_status", "created_at"], t, clock)
        }
    };
    let branch = reference.and_then(|x| branch_of(x, commit_sha.as_ref()));
    let kept_ref = reference.filter(|_| branch.is_none());
    let url = |r: &mut Reader<'_>, path: &[&str]| r.optional_string(path).map(Value::from);
    let extra = [
        ("provider", Some(json!("github"))),
        ("delivery_id", Some(json!(delivery))),
        ("deployment_id", deployment_id.map(Value::from)),
        ("deployment_status_id", status_id.map(Value::from)),
        ("environment", environment.map(Value::from)),
        ("ref", kept_ref.map(Value::from)),
        ("task", url(r, &["deployment", "task"])),
        ("log_url", url(r, &["deployment_status", "log_url"])),
        ("target_url", url(r, &["deployment_status", "target_url"])),
        (
            "environment_url",
            url(r, &["deployment_status", "environment_url"]),
        ),
        (
            "run_id",
            r.optional_id(&["workflow_run", "id"]).map(Value::from),
        ),
        ("run_url", url(r, &["workflow_run", "html_url"])),
        ("actor", url(r, &["deployment_status", "creator", "login"])),
    ];
    let extra_data = extra_data(r, extra);
    Some(Report {
        idempotency_key: format!("github-status:{}", status_id?),
        environment: environment?.to_owned(),
        repository: repository?,
        branch,
        commit_sha: Some(commit_sha?),
        status: status?,
        deployed_at: deployed_at?,
        external_id: ExternalId::parse(format!("github-{}", deployment_id?)).ok()?,
        extra_data: extra_data?,
    })
}
