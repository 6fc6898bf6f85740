//! ingest: the stateless webhook service.
//!
//! A request is authenticated ([`authenticated`], over [`auth`]), checked and
//! validated ([`webhook`], [`request`]), resolved to an environment
//! ([`environments`]), turned into one `DeploymentReported` event and
//! published ([`sink`], through [`idempotency`] with an `Idempotency-Key`);
//! the 201 goes out only after Kafka acknowledged. [`read_api`] serves the
//! read side behind the same key. [`integrations`] takes GitHub's and
//! GitLab's own deployment events to the same event, signed by a receiver's
//! secret instead of a key. [`state`] is what every handler shares,
//! [`app`] the router, [`error`] the one place errors become status codes,
//! [`server`] the accept loop, [`config`] the knobs.

pub mod app;
pub mod auth;
pub mod authenticated;
pub mod config;
pub mod deadline;
pub mod environments;
pub mod error;
pub mod idempotency;
pub mod integrations;
pub mod limits;
pub mod metrics;
pub mod ops;
pub mod read_api;
pub mod request;
pub mod server;
pub mod sink;
pub mod state;
pub mod trace;
pub mod webhook;

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::environments::Environments;
use crate::idempotency::Idempotency;
use crate::metrics::Metrics;
use crate::sink::{KafkaSink, Sink, SinkKind};
use crate::state::{AppState, RequestLimits};

/// Builds the state for a configuration: pools, caches, producer.
pub async fn build_state(config: &Config) -> anyhow::Result<AppState> {
    let metrics = Metrics::new();
    let options: PgConnectOptions = config
        .database_url
        .parse()
        .context("DATABASE_URL is not a valid Postgres URL")?;
    // Connect lazily: ingest starts (and serves cached keys) while Postgres is away.
    let pool = PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options.clone());
    let statement_timeout = config.read_statement_timeout_ms.to_string();
    let read_pool = PgPoolOptions::new()
        .max_connections(config.read_db_pool_size)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy_with(options.options([("statement_timeout", statement_timeout.as_str())]));
    let sink = match config.sink {
        SinkKind::Kafka => Sink::Kafka(
            KafkaSink::new(&config.kafka, &config.producer(), metrics.clone())
                .context("creating the Kafka producer")?,
        ),
        SinkKind::Noop => {
            tracing::warn!("--sink noop: events are acknowledged and DISCARDED; use only to benchmark the HTTP path");
            Sink::Noop
        }
    };
    Ok(AppState {
        auth: Authenticator::new(pool.clone(), &config.auth(), metrics.clone()),
        environments: Environments::new(
            pool.clone(),
            Duration::from_secs(config.env_cache_ttl_secs),
        ),
        sink,
        metrics,
        pool,
        read_pool,
        limits: RequestLimits {
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            max_body_bytes: config.max_body_bytes,
            max_integration_body_bytes: config.max_integration_body_bytes,
            body_timeout: Duration::from_millis(config.body_timeout_ms),
            max_future_skew: chrono::Duration::seconds(config.max_future_skew_secs),
            max_event_version: config.max_event_version,
        },
        idempotent: Idempotency::new(),
        rate_limits: limits::RateLimits::new(config.rate_limit_per_ip, config.rate_limit_per_key),
        in_flight: limits::InFlight::new(config.max_in_flight as usize),
        integration_key: config.integration_key.clone(),
    })
}

/// Runs ingest on `listener` until `shutdown` resolves; then drains in-flight
/// requests and flushes the producer.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    let flusher = tokio::spawn(housekeeping(state.clone()));
    tracing::info!(addr = %listener.local_addr()?, topic = %config.kafka.topic, sink = ?config.sink, "ingest listening");
    server::serve_with_timeouts(
        app::app(state.clone()),
        listener,
        server::ServerLimits {
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            drain: Duration::from_secs(15),
            max_connections: config.max_connections,
            max_connections_per_client: config.max_connections_per_ip,
        },
        state.metrics.clone(),
        shutdown,
    )
    .await?;
    flusher.abort();
    let _ = state.auth.flush_last_used().await;
    state.sink.flush(Duration::from_secs(10)).await;
    tracing::info!("ingest stopped");
    Ok(())
}

/// Every 5 s: write batched key use, forget idle rate-limit buckets.
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Err(e) = state.auth.flush_last_used().await {
            tracing::warn!(error = %e, "could not record API key last use");
        }
        state.rate_limits.shrink();
    }
}
