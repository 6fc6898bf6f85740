//! The router: every page of the dashboard and the layers around them.
//!
//! [`app`] builds the whole `Router` from an [`AppState`], so tests drive it
//! with `tower::ServiceExt::oneshot` and no socket.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::state::{AppState, SharedState};

/// The whole dashboard.
pub fn app(state: AppState) -> Router {
    let state: SharedState = Arc::new(state);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
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
