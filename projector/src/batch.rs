//! Turns a batch of Kafka records into the rows one transaction writes.
//!
//! Decoding happens here, so a record that is not a valid event is set aside
//! for the dead-letter topic with its reason. Everything else is pure: the
//! same records give the same rows whatever the batch boundaries.

use std::collections::BTreeMap;

use vibemon_schemas::{DecodeError, DeploymentReported};

/// One record as read from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
}

/// A decoded event with where it came from.
#[derive(Debug, Clone)]
pub struct Located {
    pub event: DeploymentReported,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A record that cannot be applied, and why.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub record: Record,
    pub reason: String,
}

/// A batch split into what to write and what to dead-letter, plus the next
/// offset to checkpoint per (topic, partition).
#[derive(Debug, Default)]
pub struct Prepared {
    pub events: Vec<Located>,
    pub rejected: Vec<Rejected>,
    pub next_offsets: BTreeMap<(String, i32), i64>,
    /// Whether each record, in arrival order, was valid: the DLQ limit
    /// counts invalid records in a row across batches.
    pub validity: Vec<bool>,
}

impl Prepared {
    /// Splits records; with `only_workspace`, valid events of other
    /// workspaces are checkpointed but not applied (replays of one workspace).
    pub fn from_records(records: Vec<Record>, only_workspace: Option<uuid::Uuid>) -> Self {
        let mut out = Prepared::default();
        for record in records {
            let next = out
                .next_offsets
                .entry((record.topic.clone(), record.partition))
                .or_insert(record.offset + 1);
            *next = (*next).max(record.offset + 1);
            let decoded = match &record.payload {
                None => Err("record has no value (tombstone)".to_owned()),
                Some(bytes) => {
                    DeploymentReported::decode(bytes).map_err(|e: DecodeError| e.to_string())
                }
            };
            out.validity.push(decoded.is_ok());
            match decoded {
                Ok(event) if only_workspace.is_some_and(|w| w != event.workspace_id) => {}
                Ok(event) => out.events.push(Located {
                    event,
                    topic: record.topic,
                    partition: record.partition,
                    offset: record.offset,
                }),
                Err(reason) => out.rejected.push(Rejected { record, reason }),
            }
        }
        out
    }
}
