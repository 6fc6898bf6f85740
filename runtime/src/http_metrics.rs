//! The HTTP metrics every service with a router records the same way: time
//! to answer by matched route, and answers by route and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramVec, IntCounterVec};

/// Runs the request and records it: `request_seconds{route}` and
/// `requests{route,status}`; a path no route matched is `unmatched`.
pub async fn record(
    request_seconds: &HistogramVec,
    requests: &IntCounterVec,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(req).await;
    request_seconds
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}
