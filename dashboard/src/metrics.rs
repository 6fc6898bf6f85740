//! The dashboard's Prometheus metrics, on `/metrics`.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `vibemon_dashboard_requests_total{route,status}`.
    pub requests: IntCounterVec,
    /// `vibemon_dashboard_request_seconds{route}`: time to answer.
    pub request_seconds: HistogramVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "vibemon_dashboard_requests_total",
                "Dashboard requests answered, by route and status.",
            ),
            &["route", "status"],
        )
        .expect("valid metric");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "vibemon_dashboard_request_seconds",
                "Time to answer a dashboard request, by route.",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["route"],
        )
        .expect("valid metric");
        vibemon_runtime::register_all(
            &registry,
            vec![
                Box::new(requests.clone()),
                Box::new(request_seconds.clone()),
            ],
        );
        Self {
            registry,
            requests,
            request_seconds,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
