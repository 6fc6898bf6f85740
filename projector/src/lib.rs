//! projector: consumes `DeploymentReported` events into the Postgres read
//! model, exactly once.
//!
//! [`consumer`] is the consume loop and rebalance handling, [`batch`] turns
//! records into rows (and rejects what cannot be applied), [`writer`] writes a
//! batch and its checkpoints in one transaction, [`dead_letters`] takes what
//! cannot be applied, [`topic_check`] checks the checkpoints against the topic
//! on assignment. [`serve`] wires them to the health and metrics endpoints.
//!
//! Modules depend one way only: `config` on `consumer`; `consumer` on
//! `dead_letters`, `topic_check` and `writer`; those on `batch`, `metrics`
//! and `retry`, which depend on no other module of the crate.

pub mod batch;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod lineage;
pub mod metrics;
mod retry;
pub mod topic_check;
pub mod tracing_spans;
pub mod what_changed;
pub mod writer;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use rdkafka::ClientConfig;
use serde_json::json;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::consumer::{ConsumeLoop, LoopConfig, Wiring};
use crate::dead_letters::DeadLetters;
use crate::metrics::Metrics;

#[derive(Clone)]
struct HttpState {
    metrics: Metrics,
    healthy: Arc<AtomicBool>,
    running: Arc<AtomicBool>,
}

/// Health and metrics endpoints; tested without a socket.
fn http_app(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(s): State<HttpState>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    s.metrics.render(),
                )
            }),
        )
        .with_state(state)
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let postgres = s.healthy.load(Ordering::Relaxed);
    let running = s.running.load(Ordering::Relaxed);
    let ready = postgres && running;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            json!({"status": if ready { "ready" } else { "unready" }, "postgres": postgres, "consuming": running}),
        ),
    )
}

/// Runs the projector until `shutdown` resolves (or, with `until_caught_up`,
/// until caught up). On shutdown it finishes the batch, commits, leaves the
/// group and returns `Ok`.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let loop_config = config.loop_config();
    serve_with(config, loop_config, listener, shutdown, Metrics::new()).await
}

/// Consumer defaults an operator may override with KAFKA_OPTIONS.
///
/// The prefetch and fetch sizes hold only what a few batches need.
/// librdkafka's defaults (64 MiB and 100,000 messages queued ahead, 50 MiB
/// fetch responses) took the projector to 217 MiB peak RSS in the benchmark;
/// with these it peaked at 85 MiB at the same throughput.
///
/// With the prefetch queue that small it is full while a batch is written,
/// and librdkafka then postpones the next fetch by `fetch.queue.backoff.ms`
/// (1 s by default): the projector drained the queue and sat idle for
/// 200-450 ms about every 5 batches of a catch-up. 10 ms keeps fetching
/// just behind the loop.
const CONSUMER_TUNING: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "10"),
    ("statistics.interval.ms", "5000"),
    ("session.timeout.ms", "10000"),
    ("queued.max.messages.kbytes", "8192"),
    ("queued.min.messages", "10000"),
    ("fetch.max.bytes", "4194304"),
    ("max.partition.fetch.bytes", "524288"),
];

/// [`serve`] with a loop configuration of the caller's (a replay of one
/// workspace) and metrics the caller can watch (replay progress).
pub async fn serve_with(
    config: Config,
    loop_config: LoopConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    metrics: Metrics,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let healthy = Arc::new(AtomicBool::new(true));
    let running = Arc::new(AtomicBool::new(true));
    let dead_letters = DeadLetters::new(
        config.kafka.client_config("vibemon-projector-dlq"),
        loop_config.dlq_topic.clone(),
        loop_config.group.clone(),
        metrics.clone(),
    )
    .context("creating the DLQ producer")?;
    let wiring = Wiring {
        pool: pool(&config)?,
        config: loop_config,
        metrics: metrics.clone(),
        dead_letters,
        stop: stop.clone(),
        healthy: healthy.clone(),
    };
    let consume = ConsumeLoop::start(&consumer_config(&config), wiring)?;
    let http = axum::serve(
        listener,
        http_app(HttpState {
            metrics,
            healthy,
            running: running.clone(),
        }),
    );
    let http = tokio::spawn(async move { http.await });
    let stopper = tokio::spawn(async move {
        shutdown.await;
        stop.store(true, Ordering::Relaxed);
    });
    tracing::info!(group = %config.group, topic = %config.kafka.topic, "projector consuming");
    let result = consume.finished().await;
    running.store(false, Ordering::Relaxed);
    stopper.abort();
    http.abort();
    result?;
    tracing::info!("projector stopped cleanly");
    Ok(())
}

/// The Postgres pool, connecting lazily. Timeouts are enforced by Postgres
/// itself: a cancelled statement leaves the connection in step and releases
/// its locks at once, where dropping a client-side future would not.
fn pool(config: &Config) -> anyhow::Result<PgPool> {
    let timeout = format!("{}s", config.write_timeout_secs);
    let options = config
        .database_url
        .parse::<sqlx::postgres::PgConnectOptions>()
        .context("DATABASE_URL is not a valid Postgres URL")?
        .options([
            ("statement_timeout", timeout.as_str()),
            ("lock_timeout", timeout.as_str()),
        ]);
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options))
}

/// The group member's Kafka settings: offsets are stored in Postgres, so
/// Kafka's are neither stored nor committed automatically.
fn consumer_config(config: &Config) -> ClientConfig {
    let mut client = config
        .kafka
        .client_config_tuned("vibemon-projector", CONSUMER_TUNING);
    client
        .set("group.id", &config.group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Never reset silently: every partition starts at its checkpoint or
        // explicitly at the beginning, so a reset means the offsets vanished
        // under us (records deleted, topic recreated); the loop stops on it.
        .set("auto.offset.reset", "error");
    client
}
