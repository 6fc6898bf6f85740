//! The router: every route of ingest and the layers around them (request
//! ids, tracing, HTTP metrics, the in-flight cap, timeouts).
//!
//! [`app`] builds the whole `Router` from an [`AppState`], so tests drive it
//! with `tower::ServiceExt::oneshot` and no socket. The handlers live
//! elsewhere: `webhook`, `integrations`, `read_api` and `ops`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::integrations::{self, GITHUB_PATH, GITLAB_PATH};
use crate::ops;
use crate::state::{AppState, SharedState};
use crate::webhook::{self, WEBHOOK_PATH, X_REQUEST_ID};

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let state: SharedState = Arc::new(state);
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        state.limits.request_timeout,
    );
    // The webhook's deadline starts before its key is checked.
    let webhook = post(webhook::receive).route_layer(middleware::from_fn_with_state(
        state.clone(),
        webhook::arrive,
    ));
    // A code host's delivery has the webhook's deadline and hand-off.
    let arrive = || middleware::from_fn_with_state(state.clone(), webhook::arrive);
    let github = post(integrations::github).route_layer(arrive());
    let gitlab = post(integrations::gitlab).route_layer(arrive());
    // The work the in-flight cap bounds. Health, readiness and metrics stay
    // outside it: an overloaded ingest must not look dead to its probes,
    // nor go dark to the dashboards that show the overload.
    let work = Router::new()
        .merge(crate::read_api::routes())
        .layer(timeout)
        // Added after the timeout layer, so outside it: a blanket timeout
        // could answer 408 while the event is already on its way to Kafka.
        // The webhook keeps its own deadline, up to the hand-off.
        .route(WEBHOOK_PATH, webhook)
        .route(GITHUB_PATH, github)
        .route(GITLAB_PATH, gitlab)
        .route_layer(middleware::from_fn_with_state(state.clone(), admit));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
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
    let m = &state.metrics;
    vibemon_runtime::http_metrics::record(&m.request_seconds, &m.requests, req, next).await
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
