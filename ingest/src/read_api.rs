//! The read API, beside the webhook and behind the same `X-Workspace-Key`:
//! deployment history, one deployment with its reports, environments with
//! what runs there now, and "what was running at time T".
//!
//! A key sees its own workspace only; another workspace's ids answer 404.
//! Query parameters and path segments are parsed strictly, from the raw
//! bytes: an unknown or repeated parameter, invalid UTF-8, a control, format
//! or private-use character, an overlong value, or a value that does not
//! parse is a 422 naming it, before anything reaches Postgres.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vibemon_schemas::api::{LocPart, ValidationIssue};
use vibemon_schemas::{DeploymentStatus, EnvironmentName};
use vibemon_store::dora::{self, Bucket, DoraError, DoraQuery};
use vibemon_store::read::{self, Cursor, DeploymentFilter};

use crate::authenticated::{Authenticated, ReadScope};
use crate::error::ApiError;
use crate::state::SharedState;
use vibemon_schemas::fields::{forbidden_char, parse_query_timestamp};

/// Longest query or path value read, in bytes after percent-decoding. The
/// longest legitimate one is a repository name (255 characters); a larger
/// value is an attack or a mistake, and is refused before any work.
pub const MAX_PARAM_BYTES: usize = 1024;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/deployments", get(list_deployments))
        .route("/api/v1/deployments/{id}", get(get_deployment))
        .route("/api/v1/environments", get(list_environments))
        .route("/api/v1/environments/{name}/deployed", get(deployed_at))
        .route("/api/v1/metrics/dora", get(dora_metrics))
}

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError::ReferenceUnavailable(e.to_string())
}

/// Strict query parameters: known names only, each at most once, each parsed
/// with a 422 on failure.
struct Params {
    raw: HashMap<String, String>,
    issues: Vec<ValidationIssue>,
}

impl Params {
    /// Splits and decodes the raw query string itself, rather than through
    /// axum's `Query`, which replaces invalid UTF-8 silently and answers its
    /// own errors in plain text.
    fn new(query: Option<String>, allowed: &[&str]) -> Self {
        let mut params = Self {
            raw: HashMap::new(),
            issues: Vec::new(),
        };
        let query = query.unwrap_or_default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if let Err(problem) = params.add(k, v, allowed) {
                params.issues.push(problem);
            }
        }
        params
    }

    /// Adds one raw `name=value` pair, or says what is wrong with it.
    fn add(&mut self, k: &str, v: &str, allowed: &[&str]) -> Result<(), ValidationIssue> {
        let name = decode_component(k)
            .and_then(|k| visible(&k, "parameter name").map(|()| k))
            .map_err(|msg| {
                let shown: String = String::from_utf8_lossy(&percent_decode(k))
                    .chars()
                    .take(64)
                    .collect();
                issue(&shown, "value_error", msg)
            })?;
        if !allowed.contains(&name.as_str()) {
            let msg = format!(
                "unknown query parameter {name:?} (allowed: {})",
                allowed.join(", ")
            );
            return Err(issue(&name, "extra_forbidden", msg));
        }
        if self.raw.contains_key(&name) {
            let msg = format!("{name} must be given at most once");
            return Err(issue(&name, "duplicate_parameter", msg));
        }
        let value = decode_component(v)
            .and_then(|v| visible(&v, &name).map(|()| v))
            .map_err(|msg| issue(&name, "value_error", msg))?;
        self.raw.insert(name, value);
        Ok(())
    }

    fn get<T>(&mut self, name: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let value = self.raw.get(name)?;
        match parse(value) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.issues.push(issue(name, "value_error", msg));
                None
            }
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.issues))
        }
    }
}

/// `%XX` decoded to bytes, `+` to a space (HTML form encoding); a `%` not
/// followed by two hex digits is kept as it is, as browsers do.
fn percent_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && hex(bytes[i + 1]).is_some()
                && hex(bytes[i + 2]).is_some() =>
            {
                let (hi, lo) = (
                    hex(bytes[i + 1]).unwrap_or(0),
                    hex(bytes[i + 2]).unwrap_or(0),
                );
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A query component as text: refused when it is not UTF-8 or too long.
fn decode_component(raw: &str) -> Result<String, String> {
    if raw.len() > 3 * MAX_PARAM_BYTES {
        return Err(format!("must be at most {MAX_PARAM_BYTES} bytes"));
    }
    String::from_utf8(percent_decode(raw)).map_err(|_| "must be valid UTF-8".to_owned())
}

/// Refuses a value that is too long or holds a control, format or
/// private-use character (the same rule as the webhook's text fields).
fn visible(value: &str, what: &str) -> Result<(), String> {
    if value.len() > MAX_PARAM_BYTES {
        return Err(format!(
            "{what} must be at most {MAX_PARAM_BYTES} bytes, got {}",
            value.len()
        ));
    }
    match value
        .chars()
        .find_map(|c| forbidden_char(c).map(|why| (c, why)))
    {
        None => Ok(()),
        Some((c, why)) => Err(format!(
            "{what} must not contain U+{:04X} ({why})",
            c as u32
        )),
    }
}

/// A path segment as text, or a 422 naming it: axum's own rejection (invalid
/// UTF-8) is plain text, so it is replaced by our body.
fn path_segment(
    name: &str,
    segment: Result<Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let checked = match segment {
        Ok(Path(value)) => visible(&value, name).map(|()| value),
        Err(_) => Err(format!("{name} must be valid UTF-8")),
    };
    checked.map_err(|msg| {
        ApiError::Validation(vec![ValidationIssue {
            loc: vec![LocPart::from("path"), LocPart::from(name)],
            msg,
            kind: "value_error".to_owned(),
        }])
    })
}

fn issue(name: &str, kind: &str, msg: String) -> ValidationIssue {
    ValidationIssue {
        loc: vec![LocPart::from("query"), LocPart::from(name)],
        msg,
        kind: kind.to_owned(),
    }
}

fn timestamp(name: &'static str) -> impl Fn(&str) -> Result<DateTime<Utc>, String> {
    move |s| parse_query_timestamp(s, name)
}

/// `GET /api/v1/deployments`'s query, parsed: every filter, the page.
struct HistoryQuery {
    environment: Option<EnvironmentName>,
    repository: Option<String>,
    status: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    cursor: Option<Cursor>,
    limit: Option<i64>,
}

impl HistoryQuery {
    const PARAMS: [&'static str; 7] = [
        "environment",
        "repository",
        "status",
        "since",
        "until",
        "cursor",
        "limit",
    ];

    fn parse(raw: Option<String>) -> Result<Self, ApiError> {
        let mut p = Params::new(raw, &Self::PARAMS);
        let query = Self {
            environment: p.get("environment", |s| {
                EnvironmentName::parse(s).map_err(|e| e.msg)
            }),
            repository: p.get("repository", |s| Ok(s.to_owned())),
            status: p.get("status", |s| {
                DeploymentStatus::parse(s)
                    .map(|s| s.as_str().to_owned())
                    .map_err(|e| e.msg)
            }),
            since: p.get("since", timestamp("since")),
            until: p.get("until", timestamp("until")),
            cursor: p.get("cursor", |s| {
                Cursor::decode(s).ok_or_else(|| "cursor is not one this API returned".to_owned())
            }),
            limit: p.get("limit", |s| {
                s.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    format!(
                        "limit must be a positive integer (at most {} is used)",
                        read::MAX_PAGE
                    )
                })
            }),
        };
        p.finish()?;
        Ok(query)
    }
}

async fn list_deployments(
    State(state): State<SharedState>,
    Authenticated(who, _): Authenticated<ReadScope>,
    RawQuery(raw): RawQuery,
) -> Result<Json<read::Page>, ApiError> {
    let q = HistoryQuery::parse(raw)?;
    let environment_id = match q.environment {
        Some(name) => Some(state.environments.resolve(who.workspace_id, &name).await?),
        None => None,
    };
    let filter = DeploymentFilter {
        environment_id,
        repository: q.repository,
        status: q.status,
        since: q.since,
        until: q.until,
    };
    let page = read::list_deployments(
        &state.read_pool,
        who.workspace_id,
        &filter,
        q.cursor,
        q.limit.unwrap_or(50),
    )
    .await
    .map_err(db_error)?;
    Ok(Json(page))
}

async fn get_deployment(
    State(state): State<SharedState>,
    Authenticated(who, _): Authenticated<ReadScope>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<read::DeploymentDetail>, ApiError> {
    let id = path_segment("id", id)?;
    Params::new(raw, &[]).finish()?;
    let not_found = || ApiError::NotFound(format!("Deployment {id}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let detail = read::get_deployment(&state.read_pool, who.workspace_id, uuid)
        .await
        .map_err(db_error)?;
    detail.map(Json).ok_or_else(not_found)
}

async fn list_environments(
    State(state): State<SharedState>,
    Authenticated(who, _): Authenticated<ReadScope>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    Params::new(raw, &[]).finish()?;
    let envs = read::environments_now(&state.read_pool, who.workspace_id)
        .await
        .map_err(db_error)?;
    Ok(Json(serde_json::json!({ "environments": envs })))
}

async fn deployed_at(
    State(state): State<SharedState>,
    Authenticated(who, _): Authenticated<ReadScope>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = path_segment("name", name)?;
    let mut p = Params::new(raw, &["at", "repository"]);
    let at = p.get("at", timestamp("at"));
    let repository = p.get("repository", |s| Ok(s.to_owned()));
    p.finish()?;
    let name =
        EnvironmentName::parse(name.clone()).map_err(|_| ApiError::EnvironmentNotFound(name))?;
    let environment_id = state.environments.resolve(who.workspace_id, &name).await?;
    let at = at.unwrap_or_else(Utc::now);
    let running = read::deployed_at(
        &state.read_pool,
        who.workspace_id,
        environment_id,
        at,
        repository.as_deref(),
    )
    .await
    .map_err(db_error)?;
    Ok(Json(serde_json::json!({
        "environment": name,
        "environment_id": environment_id,
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        "deployed": running,
    })))
}

/// How far back `GET /api/v1/metrics/dora` looks when `since` is not given.
const DORA_DEFAULT_DAYS: i64 = 30;

/// `GET /api/v1/metrics/dora?environment=E[&repository=R][&since=T][&until=T][&bucket=day|week|month]`:
/// the four DORA metrics of one environment over `[since, until)` (default:
/// the last 30 days, by week), each with its numerator and denominator.
async fn dora_metrics(
    State(state): State<SharedState>,
    Authenticated(who, _): Authenticated<ReadScope>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut p = Params::new(
        raw,
        &["environment", "repository", "since", "until", "bucket"],
    );
    let environment = p.get("environment", |s| {
        EnvironmentName::parse(s).map_err(|e| e.msg)
    });
    let repository = p.get("repository", |s| {
        if s.is_empty() {
            Err("repository must not be empty: leave it out for every repository".to_owned())
        } else {
            Ok(s.to_owned())
        }
    });
    let since = p.get("since", timestamp("since"));
    let until = p.get("until", timestamp("until"));
    let bucket = p.get("bucket", Bucket::parse);
    let required = || {
        issue(
            "environment",
            "missing",
            "environment is required: the metrics are per environment".to_owned(),
        )
    };
    if !p.raw.contains_key("environment") {
        p.issues.push(required());
    }
    p.finish()?;
    let name = environment.ok_or_else(|| ApiError::Validation(vec![required()]))?;
    let until = until.unwrap_or_else(Utc::now);
    let since = since.unwrap_or(until - chrono::Duration::days(DORA_DEFAULT_DAYS));
    let bucket = bucket.unwrap_or(Bucket::Week);
    let window_error =
        |e: dora::WindowError| ApiError::Validation(vec![issue(e.param, "value_error", e.msg)]);
    // The window is refused before any lookup, like every other bad parameter.
    dora::buckets(since, until, bucket).map_err(window_error)?;
    let environment_id = state.environments.resolve(who.workspace_id, &name).await?;
    let query = DoraQuery {
        workspace_id: who.workspace_id,
        environment_id,
        repository: repository.clone(),
        since,
        until,
        bucket,
    };
    let report = dora::dora(&state.read_pool, &query)
        .await
        .map_err(|e| match e {
            DoraError::Window(e) => window_error(e),
            DoraError::Database(e) => db_error(e),
        })?;
    let mut body = serde_json::to_value(&report).expect("a report serializes");
    body["environment"] = serde_json::json!(name);
    body["environment_id"] = serde_json::json!(environment_id);
    body["repository"] = serde_json::json!(repository);
    Ok(Json(body))
}
