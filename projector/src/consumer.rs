//! The consume loop: a consumer-group member that batches records, writes
//! each batch and its checkpoints in one transaction, and hands partitions
//! over cleanly.
//!
//! It runs on a dedicated thread with a `BaseConsumer`, because librdkafka's
//! rebalance callback runs inside `poll` and must do blocking work there:
//! - on assignment, it reads the checkpoints from Postgres and starts each
//!   partition at its stored next offset (the beginning when there is none);
//! - on revocation, it writes the in-flight batch before letting go.
//!
//! Postgres, not Kafka, holds the truth. Kafka's committed offsets are also
//! updated after each batch, for lag tooling only.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::ClientContext;
use sqlx::PgPool;
use tokio::runtime::Handle;

use crate::batch::{record_digest, Prepared, Record, RejectReason, Rejected};
use crate::metrics::Metrics;
use crate::writer;
use vibemon_runtime::watermarks::{watermarks, TopicError};
use vibemon_store::checkpoints::{self, Position};

/// Knobs of the consume loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub group: String,
    pub topic: String,
    pub dlq_topic: String,
    /// Write a batch when it holds this many records...
    pub batch_max: usize,
    /// ...or when its oldest record has waited this long...
    pub batch_linger: Duration,
    /// ...or when no record has come for this long.
    pub batch_idle: Duration,
    /// Transactions a batch is written in at once, by partition.
    pub writers: usize,
    /// Stop (loudly, exit non-zero) after this many invalid records in a row:
    /// a bad producer deploy should page someone, not drain into the DLQ.
    pub dlq_max_consecutive: u64,
    /// Exit once every partition has reached the high watermark it had at
    /// start (replays, benchmarks); otherwise run until stopped.
    pub until_caught_up: bool,
    /// Apply only this workspace's events (replays of one workspace).
    pub only_workspace: Option<uuid::Uuid>,
    /// Kafka client settings for the consumer that reads back the record
    /// before a checkpoint on assignment.
    pub probe: rdkafka::ClientConfig,
}

/// Why the loop stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    #[error("{0} invalid records in a row (limit {1}): refusing to drain a bad producer into the DLQ; fix the producer or raise --dlq-max-consecutive")]
    DlqLimit(u64, u64),
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("stopped before the batch could be written: {0}")]
    Interrupted(String),
    #[error("{0} records were refused by Postgres with no event applied in between (limit {1}): that looks like a schema or migration problem, not bad records; fix it or raise --dlq-max-consecutive")]
    TooManyRejected(u64, u64),
    #[error("Postgres refuses the batch ({0}) but no single record of it on its own: stopping rather than skipping records")]
    Unresolvable(String),
    #[error("the consumer's position went out of range ({0}): records were deleted or the topic was recreated while the projector ran. Rebuild the read model into an empty database with `vibemon replay`, then start the projector again")]
    OffsetReset(String),
    #[error("{topic}[{partition}]: the checkpoint is at offset {checkpoint}, {problem}. The topic was recreated, truncated or restored from elsewhere, so its offsets no longer match what this database applied. Rebuild the read model into an empty database with `vibemon replay`, or, if you are sure, delete this group's rows from projector_checkpoints; then start the projector again")]
    CheckpointMismatch {
        topic: String,
        partition: i32,
        checkpoint: i64,
        problem: String,
    },
}

/// State shared by the loop and the rebalance callback.
pub struct Shared {
    pub rt: Handle,
    pub pool: PgPool,
    pub config: LoopConfig,
    pub metrics: Metrics,
    pub dlq: FutureProducer,
    /// Set by a signal: finish the batch, commit, leave the group.
    pub stop: Arc<AtomicBool>,
    /// False while Postgres writes fail; `/readyz` reports it.
    pub healthy: Arc<AtomicBool>,
    pending: Mutex<Vec<Record>>,
    consecutive_invalid: Mutex<u64>,
    /// Records Postgres refused since a batch last applied an event: a
    /// schema or migration problem refuses every record, one batch after
    /// another, and must stop the projector rather than empty the read model
    /// into the DLQ.
    consecutive_refused: Mutex<u64>,
    /// Next offset per partition we own: records below it were applied.
    positions: Mutex<HashMap<i32, i64>>,
    fatal: Mutex<Option<Fatal>>,
}

impl Shared {
    pub fn new(
        rt: Handle,
        pool: PgPool,
        config: LoopConfig,
        metrics: Metrics,
        dlq: FutureProducer,
        stop: Arc<AtomicBool>,
        healthy: Arc<AtomicBool>,
    ) -> Self {
        Self {
            rt,
            pool,
            config,
            metrics,
            dlq,
            stop,
            healthy,
            pending: Mutex::default(),
            consecutive_invalid: Mutex::default(),
            consecutive_refused: Mutex::default(),
            positions: Mutex::default(),
            fatal: Mutex::default(),
        }
    }

    fn backoff(attempt: u32) -> Duration {
        let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
        Duration::from_millis(base + rand::rng().random_range(0..=base / 2))
    }

    /// Checkpoints of our group, retried until Postgres answers (we cannot
    /// consume correctly without them) or we are told to stop.
    fn load_checkpoints(&self) -> Option<HashMap<i32, Position>> {
        let mut attempt = 0;
        loop {
            match self.rt.block_on(checkpoints::load(
                &self.pool,
                &self.config.group,
                &self.config.topic,
            )) {
                Ok(c) => return Some(c),
                Err(e) => {
                    self.healthy.store(false, Ordering::Relaxed);
                    self.metrics.pg_retries.inc();
                    tracing::warn!(error = %e, attempt, "cannot read checkpoints; retrying");
                    if self.stop.load(Ordering::Relaxed) {
                        return None;
                    }
                    std::thread::sleep(Self::backoff(attempt));
                    attempt += 1;
                }
            }
        }
    }

    /// Writes the pending batch. Returns the offsets to commit to Kafka.
    fn flush(&self) -> Result<BTreeMap<(String, i32), Position>, Fatal> {
        let records = std::mem::take(&mut *self.pending.lock().expect("not poisoned"));
        if records.is_empty() {
            return Ok(BTreeMap::new());
        }
        let started = Instant::now();
        let count = records.len();
        let mut prepared = Prepared::from_records(records, self.config.only_workspace);
        self.check_dlq_limit(&prepared)?;
        for rejected in &prepared.rejected {
            self.dead_letter(rejected)?;
        }
        let applied = self.write(&mut prepared, count)?;
        self.healthy.store(true, Ordering::Relaxed);
        let mut positions = self.positions.lock().expect("not poisoned");
        for ((topic, partition), position) in &prepared.next_offsets {
            positions.insert(*partition, position.next);
            self.metrics
                .checkpoint
                .with_label_values(&[topic, &partition.to_string()])
                .set(position.next);
        }
        self.metrics.records.inc_by(count as u64);
        self.metrics
            .events_projected
            .inc_by(applied.new_events as u64);
        self.metrics.duplicates.inc_by(applied.duplicates as u64);
        self.metrics
            .idempotency_conflicts
            .inc_by(applied.conflicts as u64);
        self.metrics.batch_size.observe(count as f64);
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            records = count,
            new = applied.new_events,
            dup = applied.duplicates,
            "batch committed"
        );
        Ok(prepared.next_offsets)
    }

    /// Writes the batch and its checkpoints, retrying what may pass on a
    /// retry. When Postgres refuses the batch for a reason no retry can fix,
    /// the batch is bisected down to the records it refuses; those go to the
    /// DLQ with Postgres's reason and the rest is written.
    fn write(&self, prepared: &mut Prepared, count: usize) -> Result<writer::Applied, Fatal> {
        let mut attempt = 0;
        loop {
            let error = match self.rt.block_on(writer::write_partitioned(
                &self.pool,
                &self.config.group,
                &prepared.events,
                &prepared.next_offsets,
                self.config.writers,
            )) {
                Ok(applied) => {
                    if applied.new_events > 0 {
                        *self.consecutive_refused.lock().expect("not poisoned") = 0;
                    }
                    return Ok(applied);
                }
                Err(e) if writer::is_permanent(&e) => {
                    tracing::warn!(error = %e, records = count, "Postgres refused the batch for a reason a retry cannot fix; bisecting it");
                    match self
                        .rt
                        .block_on(writer::find_rejected(&self.pool, &prepared.events))
                    {
                        Ok(found) if !found.is_empty() => {
                            self.dead_letter_refused(prepared, found)?;
                            continue;
                        }
                        // Every part passes on its own now: whatever refused
                        // the batch went away (or needs all of it). Retry the
                        // whole a few times, then stop rather than skip.
                        Ok(_) if attempt >= 3 => return Err(Fatal::Unresolvable(e.to_string())),
                        Ok(_) => e,
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            self.healthy.store(false, Ordering::Relaxed);
            self.metrics.pg_retries.inc();
            tracing::warn!(error = %error, attempt, records = count, "batch write failed; retrying the same batch");
            if self.stop.load(Ordering::Relaxed) && attempt >= 3 {
                return Err(Fatal::Interrupted(error.to_string()));
            }
            std::thread::sleep(Self::backoff(attempt));
            attempt += 1;
        }
    }

    /// Takes the records Postgres refused out of the batch and dead-letters
    /// them, before any checkpoint can pass them.
    fn dead_letter_refused(
        &self,
        prepared: &mut Prepared,
        found: Vec<(usize, String)>,
    ) -> Result<(), Fatal> {
        let mut refused = self.consecutive_refused.lock().expect("not poisoned");
        *refused += found.len() as u64;
        if *refused > self.config.dlq_max_consecutive {
            return Err(Fatal::TooManyRejected(
                *refused,
                self.config.dlq_max_consecutive,
            ));
        }
        drop(refused);
        let indexes: Vec<usize> = found.iter().map(|(i, _)| *i).collect();
        let records = prepared.remove_events(&indexes);
        for (record, (_, message)) in records.into_iter().zip(found) {
            self.dead_letter(&Rejected {
                record,
                reason: RejectReason::Postgres { message },
            })?;
        }
        Ok(())
    }

    fn check_dlq_limit(&self, prepared: &Prepared) -> Result<(), Fatal> {
        let mut run = self.consecutive_invalid.lock().expect("not poisoned");
        let mut longest = *run;
        for valid in &prepared.validity {
            *run = if *valid { 0 } else { *run + 1 };
            longest = longest.max(*run);
        }
        if longest > self.config.dlq_max_consecutive {
            return Err(Fatal::DlqLimit(longest, self.config.dlq_max_consecutive));
        }
        Ok(())
    }

    /// Sends one record to the DLQ and waits for the acknowledgement, so the
    /// checkpoint never moves past a record that is neither applied nor
    /// dead-lettered.
    fn dead_letter(&self, r: &Rejected) -> Result<(), Fatal> {
        let rec = &r.record;
        let reason = r.reason.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlq_reason",
                value: Some(reason.as_bytes()),
            })
            .insert(Header {
                key: "dlq_reason_class",
                value: Some(r.reason.class().as_bytes()),
            })
            .insert(Header {
                key: "dlq_original_topic",
                value: Some(rec.topic.as_bytes()),
            })
            .insert(Header {
                key: "dlq_original_partition",
                value: Some(rec.partition.to_string().as_bytes()),
            })
            .insert(Header {
                key: "dlq_original_offset",
                value: Some(rec.offset.to_string().as_bytes()),
            })
            .insert(Header {
                key: "dlq_time",
                value: Some(chrono::Utc::now().to_rfc3339().as_bytes()),
            })
            .insert(Header {
                key: "dlq_consumer_group",
                value: Some(self.config.group.as_bytes()),
            });
        let mut record = FutureRecord::to(&self.config.dlq_topic).headers(headers);
        if let Some(p) = &rec.payload {
            record = record.payload(p);
        }
        if let Some(k) = &rec.key {
            record = record.key(k);
        }
        let sent = self
            .rt
            .block_on(self.dlq.send(record, Duration::from_secs(30)));
        match sent {
            Ok(_) => {
                self.metrics
                    .dlq
                    .with_label_values(&[r.reason.class()])
                    .inc();
                tracing::warn!(partition = rec.partition, offset = rec.offset, reason = %reason, "record sent to the dead-letter topic");
                Ok(())
            }
            Err((e, _)) => Err(Fatal::Kafka(e)),
        }
    }

    /// A checkpoint beyond the partition's end, or before its start, means
    /// the topic is not the one this database was projected from (recreated,
    /// truncated, restored). So does a record before the checkpoint that is
    /// not the one this database applied last (a topic recreated and filled
    /// again past the checkpoint). Consuming on would silently skip records;
    /// stop and say what to do. A check that cannot be made (Kafka does not
    /// answer) is retried, then stops the projector too: it fails closed.
    fn check_checkpoints(
        &self,
        tpl: &TopicPartitionList,
        checkpoints: &HashMap<i32, Position>,
    ) -> Result<(), Fatal> {
        let mut attempt = 0;
        loop {
            match self.try_check_checkpoints(tpl, checkpoints) {
                Ok(()) => return Ok(()),
                Err(Err(mismatch)) => return Err(mismatch),
                Err(Ok(unverifiable)) if attempt >= 3 => {
                    return Err(Fatal::Kafka(unverifiable));
                }
                Err(Ok(unverifiable)) => {
                    tracing::warn!(error = %unverifiable, attempt, "cannot check the checkpoints against the topic yet; retrying");
                    std::thread::sleep(Self::backoff(attempt));
                    attempt += 1;
                }
            }
        }
    }

    /// One try: `Err(Ok(_))` when Kafka could not answer, `Err(Err(_))`
    /// when the topic does not match.
    fn try_check_checkpoints(
        &self,
        tpl: &TopicPartitionList,
        checkpoints: &HashMap<i32, Position>,
    ) -> Result<(), Result<rdkafka::error::KafkaError, Fatal>> {
        let mut to_read = Vec::new();
        for elem in tpl.elements() {
            let Some(position) = checkpoints.get(&elem.partition()) else {
                continue;
            };
            let (topic, partition, checkpoint) = (elem.topic(), elem.partition(), position.next);
            let mismatch = |problem: String| {
                Err(Fatal::CheckpointMismatch {
                    topic: topic.to_owned(),
                    partition,
                    checkpoint,
                    problem,
                })
            };
            let (low, high) = self
                .dlq
                .client()
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map_err(Ok)?;
            if checkpoint > high {
                return Err(mismatch(format!(
                    "beyond the end of the partition (high watermark {high})"
                )));
            }
            if checkpoint < low {
                return Err(mismatch(format!("before the first record still in the partition (low watermark {low}): records {checkpoint}..{low} were deleted before they were applied")));
            }
            // Checkpoints saved before digests existed, or seeded by
            // `vibemon replay --since`, have none to compare.
            if let Some(expected) = &position.last_record {
                if checkpoint > low {
                    to_read.push((
                        topic.to_owned(),
                        partition,
                        checkpoint - 1,
                        expected.clone(),
                    ));
                }
            }
        }
        if to_read.is_empty() {
            return Ok(());
        }
        let found = self.read_digests(&to_read).map_err(Ok)?;
        for (topic, partition, offset, expected) in to_read {
            let got = found
                .get(&partition)
                .expect("read_digests returns every partition");
            if *got != expected {
                return Err(Err(Fatal::CheckpointMismatch {
                    topic,
                    partition,
                    checkpoint: offset + 1,
                    problem: format!("but the record at offset {offset} is not the one this database applied there (its value is {got}, the applied one was {expected})"),
                }));
            }
        }
        Ok(())
    }

    /// `record_digest` of the record at each (partition, offset), read by one
    /// short-lived consumer outside the group.
    fn read_digests(
        &self,
        wanted: &[(String, i32, i64, String)],
    ) -> Result<HashMap<i32, String>, rdkafka::error::KafkaError> {
        let mut config = self.config.probe.clone();
        config
            .set("group.id", "vibemon-projector-probe")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "error");
        let probe: BaseConsumer = config.create()?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset, _) in wanted {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        probe.assign(&tpl)?;
        let mut found = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while found.len() < wanted.len() {
            if Instant::now() >= deadline {
                return Err(rdkafka::error::KafkaError::MessageConsumption(
                    RDKafkaErrorCode::RequestTimedOut,
                ));
            }
            match probe.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let want = wanted.iter().find(|w| w.1 == m.partition());
                    if want.is_some_and(|w| w.2 == m.offset()) {
                        found.insert(m.partition(), record_digest(m.payload()));
                    } else {
                        // Another offset first: the record is gone
                        // (compacted, or a control record); report it as
                        // "no such record" by its digest of nothing.
                        found.entry(m.partition()).or_insert_with(|| {
                            format!("(no record at the offset; read {})", m.offset())
                        });
                    }
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        Ok(found)
    }

    fn record_fatal(&self, f: Fatal) {
        self.fatal.lock().expect("not poisoned").get_or_insert(f);
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The consumer context: rebalance handling and statistics.
pub struct ProjectorContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for ProjectorContext {
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in &statistics.topics {
            for (partition, p) in &topic.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.shared
                        .metrics
                        .lag
                        .with_label_values(&[name, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for ProjectorContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result: KafkaResult<()> = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let Some(checkpoints) = self.shared.load_checkpoints() else {
                    return;
                };
                if let Err(f) = self.shared.check_checkpoints(tpl, &checkpoints) {
                    tracing::error!(error = %f, "refusing to consume from a topic that does not match the checkpoints");
                    self.shared.record_fatal(f);
                }
                let mut positions = self.shared.positions.lock().expect("not poisoned");
                for elem in tpl.elements() {
                    let start = checkpoints.get(&elem.partition()).map(|p| p.next);
                    positions.insert(elem.partition(), start.unwrap_or(0));
                }
                drop(positions);
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                for p in &partitions {
                    let offset = checkpoints
                        .get(p)
                        .map_or(Offset::Beginning, |o| Offset::Offset(o.next));
                    let _ = tpl.set_partition_offset(&self.shared.config.topic, *p, offset);
                }
                tracing::info!(
                    ?partitions,
                    ?checkpoints,
                    "partitions assigned; starting at the stored checkpoints"
                );
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                if consumer.assignment_lost() {
                    // Another member may already own these partitions and be
                    // writing them: writing our batch now could only race it.
                    // The records stay below the checkpoint for the new owner.
                    let dropped =
                        std::mem::take(&mut *self.shared.pending.lock().expect("not poisoned"));
                    tracing::warn!(
                        ?partitions,
                        dropped = dropped.len(),
                        "partitions lost (session timed out); dropping the in-flight batch unwritten"
                    );
                } else {
                    tracing::info!(
                        ?partitions,
                        "partitions revoked; committing the in-flight batch first"
                    );
                    match self.shared.flush() {
                        Ok(offsets) => commit_to_kafka(consumer, &offsets),
                        Err(f) => self.shared.record_fatal(f),
                    }
                }
                let mut positions = self.shared.positions.lock().expect("not poisoned");
                for p in &partitions {
                    positions.remove(p);
                }
                drop(positions);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                if cooperative {
                    Ok(())
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "applying the rebalance failed");
        }
    }
}

/// The request fingerprint ingest put on a record, if any.
fn request_fingerprint(m: &rdkafka::message::BorrowedMessage<'_>) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == vibemon_schemas::event::REQUEST_FINGERPRINT_HEADER)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
}

fn commit_to_kafka(
    consumer: &BaseConsumer<ProjectorContext>,
    offsets: &BTreeMap<(String, i32), Position>,
) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), position) in offsets {
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(position.next));
    }
    // Lag tooling only; Postgres holds the truth, so a failed commit is harmless.
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "Kafka offset commit failed (informational only)");
    }
}

/// Runs the loop until stopped (or caught up); blocking, so call it on a
/// dedicated thread.
pub fn run(consumer: BaseConsumer<ProjectorContext>) -> Result<(), Fatal> {
    let shared = consumer.context().shared.clone();
    let config = shared.config.clone();
    consumer.subscribe(&[&config.topic])?;
    let targets = if config.until_caught_up {
        Some(high_watermarks(&consumer, &config.topic)?)
    } else {
        None
    };
    let mut oldest: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        // With a batch pending, wait only briefly for more: once the queue
        // stays dry for `batch_idle`, the batch is written. Under load,
        // records queue up while a batch is written, so batches grow by
        // themselves (to --batch-max while catching up); when live and quiet,
        // a record waits `batch_idle`, not a whole linger.
        let wait = match oldest {
            Some(t) => config
                .batch_idle
                .min(config.batch_linger.saturating_sub(t.elapsed())),
            None => Duration::from_millis(100),
        };
        let polled = consumer.poll(wait);
        if polled.is_none() && oldest.is_some() {
            flush_and_commit(&consumer, &shared)?;
            oldest = None;
        }
        if let Some(msg) = polled {
            match msg {
                Ok(m) => {
                    let applied_below = shared
                        .positions
                        .lock()
                        .expect("not poisoned")
                        .get(&m.partition())
                        .copied();
                    if applied_below.is_some_and(|next| m.offset() < next) {
                        continue;
                    }
                    let record = Record {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        payload: m.payload().map(<[u8]>::to_vec),
                        key: m.key().map(<[u8]>::to_vec),
                        fingerprint: request_fingerprint(&m),
                    };
                    let len = {
                        let mut pending = shared.pending.lock().expect("not poisoned");
                        pending.push(record);
                        pending.len()
                    };
                    oldest.get_or_insert_with(Instant::now);
                    if len >= config.batch_max {
                        flush_and_commit(&consumer, &shared)?;
                        oldest = None;
                    }
                }
                Err(rdkafka::error::KafkaError::MessageConsumption(
                    RDKafkaErrorCode::AutoOffsetReset,
                )) => {
                    let reason = "auto offset reset".to_owned();
                    shared.record_fatal(Fatal::OffsetReset(reason));
                }
                Err(e) => tracing::warn!(error = %e, "consumer error"),
            }
        }
        if oldest.is_some_and(|t| t.elapsed() >= config.batch_linger) {
            flush_and_commit(&consumer, &shared)?;
            oldest = None;
        }
        if let Some(targets) = &targets {
            if oldest.is_none() && caught_up(&shared, targets) {
                tracing::info!("caught up with the high watermarks taken at start");
                break;
            }
        }
    }
    flush_and_commit(&consumer, &shared)?;
    if let Some(f) = shared.fatal.lock().expect("not poisoned").take() {
        return Err(f);
    }
    // Leaving the group triggers a final revoke, which flushes nothing more.
    consumer.unsubscribe();
    if let Some(f) = shared.fatal.lock().expect("not poisoned").take() {
        return Err(f);
    }
    Ok(())
}

fn flush_and_commit(
    consumer: &BaseConsumer<ProjectorContext>,
    shared: &Shared,
) -> Result<(), Fatal> {
    if let Some(f) = shared.fatal.lock().expect("not poisoned").take() {
        return Err(f);
    }
    let offsets = shared.flush()?;
    commit_to_kafka(consumer, &offsets);
    Ok(())
}

fn high_watermarks(
    consumer: &BaseConsumer<ProjectorContext>,
    topic: &str,
) -> Result<HashMap<i32, i64>, Fatal> {
    match watermarks(consumer.client(), topic, Duration::from_secs(10)) {
        Ok(ranges) => Ok(ranges.iter().map(|r| (r.partition, r.high)).collect()),
        // No topic yet: nothing to catch up with.
        Err(TopicError::Missing(_)) => Ok(HashMap::new()),
        Err(TopicError::Kafka(e)) => Err(e.into()),
    }
}

fn caught_up(shared: &Shared, targets: &HashMap<i32, i64>) -> bool {
    let positions = shared.positions.lock().expect("not poisoned");
    targets
        .iter()
        .all(|(p, high)| *high == 0 || positions.get(p).is_some_and(|pos| pos >= high))
}
