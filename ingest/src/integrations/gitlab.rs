//! GitLab's "Deployment Hook": the headers and payload of one delivery,
//! read into a [`Delivery`].
//!
//! | `status`              | status        |
//! |-----------------------|---------------|
//! | `running`             | `in_progress` |
//! | `success`             | `success`     |
//! | `failed`              | `failed`      |
//! | `canceled`            | `cancelled`   |
//! | `created`, `blocked`  | `pending`     |
//! | `skipped`             | not recorded (202) |
//!
//! The payload names the commit by `short_sha` only; the full SHA is the
//! last segment of `commit_url`, which must start with `short_sha`.

use axum::http::HeaderMap;
use serde_json::{json, Value};
use vibemon_schemas::{CommitSha, DeploymentStatus, ExternalId, FieldError, RepoFullName};

use super::payload::{branch_of, decode, extra_data, Clock, Reader, Report};
use super::{header_value, optional_header_value, Delivery};
use crate::error::ApiError;

pub const EVENT: &str = "x-gitlab-event";
/// Sent by GitLab (17.4 and later) on every delivery of one event,
/// retries included.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const EVENT_UUID: &str = "x-gitlab-event-uuid";

/// The delivery, once its token matched.
pub fn read(headers: &HeaderMap, body: &[u8], clock: Clock) -> Result<Delivery, ApiError> {
    let event = header_value(headers, EVENT)?;
    if event != "Deployment Hook" {
        return Ok(Delivery::ignored_event(event));
    }
    crate::webhook::require_json(headers)?;
    let header_key = optional_header_value(headers, IDEMPOTENCY_KEY)?;
    let payload = decode(body).map_err(ApiError::Validation)?;
    let mut r = Reader::new(&payload);
    // GitLab 17.4 and later send the same Idempotency-Key on every attempt
    // of one delivery. Before that, the deployment's id, status and the
    // time it changed name one status change (X-Gitlab-Event-UUID is shared
    // by every hook a request sets off, and a resend gets a new one).
    let idempotency_key = match header_key {
        Some(k) => format!("gitlab-idempotency:{k}"),
        None => format!(
            "gitlab-status:{}:{}:{}",
            r.optional_id(&["deployment_id"]).unwrap_or_default(),
            r.optional_string(&["status"]).unwrap_or_default(),
            r.optional_string(&["status_changed_at"])
                .unwrap_or_default()
        ),
    };
    let status = r.string(&["status"]);
    if status == Some("skipped") {
        return Ok(Delivery::Skipped {
            outcome: "skipped",
            event: None,
            reason: "A skipped deployment never ran; nothing was recorded".to_owned(),
        });
    }
    let status = r.parsed(&["status"], status, status_of);
    let report = report(&mut r, idempotency_key, status, clock);
    r.finish(report)
        .map(Delivery::Report)
        .map_err(ApiError::Validation)
}

/// GitLab's deployment status as ours (see the table above).
fn status_of(status: String) -> Result<DeploymentStatus, FieldError> {
    Ok(match status.as_str() {
        "running" => DeploymentStatus::InProgress,
        "success" => DeploymentStatus::Success,
        "failed" => DeploymentStatus::Failed,
        "canceled" => DeploymentStatus::Cancelled,
        "created" | "blocked" => DeploymentStatus::Pending,
        _ => {
            return Err(FieldError::new(
                "enum",
                format!("status must be one of 'running', 'success', 'failed', 'canceled', 'created', 'blocked', 'skipped'; got {status:?}"),
            ))
        }
    })
}

fn report(
    r: &mut Reader<'_>,
    idempotency_key: String,
    status: Option<DeploymentStatus>,
    clock: Clock,
) -> Option<Report> {
    if r.string(&["object_kind"])
        .is_some_and(|k| k != "deployment")
    {
        r.problem(
            &["object_kind"],
            "value_error",
            "object_kind must be \"deployment\" in a Deployment Hook",
        );
    }
    let deployment_id = r.id(&["deployment_id"]);
    let commit_sha = commit_sha(r);
    let reference = r.string(&["ref"]);
    let environment = r.string(&["environment"]);
    let name = r.string(&["project", "path_with_namespace"]);
    let repository = r.parsed(
        &["project", "path_with_namespace"],
        name,
        RepoFullName::parse,
    );
    let changed = r.optional_string(&["status_changed_at"]);
    // GitLab before 13.12 sent no status_changed_at: the arrival then.
    let deployed_at = match changed {
        Some(t) => r.time(&["status_changed_at"], Some(t), clock),
        None => Some(clock.now),
    };
    let branch = reference.and_then(|x| branch_of(x, commit_sha.as_ref()));
    let kept_ref = reference.filter(|_| branch.is_none());
    let text = |r: &mut Reader<'_>, path: &[&str]| r.optional_string(path).map(Value::from);
    let extra = [
        ("provider", Some(json!("gitlab"))),
        ("delivery_id", Some(json!(idempotency_key))),
        ("deployment_id", deployment_id.map(Value::from)),
        (
            "deployable_id",
            r.optional_id(&["deployable_id"]).map(Value::from),
        ),
        ("deployable_url", text(r, &["deployable_url"])),
        ("environment", environment.map(Value::from)),
        ("environment_tier", text(r, &["environment_tier"])),
        ("environment_url", text(r, &["environment_external_url"])),
        ("ref", kept_ref.map(Value::from)),
        ("actor", text(r, &["user", "username"])),
    ];
    let extra_data = extra_data(r, extra);
    Some(Report {
        idempotency_key,
        environment: environment?.to_owned(),
        repository: repository?,
        branch,
        commit_sha: Some(commit_sha?),
        status: status?,
        deployed_at: deployed_at?,
        external_id: ExternalId::parse(format!("gitlab-{}", deployment_id?)).ok()?,
        extra_data: extra_data?,
    })
}

/// The full SHA: the last path segment of `commit_url`, a full SHA that
/// starts with `short_sha`.
fn commit_sha(r: &mut Reader<'_>) -> Option<CommitSha> {
    let short = r.string(&["short_sha"]);
    let url = r.string(&["commit_url"]);
    let last = url.map(|u| u.trim_end_matches('/').rsplit('/').next().unwrap_or(""));
    let sha = r.parsed(&["commit_url"], last, |s| {
        CommitSha::parse(s).map_err(|mut e| {
            e.msg = format!("commit_url must end in a full commit SHA: {}", e.msg);
            e
        })
    })?;
    let short = short?.to_ascii_lowercase();
    if short.is_empty() || !sha.as_str().starts_with(&short) {
        r.problem(
            &["commit_url"],
            "value_error",
            format!("commit_url names {sha}, which does not start with short_sha {short:?}"),
        );
        return None;
    }
    Some(sha)
}
