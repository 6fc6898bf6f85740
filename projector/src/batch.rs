//! Turns a batch of Kafka records into the rows one transaction writes.
//!
//! Decoding happens here, so a record that is not a valid event is set aside
//! for the dead-letter topic with its reason. Everything else is pure: the
//! same records give the same rows whatever the batch boundaries.

use std::collections::BTreeMap;
use std::sync::Arc;

use vibemon_schemas::event::TraceParent;
use vibemon_schemas::{DecodeError, DeploymentReported};
use vibemon_store::checkpoints::Position;

/// One record as read from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    /// The `vibemon_request_fingerprint` header, when ingest set one.
    pub fingerprint: Option<String>,
    /// The `ce_traceparent` header, when ingest set a well-formed one: the
    /// trace the record's projection continues.
    pub traceparent: Option<TraceParent>,
}

/// A decoded event with where it came from.
#[derive(Debug, Clone)]
pub struct Located {
    pub event: DeploymentReported,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The fingerprint of the webhook body behind an event that carried an
    /// `Idempotency-Key`: a second event with the same id and another
    /// fingerprint is a reuse of the key, not a retry.
    pub fingerprint: Option<String>,
    /// The request's trace, from the record's `ce_traceparent`: kept in the
    /// audit row and continued by the record's `project` span.
    pub traceparent: Option<TraceParent>,
}

impl Located {
    /// An event at a position, without a request fingerprint.
    pub fn new(event: DeploymentReported, topic: &str, partition: i32, offset: i64) -> Self {
        Self {
            event,
            topic: topic.to_owned(),
            partition,
            offset,
            fingerprint: None,
            traceparent: None,
        }
    }
}

/// Why a record is not applied but dead-lettered. The reason keeps its type
/// from decoding to the DLQ headers, so its class is never recovered from
/// its text.
#[derive(Debug, Clone)]
pub enum RejectReason {
    /// The record has no value (a tombstone): there is nothing to decode.
    Tombstone,
    /// The record's value is not a usable event. `DecodeError` holds a
    /// `serde_json::Error`, which is not `Clone`, hence the `Arc`.
    Decode(Arc<DecodeError>),
    /// The record decoded, but Postgres refused it for a reason retrying
    /// cannot fix (found by bisecting its batch).
    Postgres { message: String },
}

impl RejectReason {
    /// A stable label for metrics and the `dlq_reason_class` header.
    pub fn class(&self) -> &'static str {
        match self {
            RejectReason::Tombstone => "invalid",
            RejectReason::Decode(e) => e.class(),
            RejectReason::Postgres { .. } => "rejected_by_postgres",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::Tombstone => f.write_str("record has no value (tombstone)"),
            RejectReason::Decode(e) => write!(f, "{e}"),
            RejectReason::Postgres { message } => write!(f, "rejected by Postgres: {message}"),
        }
    }
}

/// A record that cannot be applied, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub record: Record,
    pub reason: RejectReason,
}

/// `content_digest` of a record's value (a tombstone's is that of no bytes).
pub fn record_digest(payload: Option<&[u8]>) -> String {
    vibemon_schemas::event::content_digest(payload.unwrap_or_default())
}

/// A batch split into what to write and what to dead-letter, plus the next
/// offset to checkpoint per (topic, partition).
#[derive(Debug, Default)]
pub struct Prepared {
    pub events: Vec<Located>,
    /// The record behind each of `events`, same index: what goes to the DLQ
    /// if Postgres refuses that event.
    pub sources: Vec<Record>,
    pub rejected: Vec<Rejected>,
    pub next_offsets: BTreeMap<(String, i32), Position>,
    /// Whether each record, in arrival order, was valid: the DLQ limit
    /// counts invalid records in a row across batches.
    pub validity: Vec<bool>,
}

impl Prepared {
    /// Takes the events at `indexes` out of the batch (their offsets stay
    /// covered by `next_offsets`) and returns their records.
    pub fn remove_events(&mut self, indexes: &[usize]) -> Vec<Record> {
        let mut sorted = indexes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out = Vec::with_capacity(sorted.len());
        for &i in sorted.iter().rev() {
            self.events.remove(i);
            out.push(self.sources.remove(i));
        }
        out.reverse();
        out
    }
}

impl Prepared {
    /// Splits records; with `only_workspace`, valid events of other
    /// workspaces are checkpointed but not applied (replays of one workspace).
    pub fn from_records(records: Vec<Record>, only_workspace: Option<uuid::Uuid>) -> Self {
        let mut out = Prepared {
            next_offsets: next_offsets(&records),
            ..Prepared::default()
        };
        for record in records {
            let decoded = decode(&record);
            out.validity.push(decoded.is_ok());
            match decoded {
                Ok(event) if only_workspace.is_some_and(|w| w != event.workspace_id) => {}
                Ok(event) => {
                    out.events.push(Located {
                        event,
                        topic: record.topic.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        fingerprint: record.fingerprint.clone(),
                        traceparent: record.traceparent,
                    });
                    out.sources.push(record);
                }
                Err(reason) => out.rejected.push(Rejected { record, reason }),
            }
        }
        out
    }
}

/// The position after the furthest record of each partition. Only the
/// furthest record's digest is computed.
fn next_offsets(records: &[Record]) -> BTreeMap<(String, i32), Position> {
    let mut furthest: BTreeMap<(&str, i32), &Record> = BTreeMap::new();
    for record in records {
        let slot = furthest
            .entry((record.topic.as_str(), record.partition))
            .or_insert(record);
        if record.offset > slot.offset {
            *slot = record;
        }
    }
    furthest
        .into_iter()
        .map(|((topic, partition), record)| {
            let position = Position {
                next: record.offset + 1,
                last_record: Some(record_digest(record.payload.as_deref())),
            };
            ((topic.to_owned(), partition), position)
        })
        .collect()
}

/// The record's event, or why it has none.
fn decode(record: &Record) -> Result<DeploymentReported, RejectReason> {
    let Some(bytes) = &record.payload else {
        return Err(RejectReason::Tombstone);
    };
    DeploymentReported::decode(bytes).map_err(|e| RejectReason::Decode(Arc::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: i64, payload: Option<&[u8]>) -> Record {
        Record {
            topic: "t".to_owned(),
            partition: 0,
            offset,
            payload: payload.map(<[u8]>::to_vec),
            key: None,
            fingerprint: None,
            traceparent: None,
        }
    }

    /// The reason's text and class as the DLQ headers carry them.
    fn reasons(records: Vec<Record>) -> Vec<(String, &'static str)> {
        Prepared::from_records(records, None)
            .rejected
            .iter()
            .map(|r| (r.reason.to_string(), r.reason.class()))
            .collect()
    }

    #[test]
    fn each_kind_of_undecodable_record_keeps_its_reason_text_and_class() {
        let future = format!(
            r#"{{"schema_version":{}}}"#,
            vibemon_schemas::LATEST_SCHEMA_VERSION + 1
        );
        let got = reasons(vec![
            record(0, None),
            record(1, Some(b"{not json")),
            record(2, Some(future.as_bytes())),
        ]);

        assert_eq!(
            got[0],
            ("record has no value (tombstone)".to_owned(), "invalid")
        );
        assert!(
            got[1].0.starts_with("invalid DeploymentReported: "),
            "{}",
            got[1].0
        );
        assert_eq!(got[1].1, "invalid");
        assert_eq!(
            got[2],
            (
                format!(
                    "unsupported schema_version {} (this build reads versions 1 to {})",
                    vibemon_schemas::LATEST_SCHEMA_VERSION + 1,
                    vibemon_schemas::LATEST_SCHEMA_VERSION
                ),
                "unsupported_version"
            )
        );
    }

    #[test]
    fn a_record_postgres_refused_says_so_in_its_reason_and_class() {
        let reason = RejectReason::Postgres {
            message: "value too long".to_owned(),
        };

        assert_eq!(reason.to_string(), "rejected by Postgres: value too long");
        assert_eq!(reason.class(), "rejected_by_postgres");
    }

    #[test]
    fn the_checkpoint_follows_the_furthest_record_of_each_partition_whatever_its_validity() {
        let prepared = Prepared::from_records(vec![record(7, Some(b"x")), record(3, None)], None);

        let position = &prepared.next_offsets[&("t".to_owned(), 0)];
        assert_eq!(position.next, 8);
        assert_eq!(position.last_record, Some(record_digest(Some(b"x"))));
        assert_eq!(prepared.validity, [false, false]);
    }
}
