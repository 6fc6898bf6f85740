//! ingest's Prometheus metrics, registered in one registry and served on
//! `GET /metrics`.

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
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "vibemon_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )
        .unwrap();
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "vibemon_http_request_duration_seconds",
                "HTTP request latency",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .unwrap();
        let produce_seconds = HistogramVec::new(
            HistogramOpts::new(
                "vibemon_ingest_produce_duration_seconds",
                "Kafka produce latency until acknowledged",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )
        .unwrap();
        let produce_errors = IntCounterVec::new(
            Opts::new(
                "vibemon_ingest_produce_errors_total",
                "Kafka produce failures by reason",
            ),
            &["reason"],
        )
        .unwrap();
        let producer_queue = IntGauge::new(
            "vibemon_ingest_producer_queue_messages",
            "Messages in the producer queue awaiting acknowledgement",
        )
        .unwrap();
        let auth_cache = IntCounterVec::new(
            Opts::new(
                "vibemon_ingest_auth_cache_total",
                "API key cache lookups by result",
            ),
            &["result"],
        )
        .unwrap();
        let argon2_verifications = IntCounterVec::new(
            Opts::new(
                "vibemon_ingest_argon2_verifications_total",
                "argon2id verifications by outcome",
            ),
            &["outcome"],
        )
        .unwrap();
        let rejections = IntCounterVec::new(
            Opts::new(
                "vibemon_ingest_rejections_total",
                "Rejected webhook requests by reason",
            ),
            &["reason"],
        )
        .unwrap();
        let events_published = IntCounter::new(
            "vibemon_ingest_events_published_total",
            "DeploymentReported events acknowledged by Kafka",
        )
        .unwrap();
        let open_connections = IntGauge::new(
            "vibemon_http_open_connections",
            "TCP connections being served, one task each",
        )
        .unwrap();
        let connections_refused = IntCounter::new(
            "vibemon_http_connections_refused_total",
            "TCP connections refused with a 503 because the connection cap was reached",
        )
        .unwrap();
        let requests_in_flight = IntGauge::new(
            "vibemon_http_requests_in_flight",
            "Webhook and read-API requests being worked on",
        )
        .unwrap();
        let requests_refused = IntCounter::new(
            "vibemon_http_requests_refused_total",
            "Requests refused with a 503 before their body was read because the in-flight cap was reached",
        )
        .unwrap();
        vibemon_runtime::register_all(
            &registry,
            vec![
                Box::new(requests.clone()),
                Box::new(request_seconds.clone()),
                Box::new(produce_seconds.clone()),
                Box::new(produce_errors.clone()),
                Box::new(producer_queue.clone()),
                Box::new(auth_cache.clone()),
                Box::new(argon2_verifications.clone()),
                Box::new(rejections.clone()),
                Box::new(events_published.clone()),
                Box::new(open_connections.clone()),
                Box::new(connections_refused.clone()),
                Box::new(requests_in_flight.clone()),
                Box::new(requests_refused.clone()),
            ],
        );
        Self {
            registry,
            requests,
            request_seconds,
            produce_seconds,
            produce_errors,
            producer_queue,
            auth_cache,
            argon2_verifications,
            rejections,
            events_published,
            open_connections,
            connections_refused,
            requests_in_flight,
            requests_refused,
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
