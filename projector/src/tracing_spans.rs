//! The projector's spans in the traces ingest started.
//!
//! A batch holds records of many traces, so its transaction is a span of
//! its own (`transaction`) with an OpenTelemetry link to each record's
//! trace; and each record with a `ce_traceparent` gets a `project` span in
//! that trace, a child of ingest's request span, that lasts as long as the
//! transaction and says whether it committed. An SRE opening one
//! deployment's trace sees the HTTP request and the projection together.
//! The per-record spans exist only while spans are exported: otherwise a
//! batch of thousands would build thousands of spans nobody reads.

use tracing::field::Empty;
use tracing::Span;
use vibemon_runtime::telemetry;

use crate::batch::Located;

/// OpenTelemetry's default limit of links per span; more would be dropped.
const MAX_LINKS: usize = 128;

/// The spans of one batch transaction.
pub struct Transaction {
    span: Span,
    records: Vec<Span>,
}

impl Transaction {
    /// Opens the transaction's span and, when exporting, one `project` span
    /// per traced record.
    pub fn start(events: &[&Located]) -> Self {
        let span = tracing::info_span!("transaction", events = events.len());
        if !telemetry::exporting() {
            return Self {
                span,
                records: Vec::new(),
            };
        }
        let traced = || events.iter().filter_map(|l| Some((*l, l.traceparent?)));
        for (_, parent) in traced().take(MAX_LINKS) {
            telemetry::link(&span, &parent);
        }
        let transaction = telemetry::span_traceparent(&span);
        let records = traced()
            .map(|(l, parent)| {
                let record = tracing::info_span!(
                    parent: None,
                    "project",
                    otel.kind = "consumer",
                    event_id = %l.event.event_id,
                    deployment_id = %l.event.deployment_id,
                    kafka.partition = l.partition,
                    kafka.offset = l.offset,
                    trace_id = %parent.trace_id_hex(),
                    outcome = Empty,
                    otel.status_code = Empty,
                );
                telemetry::continue_trace(&record, &parent);
                if let Some(t) = &transaction {
                    telemetry::link(&record, t);
                }
                record
            })
            .collect();
        Self { span, records }
    }

    /// The transaction's span, to run its statements in.
    pub fn span(&self) -> Span {
        self.span.clone()
    }

    /// Ends every span, each saying whether the transaction committed.
    pub fn end<T, E>(self, result: &Result<T, E>) {
        let (outcome, status) = match result {
            Ok(_) => ("committed", "ok"),
            Err(_) => ("rolled_back", "error"),
        };
        for record in &self.records {
            record.record("outcome", outcome);
            record.record("otel.status_code", status);
        }
    }
}
