//! The request's W3C trace goes on its record as `ce_traceparent` (the
//! CloudEvents distributed-tracing extension), here without an exporter:
//! a given trace is continued, a missing or malformed one is replaced by a
//! new trace and never refused, and an `Idempotency-Key` retry keeps the
//! first request's trace. With spans exported to a real Jaeger:
//! `tests/traces.rs`.

use std::time::Duration;

use vibemon_schemas::event::{TraceParent, TRACEPARENT_HEADER, TRACESTATE_HEADER};
use vibemon_testkit::ReadRecord;

use crate::helpers::{TestApp, MINIMAL};

const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn header<'r>(r: &'r ReadRecord, name: &str) -> Option<&'r str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn traceparent_of(r: &ReadRecord) -> TraceParent {
    let value = header(r, TRACEPARENT_HEADER).expect("every record has ce_traceparent");
    TraceParent::parse(value).unwrap_or_else(|| panic!("well formed: {value:?}"))
}

#[tokio::test]
async fn a_given_traceparent_is_continued_and_a_missing_or_malformed_one_is_replaced_not_refused() {
    let app = TestApp::spawn_with(|_| {}).await;
    let given = TraceParent::parse(GIVEN).unwrap();

    let continued = app
        .post_with(
            MINIMAL,
            &[("traceparent", GIVEN), ("tracestate", "vendor=opaque")],
        )
        .await;
    let missing = app.post_with(MINIMAL, &[("tracestate", "vendor=x")]).await;
    let malformed = app
        .post_with(
            MINIMAL,
            &[(
                "traceparent",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            )],
        )
        .await;

    for answer in [&continued, &missing, &malformed] {
        assert_eq!(answer.status(), 201, "tracing never refuses a report");
    }
    let mut records = app.events(3, Duration::from_secs(20)).await;
    records.sort_by_key(|r| (r.partition, r.offset));
    assert_eq!(records.len(), 3);
    let ids: Vec<&str> = records
        .iter()
        .map(|r| header(r, "ce_id").unwrap())
        .collect();
    let by_answer = |resp: &reqwest::Response| {
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let id = location.rsplit('/').next().unwrap().to_owned();
        let i = ids.iter().position(|x| *x == id).expect("its record");
        &records[i]
    };
    let (continued, missing, malformed) = (
        by_answer(&continued),
        by_answer(&missing),
        by_answer(&malformed),
    );

    let c = traceparent_of(continued);
    assert_eq!(c.trace_id(), given.trace_id(), "the caller's trace");
    assert_ne!(c.parent_id(), given.parent_id(), "ingest's own span in it");
    assert_eq!(header(continued, TRACESTATE_HEADER), Some("vendor=opaque"));
    for new in [missing, malformed] {
        let t = traceparent_of(new);
        assert_ne!(t.trace_id(), given.trace_id());
        assert_eq!(t.flags(), 1, "a trace started here is sampled");
        assert_eq!(header(new, TRACESTATE_HEADER), None);
    }
    assert_ne!(
        traceparent_of(missing).trace_id(),
        traceparent_of(malformed).trace_id(),
        "each request a trace of its own"
    );
}

#[tokio::test]
async fn an_idempotency_key_retry_keeps_the_first_requests_trace_on_the_one_record() {
    let app = TestApp::spawn_with(|_| {}).await;
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    let first = app
        .post_with(
            MINIMAL,
            &[("Idempotency-Key", "k-1"), ("traceparent", GIVEN)],
        )
        .await;
    let retry = app
        .post_with(
            MINIMAL,
            &[("Idempotency-Key", "k-1"), ("traceparent", other)],
        )
        .await;

    assert_eq!(
        (first.status().as_u16(), retry.status().as_u16()),
        (201, 201)
    );
    assert_eq!(app.record_count().await, 1);
    let records = app.events(1, Duration::from_secs(20)).await;
    assert_eq!(
        traceparent_of(&records[0]).trace_id(),
        TraceParent::parse(GIVEN).unwrap().trace_id()
    );
}
