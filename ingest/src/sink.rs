//! Where accepted events go: Kafka (durable, the default) or nowhere (`noop`,
//! to measure the HTTP path alone).
//!
//! The Kafka sink is one idempotent `FutureProducer` with `acks=all`. A publish
//! returns only once the broker acknowledged the record; a full queue, a
//! timeout or a broker error is an error, never a hang: `message.timeout.ms`
//! bounds every delivery (librdkafka checks it about once a second). Once a
//! record is handed over, the webhook waits for this outcome and answers with
//! it; no HTTP timeout cuts in.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use vibemon_runtime::KafkaArgs;
use vibemon_schemas::event::{REQUEST_FINGERPRINT_HEADER, TRACEPARENT_HEADER, TRACESTATE_HEADER};
use vibemon_schemas::DeploymentReported;

use crate::metrics::Metrics;
use crate::trace::RecordTrace;

/// Which sink `--sink` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// Publish to Kafka and answer 201 only after the broker acknowledged.
    Kafka,
    /// Acknowledge at once and publish nothing: for benchmarking the HTTP path.
    Noop,
}

/// Producer knobs; each has a flag and an environment variable in `Config`.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub linger_ms: u32,
    pub compression: String,
    pub queue_max_messages: u32,
    pub queue_max_kbytes: u32,
    pub message_timeout: Duration,
}

#[derive(Clone)]
pub enum Sink {
    Kafka(KafkaSink),
    Noop,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("producer queue is full")]
    QueueFull,
    #[error("not acknowledged: {0}")]
    Delivery(KafkaError),
    #[error("producer dropped the delivery")]
    Cancelled,
}

impl SinkError {
    fn reason(&self) -> &'static str {
        match self {
            SinkError::QueueFull => "queue_full",
            SinkError::Delivery(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut,
            )) => "timeout",
            SinkError::Delivery(_) => "broker",
            SinkError::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone)]
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    metrics: Metrics,
}

impl KafkaSink {
    pub fn new(
        kafka: &KafkaArgs,
        config: &ProducerConfig,
        metrics: Metrics,
    ) -> Result<Self, KafkaError> {
        let producer: FutureProducer = kafka
            .client_config("vibemon-ingest")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", config.linger_ms.to_string())
            .set("compression.type", &config.compression)
            .set(
                "queue.buffering.max.messages",
                config.queue_max_messages.to_string(),
            )
            // And at most this many KiB of them. Each queued record has one
            // publish task waiting on it; with 256 KiB bodies, 100,000 records
            // could hold gigabytes. Past either bound the queue is full: 503.
            .set(
                "queue.buffering.max.kbytes",
                config.queue_max_kbytes.to_string(),
            )
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().to_string(),
            )
            // Fail fast when the broker is away instead of buffering behind it.
            .set("socket.connection.setup.timeout.ms", "3000")
            .set("reconnect.backoff.max.ms", "1000")
            .create()?;
        Ok(Self {
            producer,
            topic: kafka.topic.clone(),
            metrics,
        })
    }

    async fn publish(
        &self,
        event: &DeploymentReported,
        fingerprint: Option<&str>,
        trace: &RecordTrace,
    ) -> Result<(), SinkError> {
        let started = Instant::now();
        let payload = event.encode();
        let key = event.partition_key();
        let headers = record_headers(event, fingerprint, trace);
        let record = FutureRecord::to(&self.topic)
            .payload(&payload)
            .key(&key)
            .headers(headers);
        let result = match self.producer.send_result(record) {
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                Err(SinkError::QueueFull)
            }
            Err((e, _)) => Err(SinkError::Delivery(e)),
            Ok(delivery) => {
                self.metrics
                    .producer_queue
                    .set(i64::from(self.producer.in_flight_count()));
                match delivery.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(SinkError::Delivery(e)),
                    Err(_) => Err(SinkError::Cancelled),
                }
            }
        };
        self.record_outcome(started, &result);
        result
    }

    /// The produce latency by outcome, and the event or its failure counted.
    fn record_outcome(&self, started: Instant, result: &Result<(), SinkError>) {
        let outcome = if result.is_ok() { "acked" } else { "failed" };
        self.metrics
            .produce_seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => self.metrics.events_published.inc(),
            Err(e) => self
                .metrics
                .produce_errors
                .with_label_values(&[e.reason()])
                .inc(),
        }
    }

    /// Can we reach the cluster and see our topic? Blocking: call from a blocking thread.
    fn topic_visible(&self, timeout: Duration) -> bool {
        vibemon_runtime::watermarks::partitions(self.producer.client(), &self.topic, timeout)
            .is_ok()
    }

    /// Waits for every queued record to be acknowledged (or time out).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "producer flush did not complete");
        }
    }
}

/// The record's headers: the CloudEvents attributes, the request's trace
/// (the distributed-tracing extension), and the body's fingerprint when the
/// request carried an `Idempotency-Key`.
fn record_headers(
    event: &DeploymentReported,
    fingerprint: Option<&str>,
    trace: &RecordTrace,
) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    for (name, value) in event.cloudevents_headers() {
        headers = headers.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    let traceparent = trace.traceparent.to_string();
    headers = headers.insert(Header {
        key: TRACEPARENT_HEADER,
        value: Some(traceparent.as_bytes()),
    });
    if let Some(tracestate) = &trace.tracestate {
        headers = headers.insert(Header {
            key: TRACESTATE_HEADER,
            value: Some(tracestate.as_bytes()),
        });
    }
    if let Some(fingerprint) = fingerprint {
        headers = headers.insert(Header {
            key: REQUEST_FINGERPRINT_HEADER,
            value: Some(fingerprint.as_bytes()),
        });
    }
    headers
}

impl Sink {
    /// Returns once the event is durable (Kafka) or at once (noop).
    /// `fingerprint` is the body's `request_fingerprint` when the request
    /// carried an `Idempotency-Key`: it goes on the record so a consumer can
    /// tell a retry through another replica from a reuse of the key.
    /// `trace` is the request's, carried on as `ce_traceparent`.
    pub async fn publish(
        &self,
        event: &DeploymentReported,
        fingerprint: Option<&str>,
        trace: &RecordTrace,
    ) -> Result<(), SinkError> {
        match self {
            Sink::Kafka(k) => k.publish(event, fingerprint, trace).await,
            Sink::Noop => Ok(()),
        }
    }

    /// For `/readyz`: is the sink able to accept writes?
    pub async fn ready(&self) -> bool {
        match self {
            Sink::Kafka(k) => {
                let k = k.clone();
                tokio::task::spawn_blocking(move || k.topic_visible(Duration::from_secs(2)))
                    .await
                    .unwrap_or(false)
            }
            Sink::Noop => true,
        }
    }

    pub fn queue_depth(&self) -> i64 {
        match self {
            Sink::Kafka(k) => i64::from(k.producer.in_flight_count()),
            Sink::Noop => 0,
        }
    }

    pub async fn flush(&self, timeout: Duration) {
        if let Sink::Kafka(k) = self {
            let k = k.clone();
            let _ = tokio::task::spawn_blocking(move || k.flush(timeout)).await;
        }
    }
}
