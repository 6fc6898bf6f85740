//! The webhook, `POST /api/v1/deployments/webhook`: the whole contract from
//! an authenticated request to the 201 that follows Kafka's acknowledgement.
//!
//! [`arrive`] stamps the request's arrival and [`Deadline`]; the
//! [`Authenticated`] extractor checks the key; [`receive`] checks the
//! headers, reads and validates the body ([`request`]), resolves the
//! environment, builds the `DeploymentReported` event and hands it to the
//! producer, through [`Idempotency`] when the request carries a key.
//!
//! [`Idempotency`]: crate::idempotency::Idempotency

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, SubsecRound, Utc};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tracing::Instrument;
use uuid::Uuid;
use vibemon_schemas::api::{DeploymentResponse, LocPart, ValidationIssue};
use vibemon_schemas::event::{external_deployment_id, idempotent_event_id, request_fingerprint};
use vibemon_schemas::DeploymentReported;

use crate::auth::Principal;
use crate::authenticated::{Authenticated, IngestScope};
use crate::deadline::Deadline;
use crate::error::ApiError;
use crate::limits::Admission;
use crate::request::{self, WebhookRequest};
use crate::state::{AppState, RequestLimits, SharedState};
use crate::trace::{self, RecordTrace};

pub const WEBHOOK_PATH: &str = "/api/v1/deployments/webhook";
const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;
const REQUEST_ID_MAX_LEN: usize = 255;
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// When the request arrived, in Postgres's precision.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedAt(pub DateTime<Utc>);

/// Stamps the request's arrival and starts its [`Deadline`], before the key
/// is checked, so authentication counts against the deadline too.
pub async fn arrive(State(state): State<SharedState>, mut req: Request, next: Next) -> Response {
    // Postgres keeps microseconds; so does every timestamp we hand out, so the
    // 201 body and later reads of the same deployment agree to the digit.
    let received_at = ReceivedAt(Utc::now().trunc_subsecs(6));
    let deadline = Deadline::after(state.limits.request_timeout);
    req.extensions_mut().insert(received_at);
    req.extensions_mut().insert(deadline);
    next.run(req).await
}

/// The webhook handler: 201 with the event's deployment, or the error,
/// counted by reason, all in the request's span (`webhook`), which
/// continues the caller's `traceparent` ([`trace`]).
pub async fn receive(
    State(state): State<SharedState>,
    Extension(ReceivedAt(received_at)): Extension<ReceivedAt>,
    Extension(deadline): Extension<Deadline>,
    admission: Option<Extension<Admission>>,
    who: Result<Authenticated<IngestScope>, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!(
        "webhook",
        otel.kind = "server",
        trace_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let trace = trace::start(&span, &headers);
    let arrival = Arrival {
        received_at,
        deadline,
        admission: admission.map(|a| a.0),
        trace,
    };
    let answer = async {
        let accepted = match who {
            Ok(Authenticated(principal, _)) => {
                accept(&state, arrival, principal, &headers, body).await
            }
            Err(err) => Err(err),
        };
        match accepted {
            Ok(response) => created(&response),
            Err(err) => refused(&state, &headers, err),
        }
    }
    .instrument(span.clone())
    .await;
    span.record("http.response.status_code", answer.status().as_u16());
    answer
}

fn created(response: &DeploymentResponse) -> Response {
    (
        StatusCode::CREATED,
        [(
            header::LOCATION,
            format!("/api/v1/deployments/{}", response.id),
        )],
        Json(response),
    )
        .into_response()
}

/// The error's response, counted in `rejections` by reason.
fn refused(state: &AppState, headers: &HeaderMap, err: ApiError) -> Response {
    state
        .metrics
        .rejections
        .with_label_values(&[err.reason()])
        .inc();
    let mut response = err.into_response();
    if require_printable_request_id(headers).is_err() {
        // Our own id, so the refused bytes are not echoed back.
        let id = HeaderValue::try_from(Uuid::new_v4().to_string()).expect("a UUID is ASCII");
        response.headers_mut().insert(X_REQUEST_ID.clone(), id);
    }
    response
}

/// What the request brought besides its headers and body.
struct Arrival {
    received_at: DateTime<Utc>,
    deadline: Deadline,
    /// The request's in-flight slot, absent when the router is driven without
    /// the `admit` layer.
    admission: Option<Admission>,
    /// The request's trace, for the record.
    trace: RecordTrace,
}

/// Check, validate, resolve, publish: the contract after authentication.
///
/// The request deadline bounds only the stages before the event is handed to
/// the producer: once it is, the event may land, so the answer must be the
/// broker's (201, or 503 when it does not ack within `message.timeout.ms`),
/// never a 408 sent while the record is on its way.
async fn accept(
    state: &SharedState,
    arrival: Arrival,
    principal: Arc<Principal>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Arc<DeploymentResponse>, ApiError> {
    let Arrival {
        received_at,
        deadline,
        admission,
        trace,
    } = arrival;
    let prepared = prepare(state, &principal, received_at, headers, body, deadline).await?;
    // hyper drops this handler when the client hangs up, but a record handed
    // over may still land: the publish and its idempotency entry run to the
    // end on a task of their own, so a retry finds them.
    let state = Arc::clone(state);
    tokio::spawn(
        async move {
            // The record is held until acknowledged, so is its in-flight slot.
            let _admission = admission;
            hand_off(&state, prepared, &trace).await
        }
        .in_current_span(),
    )
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

/// Every stage after authentication and before the hand-off, each cut off at
/// `deadline`: a slow client gets 408, our own slowness (Postgres) a 503;
/// nothing has been produced either way.
async fn prepare(
    state: &AppState,
    principal: &Principal,
    received_at: DateTime<Utc>,
    headers: &HeaderMap,
    body: Body,
    deadline: Deadline,
) -> Result<Prepared, ApiError> {
    require_json(headers)?;
    require_printable_request_id(headers)?;
    let idempotency_key = idempotency_key(headers)?;
    let bytes = read_body(
        headers,
        body,
        state.limits.max_body_bytes,
        &state.limits,
        deadline,
    )
    .await?;
    let request = request::parse(
        &bytes,
        received_at,
        state.limits.max_future_skew,
        state.limits.max_event_version,
    )
    .map_err(ApiError::Validation)?;
    let resolve = state
        .environments
        .resolve(principal.workspace_id, &request.environment);
    let environment_id = deadline.bound("environment lookup", resolve).await?;

    let event_id = match &idempotency_key {
        Some(k) => idempotent_event_id(principal.workspace_id, k),
        None => Uuid::now_v7(),
    };
    Ok(Prepared {
        event: build_event(event_id, environment_id, principal, request, received_at),
        fingerprint: idempotency_key.map(|_| request_fingerprint(&bytes)),
    })
}

/// Publishes the event and answers with the broker's outcome; no deadline but
/// the producer's own `message.timeout.ms`. With an `Idempotency-Key`, the
/// publish goes through the idempotency cache, which coalesces retries.
async fn hand_off(
    state: &AppState,
    prepared: Prepared,
    trace: &RecordTrace,
) -> Result<Arc<DeploymentResponse>, ApiError> {
    let Prepared { event, fingerprint } = prepared;
    let Some(fingerprint) = fingerprint else {
        state
            .sink
            .publish(&event, None, trace)
            .await
            .map_err(|e| ApiError::SinkUnavailable(e.to_string()))?;
        return Ok(Arc::new(DeploymentResponse::from(&event)));
    };
    state
        .idempotent
        .publish_once(&state.sink, &event, fingerprint, trace)
        .await
}

/// The event of a validated report: also how an integration's delivery
/// becomes one (`integrations`), so both write events alike.
pub(crate) fn build_event(
    event_id: Uuid,
    environment_id: Uuid,
    principal: &Principal,
    r: WebhookRequest,
    received_at: DateTime<Utc>,
) -> DeploymentReported {
    let deployment_id = match &r.external_id {
        Some(x) => external_deployment_id(principal.workspace_id, environment_id, &r.repository, x),
        None => event_id,
    };
    let mut event = DeploymentReported {
        schema_version: 0,
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
        previous_commit_sha: r.previous_commit_sha,
        commits: r.commits,
    };
    // The lowest version that carries it: every report without the
    // version-2 fields stays a version-1 event, byte for byte, so a
    // consumer written against version 1 keeps reading it.
    event.schema_version = event.version_needed();
    event
}
/// The contract says `Content-Type: application/json`; `+json` types and
/// parameters such as `charset=utf-8` are fine.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// Reads a body of at most `max_bytes` (413 past it) within the body
/// timeout and the request deadline, whichever comes first; either way the
/// client was too slow (408).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    max_bytes: usize,
    limits: &RequestLimits,
    deadline: Deadline,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_bytes as u64) {
        return Err(ApiError::PayloadTooLarge(max_bytes));
    }
    let limited = Limited::new(body, max_bytes);
    let until = deadline
        .0
        .min(tokio::time::Instant::now() + limits.body_timeout);
    match tokio::time::timeout_at(until, limited.collect()).await {
        Err(_) => Err(ApiError::BodyTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge(max_bytes))
        }
        Ok(Err(e)) => Err(ApiError::Validation(vec![ValidationIssue {
            loc: vec![LocPart::from("body")],
            msg: format!("Request body could not be read: {e}"),
            kind: "body_read_error".to_owned(),
        }])),
    }
}
