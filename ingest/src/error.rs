//! The one error type of the HTTP boundary, and the one place it becomes a
//! status code and a body.
//!
//! Failures that are ours to fix are logged at `error`; the client's (4xx)
//! and the 503s that only mean "busy, retry" (`AuthBusy`, `Overloaded`) at
//! `debug`. No response ever carries internal details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vibemon_schemas::api::{Detail, Forbidden, ValidationErrors, ValidationIssue};
use vibemon_store::scopes::Scope;

/// Everything a request to ingest can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, malformed, unknown or revoked key: one answer for all, so the
    /// response does not tell an attacker which part was wrong.
    #[error("invalid API key")]
    Unauthorized,
    /// A valid key without the scope the route needs (named): 403, so the
    /// client knows its key works but may not do this.
    #[error("key lacks the {0} scope")]
    Forbidden(Scope),
    /// The key or environment is not cached and Postgres cannot be asked: not the client's
    /// fault, so not a 401.
    #[error("cannot authenticate: {0}")]
    ReferenceUnavailable(String),
    /// Too many verifications are queued (a flood of random keys).
    #[error("authentication is saturated")]
    AuthBusy,
    /// Every in-flight slot is taken (`INGEST_MAX_IN_FLIGHT`): refused before
    /// the body is read, so overload cannot grow memory without bound.
    #[error("too many requests in flight")]
    Overloaded,
    /// The environment is not configured in the key's workspace.
    #[error("environment {0:?} not found")]
    EnvironmentNotFound(String),
    /// The body broke one or more rules; every issue is listed.
    #[error("{} validation issue(s)", .0.len())]
    Validation(Vec<ValidationIssue>),
    /// The `Idempotency-Key` was already used for a different body: a
    /// client bug that, answered with the first 201, would silently lose
    /// this report.
    #[error("Idempotency-Key reused for a different body")]
    IdempotencyKeyReused,
    /// The body is not JSON by its Content-Type.
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    /// The body is over the documented limit.
    #[error("body over {0} bytes")]
    PayloadTooLarge(usize),
    /// The client sent its body too slowly.
    #[error("body not received within the timeout")]
    BodyTimeout,
    /// A stage before the hand-off to Kafka (named here) outlasted the
    /// request deadline on our side; nothing was produced.
    #[error("request deadline passed during {0}")]
    DeadlineExceeded(&'static str),
    /// Kafka did not acknowledge (down, timeout, full queue): nothing was
    /// accepted and the client should retry.
    #[error("event not durable: {0}")]
    SinkUnavailable(String),
    /// Over the per-client-IP or per-key rate limit.
    #[error("rate limited by {what}")]
    RateLimited {
        what: &'static str,
        retry_after_secs: u64,
    },
    /// A workspace-scoped resource that does not exist (or is another workspace's).
    #[error("{0} not found")]
    NotFound(String),
    /// A code host delivered to an integration route but ingest has no
    /// `VIBEMON_INTEGRATION_KEY`, so no receiver's secret can be derived.
    #[error("integrations are not configured")]
    IntegrationsNotConfigured,
    /// `INGEST_MAX_EVENT_VERSION` is below 3, the version native intake
    /// writes: a consumer of the topic may not read it yet.
    #[error("native intake needs event version 3; this ingest writes at most {0}")]
    IntakeVersionHeld(u8),
    /// The delivery's signature or token (the header named) does not match
    /// the receiver's secret: forged, or signed with an old secret.
    #[error("bad {0}")]
    BadSignature(&'static str),
    /// No receiver of this provider has this id. Answered only after the
    /// same signature work as for a real one, so timing does not tell.
    #[error("no such integration")]
    UnknownReceiver,
    /// The receiver was revoked; said only after the signature matched, so
    /// only the secret's holder learns it.
    #[error("integration revoked")]
    ReceiverRevoked,
    /// The code host's environment is neither mapped nor known here (or
    /// not a usable name), and the receiver does not create environments.
    #[error("environment {named:?} refused: {problem}")]
    EnvironmentRefused {
        /// As the code host named it.
        named: String,
        problem: String,
    },
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

fn detail(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        Json(Detail {
            detail: text.into(),
        }),
    )
        .into_response()
}

fn retry_after(mut response: Response, seconds: u32) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

impl ApiError {
    /// The label used for the `rejections` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::ReferenceUnavailable(_) => "reference_unavailable",
            ApiError::AuthBusy => "auth_busy",
            ApiError::Overloaded => "overloaded",
            ApiError::EnvironmentNotFound(_) => "environment_not_found",
            ApiError::Validation(_) => "validation",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::SinkUnavailable(_) => "sink_unavailable",
            ApiError::DeadlineExceeded(_) => "deadline_exceeded",
            ApiError::NotFound(_) => "not_found",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
            ApiError::IntegrationsNotConfigured => "integrations_not_configured",
            ApiError::IntakeVersionHeld(_) => "intake_version_held",
            ApiError::BadSignature(_) => "bad_signature",
            ApiError::UnknownReceiver => "unknown_receiver",
            ApiError::ReceiverRevoked => "revoked",
            ApiError::EnvironmentRefused { .. } => "refused_environment",
        }
    }
}

impl ApiError {
    /// The status of each error: why that status is said once, here.
    fn status(&self) -> StatusCode {
        match self {
            // The seed's exact answer, whatever went wrong with the key; a
            // code host's signature or token is its key, and a revoked
            // receiver is a revoked key.
            ApiError::Unauthorized | ApiError::BadSignature(_) | ApiError::ReceiverRevoked => {
                StatusCode::UNAUTHORIZED
            }
            // RFC 9110: the credentials are valid but do not grant this.
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            // Ours to configure, not the code host's fault: a 5xx makes
            // GitHub and GitLab show the delivery as failed and retry it.
            ApiError::IntegrationsNotConfigured | ApiError::IntakeVersionHeld(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            // Ours and retryable: Postgres is away and the key is not cached
            // (not a bad key); argon2 or the in-flight cap is saturated, and
            // shedding at once beats queueing without bound; we were too slow
            // before producing anything (not a 408, which would blame the
            // client); Kafka did not make the event durable, so it was not
            // accepted and the client must retry.
            ApiError::ReferenceUnavailable(_)
            | ApiError::AuthBusy
            | ApiError::Overloaded
            | ApiError::DeadlineExceeded(_)
            | ApiError::SinkUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // The seed's troubleshooting: 404 means the environment name does
            // not match; another workspace's resources do not exist for this key.
            // An unknown receiver is a path that does not exist; an
            // integration's environment follows the seed's environment rule.
            ApiError::EnvironmentNotFound(_)
            | ApiError::NotFound(_)
            | ApiError::UnknownReceiver
            | ApiError::EnvironmentRefused { .. } => StatusCode::NOT_FOUND,
            // FastAPI's shape for a body that broke rules; the IETF
            // Idempotency-Key draft's answer to a key reused with another payload.
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            // The contract requires application/json.
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            // A documented, fixed limit protects memory.
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            // The client, not the server, was slow.
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            // The client is sending faster than its share; it should slow down, not give up.
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            // Never leak internals.
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// When a retry is worth it: soon after shedding, later when Postgres or
    /// Kafka is away, when the bucket refills after a rate limit.
    fn retry_after_secs(&self) -> Option<u32> {
        match self {
            ApiError::AuthBusy | ApiError::Overloaded | ApiError::DeadlineExceeded(_) => Some(1),
            ApiError::SinkUnavailable(_) => Some(2),
            ApiError::ReferenceUnavailable(_) => Some(5),
            ApiError::RateLimited {
                retry_after_secs, ..
            } => Some(u32::try_from(*retry_after_secs).unwrap_or(u32::MAX)),
            _ => None,
        }
    }

    /// The `detail` text of the response: what the client can act on, never
    /// our internals.
    fn detail_text(&self) -> String {
        match self {
            ApiError::Unauthorized => "Invalid API key".to_owned(),
            ApiError::Forbidden(scope) => format!(
                "This API key lacks the '{scope}' scope, which this route needs (it lets a key \
                 {}); create a key with `vibemon key create --scope {scope}` or in the \
                 dashboard's Settings > API Keys",
                scope.grants()
            ),
            ApiError::ReferenceUnavailable(_) => {
                "Cannot reach the workspace database to check this request; retry later".to_owned()
            }
            ApiError::AuthBusy => "Too many key verifications in progress; retry later".to_owned(),
            ApiError::Overloaded => {
                "Too many requests in progress; nothing was recorded, retry later".to_owned()
            }
            ApiError::EnvironmentNotFound(name) => format!(
                "Environment '{name}' not found in this workspace (names are case-sensitive); create it with `vibemon environment create`"
            ),
            ApiError::UnsupportedMediaType(got) => {
                format!("Content-Type must be application/json, got {got:?}")
            }
            ApiError::PayloadTooLarge(limit) => {
                format!("Request body is larger than the limit of {limit} bytes")
            }
            ApiError::BodyTimeout => "Request body was not received in time".to_owned(),
            ApiError::DeadlineExceeded(stage) => format!(
                "The request could not be handled in time ({stage} was slow); nothing was recorded, retry later"
            ),
            ApiError::SinkUnavailable(_) => "The event could not be stored durably (Kafka unavailable); nothing was recorded, retry later".to_owned(),
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::RateLimited {
                what,
                retry_after_secs,
            } => format!("Too many requests from this {what}; retry after {retry_after_secs}s"),
            ApiError::Internal(_) => "Internal server error".to_owned(),
            ApiError::IntegrationsNotConfigured => "Integrations are not configured on this server \
                 (VIBEMON_INTEGRATION_KEY is not set); nothing was recorded"
                .to_owned(),
            ApiError::IntakeVersionHeld(max) => format!(
                "This server writes events up to version {max} (INGEST_MAX_EVENT_VERSION) while \
                 the topic's consumers are upgraded; a code host's deployment event needs \
                 version 3. Nothing was recorded; redeliver this delivery once ingest writes \
                 version 3"
            ),
            ApiError::BadSignature(header) => format!(
                "{header} does not match this integration's secret; nothing was recorded"
            ),
            ApiError::UnknownReceiver => "Integration not found".to_owned(),
            ApiError::ReceiverRevoked => "This integration was revoked; nothing was recorded. \
                 Create a new one with `vibemon integration create` and point the webhook at it"
                .to_owned(),
            ApiError::EnvironmentRefused { named, problem } => format!(
                "Environment '{named}' {problem}; nothing was recorded. Map it to one of this \
                 workspace's environments in the integration's environment map, create it with \
                 `vibemon environment create`, or let the integration create environments"
            ),
            // Answered in the validation shape by `into_response`.
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => String::new(),
        }
    }

    /// Failures that are ours to fix at `error`; the client's (4xx) and the
    /// 503s that only say "busy, retry" (`AuthBusy`, `Overloaded`) at `debug`.
    fn log(&self) {
        match self {
            ApiError::ReferenceUnavailable(_)
            | ApiError::SinkUnavailable(_)
            | ApiError::DeadlineExceeded(_)
            | ApiError::IntegrationsNotConfigured
            | ApiError::Internal(_) => {
                tracing::error!(error = %self, "request failed")
            }
            // Overloaded is ours too, but logged at debug: it is counted in
            // `vibemon_http_requests_refused_total`, and a log line per shed
            // request would make overload dearer to shed.
            _ => tracing::debug!(error = %self, "request rejected"),
        }
    }
}

/// The 422 for a reused `Idempotency-Key`, in the validation shape so
/// clients parse one shape.
fn idempotency_key_reused() -> ValidationErrors {
    ValidationErrors {
        detail: vec![ValidationIssue {
            loc: vec!["header".into(), "idempotency-key".into()],
            msg: "This Idempotency-Key was already used for a different request body; \
                  a retry must send the same bytes, and a new report needs a new key"
                .to_owned(),
            kind: "idempotency_key_reused".to_owned(),
        }],
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let retry = self.retry_after_secs();
        let response = match self {
            // FastAPI's shape: one entry per problem.
            ApiError::Validation(issues) => {
                (status, Json(ValidationErrors { detail: issues })).into_response()
            }
            ApiError::IdempotencyKeyReused => {
                (status, Json(idempotency_key_reused())).into_response()
            }
            ApiError::Forbidden(scope) => {
                let body = Forbidden {
                    detail: self.detail_text(),
                    missing_scope: scope.as_str().to_owned(),
                };
                (status, Json(body)).into_response()
            }
            other => detail(status, other.detail_text()),
        };
        match retry {
            Some(seconds) => retry_after(response, seconds),
            None => response,
        }
    }
}
