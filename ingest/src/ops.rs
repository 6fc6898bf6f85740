//! The operator's endpoints: liveness (`/healthz`), readiness (`/readyz`),
//! Prometheus metrics (`/metrics`) and the OpenAPI document. They stay
//! outside the in-flight cap, so an overloaded ingest neither looks dead to
//! its probes nor goes dark to its dashboards.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::state::SharedState;

pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when Kafka metadata is reachable and a key can be authenticated
/// (Postgres answers, or the key cache is warm).
pub async fn readyz(State(state): State<SharedState>) -> Response {
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

pub async fn metrics(State(state): State<SharedState>) -> Response {
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

pub async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        vibemon_schemas::OPENAPI_JSON,
    )
        .into_response()
}
