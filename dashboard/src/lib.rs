//! The dashboard: server-rendered pages over the read model, for on-call
//! engineers (`read` keys) and workspace admins (`admin` keys).
//!
//! [`app`] builds the router; [`session`] signs people in and out and is the
//! one extractor every page takes, naming the scope it needs; [`pages`]
//! renders HTML with `maud` (every value escaped); [`assets`] serves the CSS
//! and script compiled into the binary (no CDN); [`error`] is the one place
//! errors become pages and status codes; [`config`] the knobs.

pub mod app;
pub mod assets;
pub mod config;
pub mod error;
pub mod metrics;
pub mod pages;
pub mod session;
pub mod state;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::state::AppState;

/// Builds the state for a configuration: the pool and the signing key.
pub fn build_state(config: &Config) -> anyhow::Result<AppState> {
    let options: PgConnectOptions = config
        .database_url
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    // Connect lazily: the dashboard starts (and says it is not ready) while
    // Postgres is away.
    let pool = PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options.application_name("vibemon-dashboard"));
    Ok(AppState::new(pool, config))
}

/// Serves until `shutdown` resolves, then drains.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = build_state(&config)?;
    if config.session_key_bytes().is_none() {
        tracing::warn!(
            "DASHBOARD_SESSION_KEY is not set: sessions are signed with a key made at start \
             and end when this process does; replicas need one shared key"
        );
    }
    tracing::info!(addr = %listener.local_addr()?, "dashboard listening");
    let app = app::app(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving")
}
