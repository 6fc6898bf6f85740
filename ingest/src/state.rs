//! The state every handler shares: the authenticator, caches, pools, the
//! producer, metrics and the request limits, built once by
//! `lib.rs::build_state` and held by the router as one [`SharedState`].

use std::sync::Arc;
use std::time::Duration;

use vibemon_store::integrations::SecretKey;

use crate::auth::Authenticator;
use crate::environments::Environments;
use crate::idempotency::Idempotency;
use crate::limits::{InFlight, RateLimits};
use crate::metrics::Metrics;
use crate::sink::Sink;

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
    pub limits: RequestLimits,
    /// Responses already given for an `Idempotency-Key` (by event id): a retry
    /// gets the same body without publishing again, and concurrent retries
    /// wait for the first instead of racing it.
    pub idempotent: Idempotency,
    /// Per-client-IP and per-key token buckets.
    pub rate_limits: RateLimits,
    /// The cap on webhook and read-API requests worked on at once.
    pub in_flight: InFlight,
    /// What integration receivers' secrets are derived from; `None` when
    /// `VIBEMON_INTEGRATION_KEY` is not set, and the integration routes
    /// answer 503.
    pub integration_key: Option<SecretKey>,
}

/// The state as the router holds it: one pointer to clone per request.
pub type SharedState = Arc<AppState>;

/// Request limits, from `Config`. (The rate limits and the in-flight cap
/// live in the `limits` module.)
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Longest a request may take; for the webhook, longest it may take to
    /// reach the hand-off to Kafka, after which the producer's
    /// `message.timeout.ms` bounds the rest.
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// The body limit of a code host's delivery (`INGEST_MAX_INTEGRATION_BODY_BYTES`).
    pub max_integration_body_bytes: usize,
    pub body_timeout: Duration,
    pub max_future_skew: chrono::Duration,
    /// Highest event schema version written (`INGEST_MAX_EVENT_VERSION`).
    pub max_event_version: u8,
}
