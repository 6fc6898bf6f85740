//! The HTTP application: state, the router, and the webhook handler.
//!
//! [`app`] builds the whole `Router` from an [`AppState`], so tests drive it
//! with `tower::ServiceExt::oneshot` and no socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{SubsecRound, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use moka::future::Cache;
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use uuid::Uuid;
use vibemon_schemas::api::{DeploymentResponse, LocPart, ValidationIssue};
use vibemon_schemas::event::{external_deployment_id, idempotent_event_id};
use vibemon_schemas::{DeploymentReported, SCHEMA_VERSION};

use crate::auth::{Authenticator, Principal};
use crate::environments::Environments;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::request::{self, WebhookRequest};
use crate::server::PeerAddr;
use crate::sink::Sink;

pub const WEBHOOK_PATH: &str = "/api/v1/deployments/webhook";
const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler needs. The router shares it as one
/// [`SharedState`]: axum clones the state for every extractor and middleware,
/// and cloning this struct field by field (a dozen caches and metrics) was
/// the top item of ingest's CPU profile.
#[derive(Clone)]
pub struct AppState {
    pub auth: Authenticator,
    pub environments: Environments,
    pub sink: Sink,
    pub metrics: Metrics,
    pub pool: sqlx::PgPool,
    /// The read API's own pool, so slow reads cannot take the connections
    /// authentication needs (`pool` serves keys and environments).
    pub read_pool: sqlx::PgPool,
    pub limits: Limits,
    /// Responses already given for an `Idempotency-Key` (by event id): a retry
    /// gets the same body without publishing again, and concurrent retries
    /// wait for the first instead of racing it.
    pub idempotent: Cache<Uuid, Arc<DeploymentResponse>>,
    /// Per-client-IP and per-key token buckets.
    pub rate_limits: crate::limits::RateLimits,
}

/// Request limits, from `Config`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a whole request may take.
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub max_future_skew: chrono::Duration,
}

/// The idempotency cache as `AppState` wants it.
pub fn idempotency_cache() -> Cache<Uuid, Arc<DeploymentResponse>> {
    Cache::builder()
        .max_capacity(200_000)
        .time_to_live(Duration::from_secs(24 * 3600))
        .build()
}

/// The state as the router holds it: one pointer to clone per request.
pub type SharedState = Arc<AppState>;

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let state: SharedState = Arc::new(state);
    Router::new()
        .route(WEBHOOK_PATH, post(post_webhook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .merge(crate::read_api::routes())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.limits.request_timeout,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), record_http_metrics))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(&X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID.clone(), MakeRequestUuid))
        .with_state(state)
}

async fn record_http_metrics(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .request_seconds
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

async fn post_webhook(
    State(state): State<SharedState>,
    peer: Option<axum::Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = peer.map(|p| p.0 .0.ip());
    match accept_webhook(&state, peer, &headers, body).await {
        Ok(response) => (
            StatusCode::CREATED,
            [(
                header::LOCATION,
                format!("/api/v1/deployments/{}", response.id),
            )],
            Json(&*response),
        )
            .into_response(),
        Err(err) => {
            state
                .metrics
                .rejections
                .with_label_values(&[err.reason()])
                .inc();
            err.into_response()
        }
    }
}

/// Authenticate, check, validate, resolve, publish: the whole contract.
async fn accept_webhook(
    state: &AppState,
    peer: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Arc<DeploymentResponse>, ApiError> {
    state.rate_limits.check_ip(peer)?;
    // Postgres keeps microseconds; so does every timestamp we hand out, so the
    // 201 body and later reads of the same deployment agree to the digit.
    let received_at = Utc::now().trunc_subsecs(6);
    let key = headers.get("x-workspace-key").and_then(|v| v.to_str().ok());
    let principal = state.auth.authenticate(key).await?;
    state.rate_limits.check_key(principal.key_id)?;
    require_json(headers)?;
    let idempotency_key = idempotency_key(headers)?;
    let bytes = read_body(headers, body, &state.limits).await?;
    let request = request::parse(&bytes, received_at, state.limits.max_future_skew)
        .map_err(ApiError::Validation)?;
    let environment_id = state
        .environments
        .resolve(principal.workspace_id, &request.environment)
        .await?;

    let event_id = match &idempotency_key {
        Some(k) => idempotent_event_id(principal.workspace_id, k),
        None => Uuid::now_v7(),
    };
    let event = build_event(event_id, environment_id, &principal, request, received_at);
    let publish = async {
        state
            .sink
            .publish(&event)
            .await
            .map_err(|e| ApiError::SinkUnavailable(e.to_string()))?;
        Ok::<_, ApiError>(Arc::new(DeploymentResponse::from(&event)))
    };
    if idempotency_key.is_none() {
        return publish.await;
    }
    state
        .idempotent
        .try_get_with(event_id, publish)
        .await
        .map_err(|e| ApiError::SinkUnavailable(e.to_string()))
}

fn build_event(
    event_id: Uuid,
    environment_id: Uuid,
    principal: &Principal,
    r: WebhookRequest,
    received_at: chrono::DateTime<Utc>,
) -> DeploymentReported {
    let deployment_id = match &r.external_id {
        Some(x) => external_deployment_id(principal.workspace_id, environment_id, &r.repository, x),
        None => event_id,
    };
    DeploymentReported {
        schema_version: SCHEMA_VERSION,
        event_id,
        deployment_id,
        workspace_id: principal.workspace_id,
        environment_id,
        environment: r.environment,
        repository: r.repository,
        branch: r.branch,
        commit_sha: r.commit_sha,
        status: r.status,
        source: r.source,
        deployed_at: r.deployed_at,
        extra_data: r.extra_data,
        external_id: r.external_id,
        received_at,
        api_key_id: principal.key_id,
        api_key_name: principal.key_name.clone(),
    }
}

/// The contract says `Content-Type: application/json`; `+json` types and
/// parameters such as `charset=utf-8` are fine.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let Some(raw) = raw else {
        return Err(ApiError::UnsupportedMediaType("(none)".to_owned()));
    };
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(raw))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= IDEMPOTENCY_KEY_MAX_LEN
            && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
    };
    match value.to_str() {
        Ok(s) if ok(s) => Ok(Some(s.to_owned())),
        _ => Err(ApiError::Validation(vec![ValidationIssue {
            loc: vec![LocPart::from("header"), LocPart::from("idempotency-key")],
            msg: format!(
                "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LEN} visible ASCII characters"
            ),
            kind: "value_error".to_owned(),
        }])),
    }
}

async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(ApiError::PayloadTooLarge(limits.max_body_bytes));
    }
    let limited = Limited::new(body, limits.max_body_bytes);
    match tokio::time::timeout(limits.body_timeout, limited.collect()).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge(limits.max_body_bytes))
        }
        Ok(Err(e)) => Err(ApiError::Validation(vec![ValidationIssue {
            loc: vec![LocPart::from("body")],
            msg: format!("Request body could not be read: {e}"),
            kind: "body_read_error".to_owned(),
        }])),
    }
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when Kafka metadata is reachable and a key can be authenticated
/// (Postgres answers, or the key cache is warm).
async fn readyz(State(state): State<SharedState>) -> Response {
    let (kafka, postgres) = tokio::join!(state.sink.ready(), async {
        tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&state.pool),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    });
    let warm_cache = state.auth.has_warm_cache();
    let ready = kafka && (postgres || warm_cache);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if ready { "ready" } else { "unready" },
        "kafka": kafka,
        "postgres": postgres,
        "auth_cache_warm": warm_cache,
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<SharedState>) -> Response {
    state.metrics.producer_queue.set(state.sink.queue_depth());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        vibemon_schemas::OPENAPI_JSON,
    )
        .into_response()
}
