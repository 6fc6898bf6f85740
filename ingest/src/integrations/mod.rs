//! Native intake: GitHub `deployment_status` and GitLab "Deployment Hook"
//! deliveries at `POST /api/v1/integrations/{github,gitlab}/{id}`, with the
//! webhook's guarantees: authenticated, validated, durable in Kafka before
//! the 2xx, one event per delivery however often the code host redelivers.
//!
//! [`receive`] reads the body (its own limit), finds the receiver and checks
//! the signature or token ([`receiver`]) before anything is parsed; the
//! provider module ([`github`], [`gitlab`]) reads the delivery into a
//! [`Delivery`]; a report gets its environment ([`environment`]) and is
//! published through the idempotency cache under a key derived from the
//! delivery id, exactly as the webhook does with `Idempotency-Key`. Every
//! delivery is counted by outcome.

mod environment;
pub mod github;
pub mod gitlab;
pub mod payload;
pub mod receiver;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use tracing::Instrument;
use vibemon_schemas::api::{DeploymentResponse, Detail, LocPart, ValidationIssue};
use vibemon_schemas::event::{idempotent_event_id, request_fingerprint};
use vibemon_schemas::{DeploymentSource, DisplayName};
use vibemon_store::integrations::{Integration, Provider};

use crate::auth::Principal;
use crate::deadline::Deadline;
use crate::error::ApiError;
use crate::limits::Admission;
use crate::server::PeerAddr;
use crate::state::SharedState;
use crate::trace::{self, RecordTrace};
use crate::webhook::{self, ReceivedAt};
use payload::Clock;

pub const GITHUB_PATH: &str = "/api/v1/integrations/github/{id}";
pub const GITLAB_PATH: &str = "/api/v1/integrations/gitlab/{id}";
/// Longest header value taken as a delivery id or event type.
const HEADER_MAX_LEN: usize = 255;

/// The `source` of the events a provider's deliveries become: event
/// schema version 3.
fn source_for(provider: Provider) -> DeploymentSource {
    match provider {
        Provider::Github => DeploymentSource::Github,
        Provider::Gitlab => DeploymentSource::Gitlab,
    }
}

/// The event version native intake writes.
const INTAKE_EVENT_VERSION: u8 = 3;

/// What a delivery with a valid signature asks for.
#[derive(Debug)]
pub enum Delivery {
    /// GitHub's `ping` when a webhook is created: 200, nothing published.
    Ping,
    /// Answered 202 and not published: an event that is not a deployment
    /// status (`event` names it), or a status that is not one of a
    /// deployment (GitHub's `inactive`).
    Skipped {
        /// The label in `vibemon_ingest_integration_deliveries_total`.
        outcome: &'static str,
        event: Option<String>,
        /// Why, for the code host's delivery log.
        reason: String,
    },
    /// One status of one deployment, to publish.
    Report(payload::Report),
}

impl Delivery {
    fn ignored_event(event: String) -> Self {
        Delivery::Skipped {
            outcome: "ignored_event",
            reason: format!(
                "Event {event:?} is not a deployment status event; nothing was recorded"
            ),
            event: Some(event),
        }
    }
}

/// The answer to a delivery that was not refused.
enum Answer {
    Published(Arc<DeploymentResponse>),
    Ping,
    Skipped {
        outcome: &'static str,
        reason: String,
    },
}

/// `POST /api/v1/integrations/github/{id}`.
pub async fn github(
    State(state): State<SharedState>,
    arrival: Arrival,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = path_id(id);
    deliver(state, Provider::Github, arrival, &id, &headers, body).await
}

/// `POST /api/v1/integrations/gitlab/{id}`.
pub async fn gitlab(
    State(state): State<SharedState>,
    arrival: Arrival,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = path_id(id);
    deliver(state, Provider::Gitlab, arrival, &id, &headers, body).await
}

/// The receiver id in the path. An id that is not UTF-8 (`%FF`) is no
/// receiver's: it becomes one that is not a UUID, so it is answered as every
/// unknown id is (404, after the same work) rather than by axum's plain-text
/// 400.
fn path_id(id: Result<Path<String>, PathRejection>) -> String {
    id.map(|Path(id)| id).unwrap_or_default()
}

/// What the request brought besides its headers and body: stamped on
/// arrival by `webhook::arrive` and the accept loop.
pub struct Arrival {
    received_at: DateTime<Utc>,
    deadline: Deadline,
    /// Held until the publish ends, as the webhook holds it; absent when
    /// the router is driven without the `admit` layer.
    admission: Option<Admission>,
    /// The TCP peer, absent when the router is driven without the accept
    /// loop.
    peer: Option<std::net::IpAddr>,
}

impl FromRequestParts<SharedState> for Arrival {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &SharedState) -> Result<Self, ApiError> {
        let missing = |what: &str| ApiError::Internal(format!("{what} not stamped on arrival"));
        let ReceivedAt(received_at) = *parts
            .extensions
            .get::<ReceivedAt>()
            .ok_or_else(|| missing("ReceivedAt"))?;
        let deadline = *parts
            .extensions
            .get::<Deadline>()
            .ok_or_else(|| missing("Deadline"))?;
        Ok(Self {
            received_at,
            deadline,
            admission: parts.extensions.remove::<Admission>(),
            peer: parts.extensions.get::<PeerAddr>().map(|p| p.0.ip()),
        })
    }
}

/// Receives a delivery, counts its outcome and answers, in the request's
/// span (`integration`), which continues a `traceparent` the code host (or
/// a proxy before us) sent, as the webhook does.
async fn deliver(
    state: SharedState,
    provider: Provider,
    arrival: Arrival,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!(
        "integration",
        otel.kind = "server",
        provider = provider.as_str(),
        trace_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let trace = trace::start(&span, headers);
    let answer = deliver_in_span(state, provider, arrival, id, headers, body, trace)
        .instrument(span.clone())
        .await;
    span.record("http.response.status_code", answer.status().as_u16());
    answer
}

async fn deliver_in_span(
    state: SharedState,
    provider: Provider,
    arrival: Arrival,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    trace: RecordTrace,
) -> Response {
    let answer = receive(&state, provider, arrival, id, headers, body, trace).await;
    let outcome = match &answer {
        Ok(Answer::Published(_)) => "published",
        Ok(Answer::Ping) => "ping",
        Ok(Answer::Skipped { outcome, .. }) => outcome,
        Err(ApiError::Validation(_)) => "invalid_body",
        Err(e) => e.reason(),
    };
    state
        .metrics
        .integration_deliveries
        .with_label_values(&[provider.as_str(), outcome])
        .inc();
    match answer {
        Ok(Answer::Published(response)) => (
            StatusCode::CREATED,
            [(
                header::LOCATION,
                format!("/api/v1/deployments/{}", response.id),
            )],
            Json(response),
        )
            .into_response(),
        Ok(Answer::Ping) => detail(
            StatusCode::OK,
            "pong: this integration is ready for deployment status events",
        ),
        Ok(Answer::Skipped { reason, .. }) => detail(StatusCode::ACCEPTED, reason),
        Err(e) => e.into_response(),
    }
}

fn detail(status: StatusCode, text: impl Into<String>) -> Response {
    let body = Detail {
        detail: text.into(),
    };
    (status, Json(body)).into_response()
}

/// Authenticate, read, resolve, publish. Nothing is published unless every
/// check passed.
async fn receive(
    state: &SharedState,
    provider: Provider,
    arrival: Arrival,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    trace: RecordTrace,
) -> Result<Answer, ApiError> {
    let Arrival {
        received_at,
        deadline,
        admission,
        peer,
    } = arrival;
    // The webhook's per-client limit, before any work: a flood of made-up
    // receiver ids must not take the Postgres connections that
    // authentication and the webhook need.
    state.rate_limits.check_ip(peer)?;
    let key = state
        .integration_key
        .as_ref()
        .ok_or(ApiError::IntegrationsNotConfigured)?;
    if state.limits.max_event_version < INTAKE_EVENT_VERSION {
        // Mid-upgrade: a consumer of the topic may not read version 3 yet.
        // A 503 shows the delivery failed in the code host's log, from where
        // it can be redelivered (neither host retries by itself).
        return Err(ApiError::IntakeVersionHeld(state.limits.max_event_version));
    }
    let max = state.limits.max_integration_body_bytes;
    let bytes = webhook::read_body(headers, body, max, &state.limits, deadline).await?;
    let found = deadline
        .bound(
            "integration lookup",
            receiver::find(&state.pool, provider, id),
        )
        .await?;
    let receiver = receiver::authenticate(key, provider, found, headers, &bytes)?;
    touch(state, receiver.id);
    let clock = Clock {
        now: received_at,
        max_future_skew: state.limits.max_future_skew,
    };
    let report = match read(state, provider, headers, &bytes, clock)? {
        Ok(report) => report,
        Err(answer) => return Ok(answer),
    };
    let resolve = environment::resolve(state, &receiver, &report.environment);
    let (environment_id, environment) = deadline.bound("environment lookup", resolve).await?;
    let event_id = idempotent_event_id(receiver.workspace_id, &report.idempotency_key);
    let request = report.into_request(environment, source_for(provider));
    let principal = principal_of(&receiver);
    let event = webhook::build_event(event_id, environment_id, &principal, request, received_at);
    let fingerprint = request_fingerprint(&bytes);
    publish(state, event, fingerprint, admission, trace).await
}

/// The delivery read by its provider: a report to publish, or the answer
/// to a ping or a skipped delivery (counted).
fn read(
    state: &SharedState,
    provider: Provider,
    headers: &HeaderMap,
    bytes: &[u8],
    clock: Clock,
) -> Result<Result<payload::Report, Answer>, ApiError> {
    let delivery = match provider {
        Provider::Github => github::read(headers, bytes, clock)?,
        Provider::Gitlab => gitlab::read(headers, bytes, clock)?,
    };
    Ok(match delivery {
        Delivery::Report(report) => Ok(report),
        Delivery::Ping => Err(Answer::Ping),
        Delivery::Skipped {
            outcome,
            event,
            reason,
        } => {
            if let Some(event) = event {
                count_ignored(state, provider, &event);
            }
            Err(Answer::Skipped { outcome, reason })
        }
    })
}

/// Publishes through the idempotency cache, as the webhook does: the
/// publish runs to its end on a task of its own even if the code host hangs
/// up, so its redelivery finds the answer; the in-flight slot is held until
/// then.
async fn publish(
    state: &SharedState,
    event: vibemon_schemas::DeploymentReported,
    fingerprint: String,
    admission: Option<Admission>,
    trace: RecordTrace,
) -> Result<Answer, ApiError> {
    let state = Arc::clone(state);
    let published = tokio::spawn(
        async move {
            let _admission = admission;
            state
                .idempotent
                .publish_once(&state.sink, &event, fingerprint, &trace)
                .await
        }
        .in_current_span(),
    )
    .await
    .map_err(|e| ApiError::Internal(format!("publish task: {e}")))??;
    Ok(Answer::Published(published))
}

/// Who the event says reported it: the receiver, in the place of a key.
fn principal_of(receiver: &Integration) -> Principal {
    let name = format!(
        "{} integration: {}",
        receiver.provider.as_str(),
        receiver.name
    );
    Principal {
        key_id: receiver.id,
        key_name: DisplayName::sanitized(&name),
        workspace_id: receiver.workspace_id,
        scopes: vibemon_store::scopes::Scopes::DEFAULT_FOR_NEW_KEYS,
    }
}

/// Records the receiver's use without delaying the answer.
fn touch(state: &SharedState, id: uuid::Uuid) {
    let pool = state.pool.clone();
    tokio::spawn(async move {
        if let Err(e) = vibemon_store::integrations::touch(&pool, id).await {
            tracing::warn!(error = %e, integration = %id, "could not record integration use");
        }
    });
}

/// Counts an ignored event type. The type is the code host's, sent after
/// the signature matched; an odd one is counted as `other` so the label
/// set stays small.
fn count_ignored(state: &SharedState, provider: Provider, event: &str) {
    let plain = event.len() <= 64
        && event
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' '));
    let label = if plain { event } else { "other" };
    state
        .metrics
        .integration_ignored_events
        .with_label_values(&[provider.as_str(), label])
        .inc();
}

/// A required header of visible ASCII (spaces inside allowed, as in
/// `Deployment Hook`); a 422 naming it otherwise.
fn header_value(headers: &HeaderMap, name: &'static str) -> Result<String, ApiError> {
    optional_header_value(headers, name)?
        .ok_or_else(|| header_issue(name, "missing", format!("Header {name} is required")))
}

/// [`header_value`] for a header that may be absent.
fn optional_header_value(
    headers: &HeaderMap,
    name: &'static str,
) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let ok = |s: &str| {
        !s.is_empty() && s.len() <= HEADER_MAX_LEN && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
    };
    match value.to_str() {
        Ok(s) if ok(s.trim()) => Ok(Some(s.trim().to_owned())),
        _ => Err(header_issue(
            name,
            "value_error",
            format!("Header {name} must be 1 to {HEADER_MAX_LEN} printable ASCII characters"),
        )),
    }
}

fn header_issue(name: &str, kind: &str, msg: String) -> ApiError {
    ApiError::Validation(vec![ValidationIssue {
        loc: vec![LocPart::from("header"), LocPart::from(name)],
        msg,
        kind: kind.to_owned(),
    }])
}
