//! What every vibemon binary (ingest, projector, vibemon) needs to run, so
//! that each sets it up the same way:
//!
//! - `KafkaArgs`: brokers, topic and librdkafka pass-through properties, as
//!   flags and environment variables;
//! - [`init_tracing`]: structured JSON logs (or plain text on a terminal);
//! - [`telemetry`]: the same, plus spans over OTLP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set, and `traceparent` helpers;
//! - [`shutdown_signal`]: SIGTERM or Ctrl-C;
//! - [`register_all`] and [`render_metrics`]: one Prometheus registry per
//!   service, served as text on `/metrics`; [`http_metrics`]: the HTTP
//!   metrics every router records the same way;
//! - `watermarks`: a topic's partitions and their offset ranges.
//!
//! The Kafka parts are behind the default `kafka` feature, so a binary that
//! never talks to Kafka (the dashboard) does not link librdkafka.

pub mod http_metrics;
pub mod telemetry;
#[cfg(feature = "kafka")]
pub mod watermarks;

#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "kafka")]
pub use kafka::KafkaArgs;

/// Installs the global tracing subscriber: JSON lines unless `LOG_FORMAT=text`.
/// The filter comes from `RUST_LOG` (default `info`). Logs only: a service
/// that exports traces calls [`telemetry::init`] instead.
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // A second init (tests spawning several services) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(telemetry::filter())
        .with(telemetry::log_layer())
        .try_init();
}

/// Registers every collector; metric names must be unique.
pub fn register_all(
    registry: &prometheus::Registry,
    collectors: Vec<Box<dyn prometheus::core::Collector>>,
) {
    for c in collectors {
        registry.register(c).expect("metric names are unique");
    }
}

/// The registry in the Prometheus text format.
pub fn render_metrics(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .expect("text encoding cannot fail");
    String::from_utf8(buf).expect("prometheus text is UTF-8")
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("received Ctrl-C, shutting down"),
        _ = term => tracing::info!("received SIGTERM, shutting down"),
    }
}
