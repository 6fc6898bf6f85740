//! The router: every page of the dashboard and the layers around them
//! (security headers on every answer, HTTP metrics, request tracing).
//!
//! [`app`] builds the whole `Router` from an [`AppState`], so tests drive it
//! with `tower::ServiceExt::oneshot` and no socket.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::assets;
use crate::error::DashboardError;
use crate::pages::{deployment, environments, keys, settings_environments, sign_in, timeline};
use crate::state::{AppState, SharedState};

/// Scripts, styles and images from this server only, nothing inline, no
/// frames, forms posting only here: an injected tag can neither run nor
/// load anything nor send a form elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// The whole dashboard.
pub fn app(state: AppState) -> Router {
    let state: SharedState = Arc::new(state);
    Router::new()
        .route("/", get(|| async { Redirect::to("/environments") }))
        .route("/sign-in", get(sign_in::show).post(sign_in::submit))
        .route("/sign-out", post(sign_in::sign_out))
        .route("/environments", get(environments::show))
        .route("/environments/{name}", get(timeline::show))
        .route("/deployments/{id}", get(deployment::show))
        .route("/settings/keys", get(keys::show).post(keys::create))
        .route(
            "/settings/keys/{id}/revoke",
            get(keys::confirm_revoke).post(keys::revoke),
        )
        .route(
            "/settings/environments",
            get(settings_environments::show).post(settings_environments::create),
        )
        .route(
            "/settings/environments/{id}/rename",
            post(settings_environments::rename),
        )
        .route(
            "/settings/environments/{id}/delete",
            get(settings_environments::confirm_delete).post(settings_environments::delete),
        )
        .route("/assets/{file}", get(assets::serve))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { DashboardError::NotFound("This page".into()) })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_http_metrics,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The path only: a query may hold a repository name, never a key,
            // but there is no reason to log it.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }))
        .with_state(state)
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    // Not `no-referrer`: with it Chromium sends `Origin: null` on form posts,
    // which the same-origin check must refuse. Nothing leaves this origin.
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(
        headers,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    // Pages hold workspace data (and, once, a new key): never stored.
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

async fn record_http_metrics(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Response {
    let m = &state.metrics;
    vibemon_runtime::http_metrics::record(&m.request_seconds, &m.requests, req, next).await
}

/// Ready when Postgres answers.
async fn readyz(State(state): State<SharedState>) -> (StatusCode, &'static str) {
    match sqlx::query("SELECT 1").execute(&state.pool).await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: Postgres does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "Postgres does not answer")
        }
    }
}

async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        vibemon_runtime::render_metrics(&state.metrics.registry),
    )
}
