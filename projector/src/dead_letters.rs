//! The dead-letter topic: where a record goes when it cannot be applied, with
//! its reason in headers, and the limit that stops the projector instead of
//! draining a bad producer (or a broken schema) into it.
//!
//! The consume loop sends each rejected record here and waits for the
//! acknowledgement before its checkpoint may pass the record.

use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use tokio::runtime::Handle;

use crate::batch::Rejected;
use crate::metrics::Metrics;

/// The producer for the dead-letter topic, and what every record's headers
/// say about where it came from.
pub struct DeadLetters {
    producer: FutureProducer,
    /// `Topic::DeadLetters` of the consumed topic (`KafkaArgs::dlq_topic`).
    topic: String,
    /// The consumer group, for the `dlq_consumer_group` header.
    group: String,
    metrics: Metrics,
}

impl DeadLetters {
    /// An idempotent producer that waits for every replica: a dead letter
    /// must not be lost once the checkpoint has passed its record.
    pub fn new(
        mut client: ClientConfig,
        topic: String,
        group: String,
        metrics: Metrics,
    ) -> KafkaResult<Self> {
        let producer = client
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()?;
        Ok(Self {
            producer,
            topic,
            group,
            metrics,
        })
    }

    /// A client of the cluster for metadata and watermark requests.
    pub fn client(&self) -> &Client<impl ClientContext> {
        self.producer.client()
    }

    /// Sends one record to the DLQ and waits for the acknowledgement, so the
    /// checkpoint never moves past a record that is neither applied nor
    /// dead-lettered. Blocking: `rt` runs the send.
    pub fn send(&self, rt: &Handle, r: &Rejected) -> KafkaResult<()> {
        let rec = &r.record;
        let headers = self.headers(r);
        let mut record = FutureRecord::to(&self.topic).headers(headers);
        if let Some(p) = &rec.payload {
            record = record.payload(p);
        }
        if let Some(k) = &rec.key {
            record = record.key(k);
        }
        rt.block_on(self.producer.send(record, Duration::from_secs(30)))
            .map_err(|(e, _)| e)?;
        self.metrics
            .dlq
            .with_label_values(&[r.reason.class()])
            .inc();
        tracing::warn!(partition = rec.partition, offset = rec.offset, reason = %r.reason, "record sent to the dead-letter topic");
        Ok(())
    }

    /// Why the record is here (`dlq_reason`, `dlq_reason_class`), where it
    /// came from, when, which group sent it, and its trace
    /// (`ce_traceparent`, when the record had a well-formed one).
    fn headers(&self, r: &Rejected) -> OwnedHeaders {
        let rec = &r.record;
        let values = [
            ("dlq_reason", r.reason.to_string()),
            ("dlq_reason_class", r.reason.class().to_owned()),
            ("dlq_original_topic", rec.topic.clone()),
            ("dlq_original_partition", rec.partition.to_string()),
            ("dlq_original_offset", rec.offset.to_string()),
            ("dlq_time", chrono::Utc::now().to_rfc3339()),
            ("dlq_consumer_group", self.group.clone()),
        ];
        let mut headers = OwnedHeaders::new();
        for (key, value) in &values {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        // The trace the refused record belonged to, so whoever reads the DLQ
        // can follow it back to the request that sent it.
        if let Some(traceparent) = &rec.traceparent {
            let value = traceparent.to_string();
            headers = headers.insert(Header {
                key: vibemon_schemas::event::TRACEPARENT_HEADER,
                value: Some(value.as_bytes()),
            });
        }
        headers
    }
}

/// How many records may go to the DLQ in a row before the projector stops.
#[derive(Debug)]
pub struct Limit {
    /// `--dlq-max-consecutive`.
    max: u64,
    /// Invalid records in a row, across batches.
    invalid: u64,
    /// Records Postgres refused since a batch last applied an event: a
    /// schema or migration problem refuses every record, one batch after
    /// another, and must stop the projector rather than empty the read model
    /// into the DLQ.
    refused: u64,
}

/// Too many records for the DLQ in a row: the projector stops on it.
#[derive(Debug, thiserror::Error)]
pub enum LimitExceeded {
    #[error("{0} invalid records in a row (limit {1}): refusing to drain a bad producer into the DLQ; fix the producer or raise --dlq-max-consecutive")]
    Invalid(u64, u64),
    #[error("{0} records were refused by Postgres with no event applied in between (limit {1}): that looks like a schema or migration problem, not bad records; fix it or raise --dlq-max-consecutive")]
    Refused(u64, u64),
}

impl Limit {
    pub fn new(max: u64) -> Self {
        Self {
            max,
            invalid: 0,
            refused: 0,
        }
    }

    /// Counts a batch's records, valid or not in arrival order; fails when
    /// the longest run of invalid ones (continuing the previous batch's)
    /// is over the limit.
    pub fn check_invalid(&mut self, validity: &[bool]) -> Result<(), LimitExceeded> {
        let mut longest = self.invalid;
        for valid in validity {
            self.invalid = if *valid { 0 } else { self.invalid + 1 };
            longest = longest.max(self.invalid);
        }
        if longest > self.max {
            return Err(LimitExceeded::Invalid(longest, self.max));
        }
        Ok(())
    }

    /// Counts `count` more records refused by Postgres.
    pub fn refused(&mut self, count: u64) -> Result<(), LimitExceeded> {
        self.refused += count;
        if self.refused > self.max {
            return Err(LimitExceeded::Refused(self.refused, self.max));
        }
        Ok(())
    }

    /// A batch applied an event: Postgres takes records again.
    pub fn applied(&mut self) {
        self.refused = 0;
    }
}
