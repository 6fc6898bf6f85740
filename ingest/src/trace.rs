//! The trace a request belongs to: the W3C `traceparent` it sent, or one
//! started here, continued by the request's span and carried on the Kafka
//! record as the CloudEvents distributed-tracing extension (`ce_traceparent`,
//! `ce_tracestate`), so the projector continues the same trace.
//!
//! A malformed or repeated `traceparent` is ignored, never refused: tracing
//! is the operator's business, and a report is not lost over it. With
//! spans exported (`OTEL_EXPORTER_OTLP_ENDPOINT`) the record names the
//! request's span; without, a parent id of its own in the same trace.

use axum::http::HeaderMap;
use rand::Rng;
use vibemon_runtime::telemetry;
use vibemon_schemas::event::{acceptable_tracestate, TraceParent};

/// The W3C request headers.
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// W3C's `sampled` flag, for a trace started here.
const SAMPLED: u8 = 0x01;

/// What goes on the record for a request's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTrace {
    pub traceparent: TraceParent,
    /// Forwarded only beside a valid incoming `traceparent`.
    pub tracestate: Option<String>,
}

/// Continues the request's trace in `span` (which must have an empty
/// `trace_id` field) and answers what its record carries.
pub fn start(span: &tracing::Span, headers: &HeaderMap) -> RecordTrace {
    let incoming = incoming(headers);
    if let Some(parent) = &incoming {
        telemetry::continue_trace(span, parent);
    }
    let traceparent = telemetry::span_traceparent(span).unwrap_or_else(|| own_span(incoming));
    span.record("trace_id", traceparent.trace_id_hex());
    let tracestate = incoming.and_then(|_| single(headers, TRACESTATE));
    RecordTrace {
        traceparent,
        tracestate: tracestate.filter(|s| acceptable_tracestate(s)),
    }
}

/// The request's `traceparent`, when it sent exactly one well-formed one.
fn incoming(headers: &HeaderMap) -> Option<TraceParent> {
    single(headers, TRACEPARENT).and_then(|v| TraceParent::parse(&v))
}

fn single(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok().map(|s| s.trim().to_owned())
}

/// A span id of our own (spans not exported), in the incoming trace or a new
/// one.
fn own_span(incoming: Option<TraceParent>) -> TraceParent {
    let mut rng = rand::rng();
    loop {
        let trace_id = incoming.map_or_else(|| rng.random(), |p| p.trace_id());
        let flags = incoming.map_or(SAMPLED, |p| p.flags());
        if let Some(p) = TraceParent::new(trace_id, rng.random(), flags) {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_in_its_trace() {
        let t = start(
            &tracing::Span::none(),
            &headers(&[(TRACEPARENT, GIVEN), (TRACESTATE, "vendor=x")]),
        );
        assert_eq!(t.traceparent.trace_id_hex(), &GIVEN[3..35]);
        assert_ne!(t.traceparent.to_string(), GIVEN, "a span of our own");
        assert_eq!(t.tracestate.as_deref(), Some("vendor=x"));
    }

    #[test]
    fn a_missing_malformed_or_repeated_traceparent_starts_a_new_trace() {
        for h in [
            headers(&[(TRACESTATE, "vendor=x")]),
            headers(&[(TRACEPARENT, "00-zz"), (TRACESTATE, "vendor=x")]),
            headers(&[(TRACEPARENT, GIVEN), (TRACEPARENT, GIVEN)]),
        ] {
            let t = start(&tracing::Span::none(), &h);
            assert_ne!(t.traceparent.trace_id_hex(), &GIVEN[3..35]);
            assert_eq!(t.traceparent.flags(), SAMPLED);
            assert_eq!(t.tracestate, None, "no tracestate without its traceparent");
        }
    }
}
