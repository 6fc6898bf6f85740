//! ingest's Prometheus metrics, registered in one registry and served on
//! `GET /metrics`.

use prometheus::core::Collector;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Every metric ingest exports. Names are stable: dashboards and alerts in
/// `deploy/` use them.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route template and status code.
    pub requests: IntCounterVec,
    /// Request latency by route template.
    pub request_seconds: HistogramVec,
    /// Time from handing an event to the producer to its acknowledgement.
    pub produce_seconds: HistogramVec,
    /// Produce failures by reason (queue_full, timeout, broker, ...).
    pub produce_errors: IntCounterVec,
    /// Messages in the producer queue awaiting acknowledgement.
    pub producer_queue: IntGauge,
    /// Auth cache lookups: hit, negative_hit, miss.
    pub auth_cache: IntCounterVec,
    /// argon2 verifications by outcome (valid, invalid).
    pub argon2_verifications: IntCounterVec,
    /// Rejected requests by reason.
    pub rejections: IntCounterVec,
    /// Events acknowledged by Kafka.
    pub events_published: IntCounter,
    /// TCP connections being served (one task each).
    pub open_connections: IntGauge,
    /// Connections answered 503 and closed at once because the cap was reached.
    pub connections_refused: IntCounter,
    /// Requests being worked on (webhook and read API), set when scraped:
    /// how close ingest runs to `INGEST_MAX_IN_FLIGHT`.
    pub requests_in_flight: IntGauge,
    /// Requests answered 503 before their body was read because every
    /// in-flight slot was taken: load shed, which a retry should find room for.
    pub requests_refused: IntCounter,
    /// Code-host deliveries to the integration routes by provider and
    /// outcome (published, ping, ignored_event, inactive, refused_environment,
    /// bad_signature, unknown_receiver, revoked, invalid_body, ...): a
    /// receiver that refuses everything shows here before anyone reads the
    /// code host's delivery log.
    pub integration_deliveries: IntCounterVec,
    /// Deliveries answered 202 and not published because their event type
    /// is not a deployment event, by provider and event type (an
    /// organization webhook sending everything).
    pub integration_ignored_events: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registers a new metric in `registry` and hands it back; the names are
/// fixed here, so a failure is a bug found by the first test.
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("a valid metric");
    vibemon_runtime::register_all(registry, vec![Box::new(metric.clone())]);
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, IntCounter::new(name, help))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, label: &str) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), &[label]),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help))
}

/// A latency histogram with ingest's buckets.
fn latency(registry: &Registry, name: &str, help: &str, label: &str) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    registered(registry, HistogramVec::new(opts, &[label]))
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            requests: registered(
                &r,
                IntCounterVec::new(
                    Opts::new("vibemon_http_requests_total", "HTTP requests by route and status"),
                    &["route", "status"],
                ),
            ),
            request_seconds: latency(&r, "vibemon_http_request_duration_seconds", "HTTP request latency", "route"),
            produce_seconds: latency(&r, "vibemon_ingest_produce_duration_seconds", "Kafka produce latency until acknowledged", "outcome"),
            produce_errors: counter_vec(&r, "vibemon_ingest_produce_errors_total", "Kafka produce failures by reason", "reason"),
            producer_queue: gauge(&r, "vibemon_ingest_producer_queue_messages", "Messages in the producer queue awaiting acknowledgement"),
            auth_cache: counter_vec(&r, "vibemon_ingest_auth_cache_total", "API key cache lookups by result", "result"),
            argon2_verifications: counter_vec(&r, "vibemon_ingest_argon2_verifications_total", "argon2id verifications by outcome", "outcome"),
            rejections: counter_vec(&r, "vibemon_ingest_rejections_total", "Rejected webhook requests by reason", "reason"),
            events_published: counter(&r, "vibemon_ingest_events_published_total", "DeploymentReported events acknowledged by Kafka"),
            open_connections: gauge(&r, "vibemon_http_open_connections", "TCP connections being served, one task each"),
            connections_refused: counter(&r, "vibemon_http_connections_refused_total", "TCP connections refused with a 503 because the connection cap was reached"),
            requests_in_flight: gauge(&r, "vibemon_http_requests_in_flight", "Webhook and read-API requests being worked on"),
            requests_refused: counter(&r, "vibemon_http_requests_refused_total", "Requests refused with a 503 before their body was read because the in-flight cap was reached"),
            integration_deliveries: registered(&r, IntCounterVec::new(Opts::new("vibemon_ingest_integration_deliveries_total", "Code-host deliveries to the integration routes by provider and outcome"), &["provider", "outcome"])),
            integration_ignored_events: registered(&r, IntCounterVec::new(Opts::new("vibemon_ingest_integration_ignored_events_total", "Code-host deliveries not published because their event type is not a deployment event, by provider and event type"), &["provider", "event"])),
            registry: r,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        vibemon_runtime::render_metrics(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
