//! The read API, beside the webhook and behind the same `X-Workspace-Key`:
//! deployment history, one deployment with its reports, environments with
//! what runs there now, and "what was running at time T".
//!
//! A key sees its own workspace only; another workspace's ids answer 404.
//! Query parameters are parsed strictly: an unknown one, or a value that does
//! not parse, is a 422 naming it.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use vibemon_schemas::api::{LocPart, ValidationIssue};
use vibemon_schemas::{DeploymentStatus, EnvironmentName};
use vibemon_store::read::{self, Cursor, DeploymentFilter};

use crate::app::{AppState, SharedState};
use crate::auth::Principal;
use crate::error::ApiError;
use vibemon_schemas::fields::parse_timestamp;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/api/v1/deployments", get(list_deployments))
        .route("/api/v1/deployments/{id}", get(get_deployment))
        .route("/api/v1/environments", get(list_environments))
        .route("/api/v1/environments/{name}/deployed", get(deployed_at))
}

async fn principal(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<std::sync::Arc<Principal>, ApiError> {
    let key = headers.get("x-workspace-key").and_then(|v| v.to_str().ok());
    let who = state.auth.authenticate(key).await?;
    state.rate_limits.check_key(who.key_id)?;
    Ok(who)
}

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError::ReferenceUnavailable(e.to_string())
}

/// Strict query parameters: known names only, each parsed with a 422 on failure.
struct Params {
    raw: HashMap<String, String>,
    issues: Vec<ValidationIssue>,
}

impl Params {
    fn new(raw: HashMap<String, String>, allowed: &[&str]) -> Self {
        let mut issues = Vec::new();
        for k in raw.keys() {
            if !allowed.contains(&k.as_str()) {
                issues.push(issue(
                    k,
                    "extra_forbidden",
                    format!(
                        "unknown query parameter {k:?} (allowed: {})",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Self { raw, issues }
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

fn issue(name: &str, kind: &str, msg: String) -> ValidationIssue {
    ValidationIssue {
        loc: vec![LocPart::from("query"), LocPart::from(name)],
        msg,
        kind: kind.to_owned(),
    }
}

fn timestamp(name: &'static str) -> impl Fn(&str) -> Result<DateTime<Utc>, String> {
    move |s| {
        parse_timestamp(s).ok_or_else(|| {
            format!("{name} must be an RFC 3339 timestamp such as 2024-01-15T10:30:00Z, got {s:?}")
        })
    }
}

async fn list_deployments(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<read::Page>, ApiError> {
    let who = principal(&state, &headers).await?;
    let mut p = Params::new(
        raw,
        &[
            "environment",
            "repository",
            "status",
            "since",
            "until",
            "cursor",
            "limit",
        ],
    );
    let environment = p.get("environment", |s| {
        EnvironmentName::parse(s).map_err(|e| e.msg)
    });
    let repository = p.get("repository", |s| Ok(s.to_owned()));
    let status = p.get("status", |s| {
        DeploymentStatus::parse(s)
            .map(|s| s.as_str().to_owned())
            .map_err(|e| e.msg)
    });
    let since = p.get("since", timestamp("since"));
    let until = p.get("until", timestamp("until"));
    let cursor = p.get("cursor", |s| {
        Cursor::decode(s).ok_or_else(|| "cursor is not one this API returned".to_owned())
    });
    let limit = p.get("limit", |s| {
        s.parse::<i64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            format!(
                "limit must be a positive integer (at most {} is used)",
                read::MAX_PAGE
            )
        })
    });
    p.finish()?;
    let environment_id = match environment {
        Some(name) => Some(state.environments.resolve(who.workspace_id, &name).await?),
        None => None,
    };
    let filter = DeploymentFilter {
        environment_id,
        repository,
        status,
        since,
        until,
    };
    let page = read::list_deployments(
        &state.pool,
        who.workspace_id,
        &filter,
        cursor,
        limit.unwrap_or(50),
    )
    .await
    .map_err(db_error)?;
    Ok(Json(page))
}

async fn get_deployment(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<read::DeploymentDetail>, ApiError> {
    let who = principal(&state, &headers).await?;
    let not_found = || ApiError::NotFound(format!("Deployment {id}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let detail = read::get_deployment(&state.pool, who.workspace_id, uuid)
        .await
        .map_err(db_error)?;
    detail.map(Json).ok_or_else(not_found)
}

async fn list_environments(
    State(state): State<SharedState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = principal(&state, &headers).await?;
    let envs = read::environments_now(&state.pool, who.workspace_id)
        .await
        .map_err(db_error)?;
    Ok(Json(serde_json::json!({ "environments": envs })))
}

async fn deployed_at(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = principal(&state, &headers).await?;
    let mut p = Params::new(raw, &["at", "repository"]);
    let at = p.get("at", timestamp("at"));
    let repository = p.get("repository", |s| Ok(s.to_owned()));
    p.finish()?;
    let name =
        EnvironmentName::parse(name.clone()).map_err(|_| ApiError::EnvironmentNotFound(name))?;
    let environment_id = state.environments.resolve(who.workspace_id, &name).await?;
    let at = at.unwrap_or_else(Utc::now);
    let running = read::deployed_at(
        &state.pool,
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
