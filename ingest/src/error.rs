//! The one error type of the HTTP boundary, and the one place it becomes a
//! status code and a body.
//!
//! 5xx are logged at `error` (they are ours to fix), 4xx at `debug` (they are
//! the client's); no response ever carries internal details.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use vibemon_schemas::api::{Detail, ValidationErrors, ValidationIssue};

/// Everything a request to ingest can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, malformed, unknown or revoked key: one answer for all, so the
    /// response does not tell an attacker which part was wrong.
    #[error("invalid API key")]
    Unauthorized,
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
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::ReferenceUnavailable(_)
            | ApiError::SinkUnavailable(_)
            | ApiError::DeadlineExceeded(_)
            | ApiError::Internal(_) => {
                tracing::error!(error = %self, "request failed")
            }
            // Overloaded is ours too, but logged at debug: it is counted in
            // `vibemon_http_requests_refused_total`, and a log line per shed
            // request would make overload dearer to shed.
            _ => tracing::debug!(error = %self, "request rejected"),
        }
        match self {
            // The seed's exact body, whatever went wrong with the key.
            ApiError::Unauthorized => detail(StatusCode::UNAUTHORIZED, "Invalid API key"),
            // Postgres is away and the key is not cached: retryable, not a bad key.
            ApiError::ReferenceUnavailable(_) => retry_after(
                detail(StatusCode::SERVICE_UNAVAILABLE, "Cannot reach the workspace database to check this request; retry later"),
                5,
            ),
            // Shedding load beats queueing argon2 work without bound.
            ApiError::AuthBusy => retry_after(
                detail(StatusCode::SERVICE_UNAVAILABLE, "Too many key verifications in progress; retry later"),
                1,
            ),
            // Shedding at once beats queueing without bound: the client
            // retries after a second, when slots have most likely freed.
            ApiError::Overloaded => retry_after(
                detail(StatusCode::SERVICE_UNAVAILABLE, "Too many requests in progress; nothing was recorded, retry later"),
                1,
            ),
            // The seed's troubleshooting: 404 means the environment name does not match.
            ApiError::EnvironmentNotFound(name) => detail(
                StatusCode::NOT_FOUND,
                format!(
                    "Environment '{name}' not found in this workspace (names are case-sensitive); create it with `vibemon environment create`"
                ),
            ),
            // FastAPI's shape: one entry per problem.
            ApiError::Validation(issues) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Json(ValidationErrors { detail: issues })).into_response()
            }
            // The IETF Idempotency-Key draft's answer to a key reused with
            // another payload; in the validation shape so clients parse one shape.
            ApiError::IdempotencyKeyReused => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(ValidationErrors {
                    detail: vec![ValidationIssue {
                        loc: vec!["header".into(), "idempotency-key".into()],
                        msg: "This Idempotency-Key was already used for a different request body; \
                              a retry must send the same bytes, and a new report needs a new key"
                            .to_owned(),
                        kind: "idempotency_key_reused".to_owned(),
                    }],
                }),
            )
                .into_response(),
            // The contract requires application/json.
            ApiError::UnsupportedMediaType(got) => detail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be application/json, got {got:?}"),
            ),
            // A documented, fixed limit protects memory.
            ApiError::PayloadTooLarge(limit) => detail(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body is larger than the limit of {limit} bytes"),
            ),
            // The client, not the server, was slow.
            ApiError::BodyTimeout => detail(StatusCode::REQUEST_TIMEOUT, "Request body was not received in time"),
            // We were too slow before producing anything: retryable, and not
            // a 408, which would blame the client.
            ApiError::DeadlineExceeded(stage) => retry_after(
                detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("The request could not be handled in time ({stage} was slow); nothing was recorded, retry later"),
                ),
                1,
            ),
            // Not durable, so not accepted: the client must retry.
            ApiError::SinkUnavailable(_) => retry_after(
                detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The event could not be stored durably (Kafka unavailable); nothing was recorded, retry later",
                ),
                2,
            ),
            ApiError::NotFound(what) => detail(StatusCode::NOT_FOUND, format!("{what} not found")),
            // The client is sending faster than its share; it should slow down, not give up.
            ApiError::RateLimited { what, retry_after_secs } => retry_after(
                detail(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many requests from this {what}; retry after {retry_after_secs}s"),
                ),
                u32::try_from(retry_after_secs).unwrap_or(u32::MAX),
            ),
            // Never leak internals.
            ApiError::Internal(_) => detail(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error"),
        }
    }
}
