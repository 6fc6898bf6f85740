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
use vibemon_schemas::event::{external_deployment_id, idempotent_event_id, request_fingerprint};
use vibemon_schemas::{DeploymentReported, SCHEMA_VERSION};

use crate::auth::{Authenticator, Principal};
use crate::environments::Environments;
use crate::error::ApiError;
use crate::limits::{Admission, InFlight};
use crate::metrics::Metrics;
use crate::request::{self, WebhookRequest};
use crate::server::PeerAddr;
use crate::sink::{Sink, SinkError};

pub const WEBHOOK_PATH: &str = "/api/v1/deployments/webhook";
const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;
const REQUEST_ID_MAX_LEN: usize = 255;
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
    pub idempotent: Cache<Uuid, Arc<Remembered>>,
    /// Per-client-IP and per-key token buckets.
    pub rate_limits: crate::limits::RateLimits,
    /// The cap on webhook and read-API requests worked on at once.
    pub in_flight: InFlight,
}

/// Request limits, from `Config`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a request may take; for the webhook, longest it may take to
    /// reach the hand-off to Kafka, after which the producer's
    /// `message.timeout.ms` bounds the rest.
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub body_timeout: Duration,
    pub max_future_skew: chrono::Duration,
}

/// The answer given for an `Idempotency-Key`, and the body it answered.
#[derive(Debug)]
pub struct Remembered {
    /// `request_fingerprint` of the accepted body. The key is bound to it: the
    /// same key with other bytes is a reuse of the key (a client bug), not a
    /// retry, and must not get this answer.
    pub fingerprint: String,
    pub response: Arc<DeploymentResponse>,
}

/// The idempotency cache as `AppState` wants it.
pub fn idempotency_cache() -> Cache<Uuid, Arc<Remembered>> {
    // LRU, not moka's default TinyLFU: a full TinyLFU cache admits a new key
    // only if it was seen more often than the victim, so once 200,000 keys
    // were remembered most new keys would not be, and their retries would
    // publish again.
    Cache::builder()
        .max_capacity(200_000)
        .eviction_policy(moka::policy::EvictionPolicy::lru())
        .time_to_live(Duration::from_secs(24 * 3600))
        .build()
}

/// The state as the router holds it: one pointer to clone per request.
pub type SharedState = Arc<AppState>;

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let state: SharedState = Arc::new(state);
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        state.limits.request_timeout,
    );
    // The work the in-flight cap bounds. Health, readiness and metrics stay
    // outside it: an overloaded ingest must not look dead to its probes,
    // nor go dark to the dashboards that show the overload.
    let work = Router::new()
        .merge(crate::read_api::routes())
        .layer(timeout)
        // Added after the timeout layer, so outside it: a blanket timeout
        // could answer 408 while the event is already on its way to Kafka.
        // The webhook keeps its own deadline, up to the hand-off.
        .route(WEBHOOK_PATH, post(post_webhook))
        .route_layer(middleware::from_fn_with_state(state.clone(), admit));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .layer(timeout)
        .merge(work)
        .layer(middleware::from_fn_with_state(state.clone(), record_http_metrics))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID.clone()))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get(&X_REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
                })
                // Errors are logged where they become responses (error.rs),
                // with their cause; this layer's own line per 5xx repeated
                // them without it, and made every shed 503 write a log line.
                .on_failure(()),
        )
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

/// Takes an in-flight slot for the request, or answers 503 at once, before
/// anything reads the body. The slot rides in the request's extensions, so
/// the webhook can keep it until its publish ends.
async fn admit(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    match state.in_flight.admit() {
        Ok(admission) => {
            req.extensions_mut().insert(admission);
            next.run(req).await
        }
        Err(err) => {
            state.metrics.requests_refused.inc();
            err.into_response()
        }
    }
}

async fn post_webhook(
    State(state): State<SharedState>,
    peer: Option<axum::Extension<PeerAddr>>,
    admission: Option<axum::Extension<Admission>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = peer.map(|p| p.0 .0.ip());
    let admission = admission.map(|a| a.0);
    match accept_webhook(&state, peer, admission, &headers, body).await {
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
            let mut response = err.into_response();
            if require_printable_request_id(&headers).is_err() {
                // Our own id, so the refused bytes are not echoed back.
                let id =
                    HeaderValue::try_from(Uuid::new_v4().to_string()).expect("a UUID is ASCII");
                response.headers_mut().insert(X_REQUEST_ID.clone(), id);
            }
            response
        }
    }
}

/// Authenticate, check, validate, resolve, publish: the whole contract.
///
/// The request deadline bounds only the stages before the event is handed to
/// the producer: once it is, the event may land, so the answer must be the
/// broker's (201, or 503 when it does not ack within `message.timeout.ms`),
/// never a 408 sent while the record is on its way.
async fn accept_webhook(
    state: &SharedState,
    peer: Option<std::net::IpAddr>,
    admission: Option<Admission>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Arc<DeploymentResponse>, ApiError> {
    let deadline = tokio::time::Instant::now() + state.limits.request_timeout;
    let prepared = prepare(state, peer, headers, body, deadline).await?;
    // hyper drops this handler when the client hangs up, but a record handed
    // over may still land: the publish and its idempotency entry run to the
    // end on a task of their own, so a retry finds them.
    let state = Arc::clone(state);
    tokio::spawn(async move {
        // The record is held until acknowledged, so is its in-flight slot.
        let _admission = admission;
        hand_off(&state, prepared).await
    })
    .await
    .map_err(|e| ApiError::Internal(format!("publish task: {e}")))?
}

/// An event ready to publish, and what binds its `Idempotency-Key`.
struct Prepared {
    event: DeploymentReported,
    /// The body's `request_fingerprint`, present exactly when the request
    /// carried an `Idempotency-Key`.
    fingerprint: Option<String>,
}

/// Every stage before the hand-off, each cut off at `deadline`: a slow client
/// gets 408, our own slowness (argon2 queue, Postgres) a 503; nothing has been
/// produced either way.
async fn prepare(
    state: &AppState,
    peer: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    body: Body,
    deadline: tokio::time::Instant,
) -> Result<Prepared, ApiError> {
    state.rate_limits.check_ip(peer)?;
    // Postgres keeps microseconds; so does every timestamp we hand out, so the
    // 201 body and later reads of the same deployment agree to the digit.
    let received_at = Utc::now().trunc_subsecs(6);
    let key = headers.get("x-workspace-key").and_then(|v| v.to_str().ok());
    let principal = by_deadline(deadline, "authentication", state.auth.authenticate(key)).await?;
    state.rate_limits.check_key(principal.key_id)?;
    require_json(headers)?;
    require_printable_request_id(headers)?;
    let idempotency_key = idempotency_key(headers)?;
    let bytes = read_body(headers, body, &state.limits, deadline).await?;
    let request = request::parse(&bytes, received_at, state.limits.max_future_skew)
        .map_err(ApiError::Validation)?;
    let resolve = state
        .environments
        .resolve(principal.workspace_id, &request.environment);
    let environment_id = by_deadline(deadline, "environment lookup", resolve).await?;

    let event_id = match &idempotency_key {
        Some(k) => idempotent_event_id(principal.workspace_id, k),
        None => Uuid::now_v7(),
    };
    Ok(Prepared {
        event: build_event(event_id, environment_id, &principal, request, received_at),
        fingerprint: idempotency_key.map(|_| request_fingerprint(&bytes)),
    })
}

/// Runs a pre-produce stage, or answers 503 if the request deadline passes first.
async fn by_deadline<T>(
    deadline: tokio::time::Instant,
    stage: &'static str,
    stage_future: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout_at(deadline, stage_future)
        .await
        .unwrap_or(Err(ApiError::DeadlineExceeded(stage)))
}

/// Publishes the event and answers with the broker's outcome; no deadline but
/// the producer's own `message.timeout.ms`. With an `Idempotency-Key`,
/// concurrent requests coalesce: one publishes, the others wait for its answer
/// and then compare their body with its body.
async fn hand_off(
    state: &AppState,
    prepared: Prepared,
) -> Result<Arc<DeploymentResponse>, ApiError> {
    let Prepared { event, fingerprint } = prepared;
    let Some(fingerprint) = fingerprint else {
        state
            .sink
            .publish(&event, None)
            .await
            .map_err(|e| ApiError::SinkUnavailable(e.to_string()))?;
        return Ok(Arc::new(DeploymentResponse::from(&event)));
    };
    let remembered = state
        .idempotent
        .try_get_with(event.event_id, async {
            state.sink.publish(&event, Some(&fingerprint)).await?;
            Ok::<_, SinkError>(Arc::new(Remembered {
                fingerprint: fingerprint.clone(),
                response: Arc::new(DeploymentResponse::from(&event)),
            }))
        })
        .await
        .map_err(|e| ApiError::SinkUnavailable(e.to_string()))?;
    if remembered.fingerprint != fingerprint {
        return Err(ApiError::IdempotencyKeyReused);
    }
    Ok(remembered.response.clone())
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

/// `X-Request-Id` ends up in logs and is echoed in the response, so it must
/// be printable ASCII; other bytes are refused rather than passed along.
fn require_printable_request_id(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(&X_REQUEST_ID) else {
        return Ok(());
    };
    let bytes = value.as_bytes();
    if bytes.len() <= REQUEST_ID_MAX_LEN && bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        return Ok(());
    }
    Err(ApiError::Validation(vec![ValidationIssue {
        loc: vec![LocPart::from("header"), LocPart::from("x-request-id")],
        msg: format!(
            "X-Request-Id must be at most {REQUEST_ID_MAX_LEN} printable ASCII characters"
        ),
        kind: "value_error".to_owned(),
    }]))
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

/// Reads the body within the body timeout and the request deadline,
/// whichever comes first; either way the client was too slow (408).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: &Limits,
    deadline: tokio::time::Instant,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(ApiError::PayloadTooLarge(limits.max_body_bytes));
    }
    let limited = Limited::new(body, limits.max_body_bytes);
    let until = deadline.min(tokio::time::Instant::now() + limits.body_timeout);
    match tokio::time::timeout_at(until, limited.collect()).await {
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
    let in_flight = i64::try_from(state.in_flight.in_use()).unwrap_or(i64::MAX);
    state.metrics.requests_in_flight.set(in_flight);
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
