//! The consume loop: a consumer-group member that batches records, writes
//! each batch and its checkpoints in one transaction, and hands partitions
//! over cleanly.
//!
//! It runs on a dedicated, named thread with a `BaseConsumer`, because
//! librdkafka's rebalance callback runs inside `poll` and must do blocking
//! work there:
//! - on assignment, it reads the checkpoints from Postgres, checks them
//!   against the topic ([`crate::topic_check`]) and starts each partition at
//!   its stored next offset (the beginning when there is none);
//! - on revocation, it writes the in-flight batch before letting go.
//!
//! Records that cannot be applied go to [`crate::dead_letters`]. Postgres,
//! not Kafka, holds the truth. Kafka's committed offsets are also updated
//! after each batch, for lag tooling only.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientConfig, ClientContext};
use sqlx::PgPool;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::batch::{Prepared, Record, RejectReason, Rejected};
use crate::dead_letters::{DeadLetters, Limit, LimitExceeded};
use crate::metrics::Metrics;
use crate::retry::backoff;
use crate::topic_check::{self, Mismatch, Refusal};
use crate::writer;
use vibemon_runtime::watermarks::{watermarks, TopicError};
use vibemon_schemas::event::TraceParent;
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
    /// Too many records for the dead-letter topic in a row.
    #[error(transparent)]
    DlqLimit(#[from] LimitExceeded),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("stopped before the batch could be written: {0}")]
    Interrupted(String),
    #[error("Postgres refuses the batch ({0}) but no single record of it on its own: stopping rather than skipping records")]
    Unresolvable(String),
    #[error("the consumer's position went out of range ({0}): records were deleted or the topic was recreated while the projector ran. Rebuild the read model into an empty database with `vibemon replay`, then start the projector again")]
    OffsetReset(String),
    /// The topic is not the one the checkpoints were taken on.
    #[error(transparent)]
    CheckpointMismatch(#[from] Mismatch),
}

impl From<Refusal> for Fatal {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Mismatch(m) => Fatal::CheckpointMismatch(m),
            Refusal::Unverifiable(e) => Fatal::Kafka(e),
        }
    }
}

/// What the consume loop works with, from its caller.
pub struct Wiring {
    pub pool: PgPool,
    pub config: LoopConfig,
    pub metrics: Metrics,
    pub dead_letters: DeadLetters,
    /// Set by a signal: finish the batch, commit, leave the group.
    pub stop: Arc<AtomicBool>,
    /// False while Postgres writes fail; `/readyz` reports it.
    pub healthy: Arc<AtomicBool>,
}

/// The consume loop, running on its own thread. Dropping it (its caller's
/// future was dropped) asks the loop to stop: it finishes its batch and
/// leaves the group. The thread is not joined, so a runtime shut down at
/// that moment can fail the final write; the checkpoint then stays where it
/// was and the batch is read again.
pub struct ConsumeLoop {
    /// The loop's result, or the message it panicked with.
    done: oneshot::Receiver<Result<Result<(), Fatal>, String>>,
    stop: Arc<AtomicBool>,
}

impl Drop for ConsumeLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl ConsumeLoop {
    /// Creates the group member from `client` and starts the loop on a
    /// thread named `projector-consume`. Call it from within the Tokio
    /// runtime that is to run the loop's Postgres and Kafka futures.
    pub fn start(client: &ClientConfig, wiring: Wiring) -> anyhow::Result<Self> {
        let stop = wiring.stop.clone();
        let shared = Arc::new(Shared::new(Handle::current(), wiring));
        let consumer: BaseConsumer<ProjectorContext> = client
            .create_with_context(ProjectorContext { shared })
            .context("creating the Kafka consumer")?;
        let (sender, done) = oneshot::channel();
        // The thread ends when the loop does: when `stop` is set, or when
        // it is caught up or fails. Nothing joins it; its result (sent
        // after the consumer has left the group) is what callers wait for.
        std::thread::Builder::new()
            .name("projector-consume".into())
            .spawn(move || {
                let ended = std::panic::catch_unwind(AssertUnwindSafe(|| run(consumer)));
                let _ = sender.send(ended.map_err(panic_message));
            })
            .context("starting the consume loop's thread")?;
        Ok(Self { done, stop })
    }

    /// Waits for the loop to end, and returns why it did.
    pub async fn finished(mut self) -> anyhow::Result<()> {
        match (&mut self.done).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(panic)) => Err(anyhow::anyhow!("the consume loop panicked: {panic}")),
            Err(_) => Err(anyhow::anyhow!(
                "the consume loop's thread ended without reporting"
            )),
        }
    }
}

/// The text a panic was raised with, when it was a string.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// State shared by the loop and the rebalance callback.
struct Shared {
    rt: Handle,
    pool: PgPool,
    config: LoopConfig,
    metrics: Metrics,
    dead_letters: DeadLetters,
    stop: Arc<AtomicBool>,
    healthy: Arc<AtomicBool>,
    pending: Mutex<Vec<Record>>,
    limit: Mutex<Limit>,
    /// Next offset per partition we own: records below it were applied.
    positions: Mutex<HashMap<i32, i64>>,
    fatal: Mutex<Option<Fatal>>,
}

impl Shared {
    fn new(rt: Handle, w: Wiring) -> Self {
        Self {
            rt,
            limit: Mutex::new(Limit::new(w.config.dlq_max_consecutive)),
            pool: w.pool,
            config: w.config,
            metrics: w.metrics,
            dead_letters: w.dead_letters,
            stop: w.stop,
            healthy: w.healthy,
            pending: Mutex::default(),
            positions: Mutex::default(),
            fatal: Mutex::default(),
        }
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
                    std::thread::sleep(backoff(attempt));
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
        // The batch's log lines name the traces its records belong to.
        let span = batch_span(&prepared, count);
        let _in_batch = span.enter();
        self.limit
            .lock()
            .expect("not poisoned")
            .check_invalid(&prepared.validity)?;
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
        drop(positions);
        self.observe(count, applied, started);
        Ok(prepared.next_offsets)
    }

    /// Counts a committed batch of `count` records in the metrics and logs.
    fn observe(&self, count: usize, applied: writer::Applied, started: Instant) {
        let m = &self.metrics;
        m.records.inc_by(count as u64);
        m.events_projected.inc_by(applied.new_events as u64);
        m.duplicates.inc_by(applied.duplicates as u64);
        m.idempotency_conflicts.inc_by(applied.conflicts as u64);
        m.batch_size.observe(count as f64);
        m.batch_seconds.observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            records = count,
            new = applied.new_events,
            dup = applied.duplicates,
            "batch committed"
        );
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
                        self.limit.lock().expect("not poisoned").applied();
                    }
                    return Ok(applied);
                }
                Err(e) if writer::is_permanent(&e) => {
                    tracing::warn!(error = %e, records = count, "Postgres refused the batch for a reason a retry cannot fix; bisecting it");
                    match self.bisect(prepared, attempt, e)? {
                        Some(error) => error,
                        None => continue,
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
            std::thread::sleep(backoff(attempt));
            attempt += 1;
        }
    }

    /// After Postgres refused the batch with `refusal`, dead-letters the
    /// records it refuses on their own: `None` when some were, for the rest
    /// to be written at once; otherwise the error to retry the whole on.
    fn bisect(
        &self,
        prepared: &mut Prepared,
        attempt: u32,
        refusal: sqlx::Error,
    ) -> Result<Option<sqlx::Error>, Fatal> {
        match self
            .rt
            .block_on(writer::find_rejected(&self.pool, &prepared.events))
        {
            Ok(found) if !found.is_empty() => {
                self.dead_letter_refused(prepared, found)?;
                Ok(None)
            }
            // Every part passes on its own now: whatever refused the batch
            // went away (or needs all of it). Retry the whole a few times,
            // then stop rather than skip.
            Ok(_) if attempt >= 3 => Err(Fatal::Unresolvable(refusal.to_string())),
            Ok(_) => Ok(Some(refusal)),
            Err(e) => Ok(Some(e)),
        }
    }

    /// Takes the records Postgres refused out of the batch and dead-letters
    /// them, before any checkpoint can pass them.
    fn dead_letter_refused(
        &self,
        prepared: &mut Prepared,
        found: Vec<(usize, String)>,
    ) -> Result<(), Fatal> {
        self.limit
            .lock()
            .expect("not poisoned")
            .refused(found.len() as u64)?;
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

    fn dead_letter(&self, rejected: &Rejected) -> Result<(), Fatal> {
        Ok(self.dead_letters.send(&self.rt, rejected)?)
    }

    fn record_fatal(&self, f: Fatal) {
        self.fatal.lock().expect("not poisoned").get_or_insert(f);
        self.stop.store(true, Ordering::Relaxed);
    }

    fn take_fatal(&self) -> Result<(), Fatal> {
        match self.fatal.lock().expect("not poisoned").take() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }
}

/// The consumer context: rebalance handling and statistics.
struct ProjectorContext {
    shared: Arc<Shared>,
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
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let Some(()) = self.assigned(tpl) else {
                    return;
                };
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoked(consumer, tpl);
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

impl ProjectorContext {
    /// Sets each assigned partition's start at its checkpoint, after
    /// checking the checkpoints against the topic. `None` when told to stop
    /// before the checkpoints could be read: the assignment is not applied.
    fn assigned(&self, tpl: &mut TopicPartitionList) -> Option<()> {
        let shared = &self.shared;
        let checkpoints = shared.load_checkpoints()?;
        let client = shared.dead_letters.client();
        if let Err(refusal) = topic_check::check(client, &shared.config.probe, tpl, &checkpoints) {
            let f = Fatal::from(refusal);
            tracing::error!(error = %f, "refusing to consume from a topic that does not match the checkpoints");
            shared.record_fatal(f);
        }
        let mut positions = shared.positions.lock().expect("not poisoned");
        for elem in tpl.elements() {
            let start = checkpoints.get(&elem.partition()).map(|p| p.next);
            positions.insert(elem.partition(), start.unwrap_or(0));
        }
        drop(positions);
        let partitions = partitions_of(tpl);
        for p in &partitions {
            let offset = checkpoints
                .get(p)
                .map_or(Offset::Beginning, |o| Offset::Offset(o.next));
            let _ = tpl.set_partition_offset(&shared.config.topic, *p, offset);
        }
        tracing::info!(
            ?partitions,
            ?checkpoints,
            "partitions assigned; starting at the stored checkpoints"
        );
        Some(())
    }

    /// Writes the in-flight batch before the partitions go, unless they are
    /// already lost, and forgets their positions.
    fn revoked(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let shared = &self.shared;
        let partitions = partitions_of(tpl);
        if consumer.assignment_lost() {
            // Another member may already own these partitions and be
            // writing them: writing our batch now could only race it.
            // The records stay below the checkpoint for the new owner.
            let dropped = std::mem::take(&mut *shared.pending.lock().expect("not poisoned"));
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
            match shared.flush() {
                Ok(offsets) => commit_to_kafka(consumer, &offsets),
                Err(f) => shared.record_fatal(f),
            }
        }
        let mut positions = shared.positions.lock().expect("not poisoned");
        for p in &partitions {
            positions.remove(p);
        }
    }
}

/// Most trace ids a batch's log lines list; the rest are counted.
const LOGGED_TRACE_IDS: usize = 16;

/// The span of one batch, from decoding to the commit: `trace_ids` lists
/// the distinct traces of its records (the first [`LOGGED_TRACE_IDS`]), so a
/// trace id found in Jaeger or ingest's logs finds the batch's lines too.
fn batch_span(prepared: &Prepared, records: usize) -> tracing::Span {
    let mut ids: Vec<String> = Vec::new();
    let mut more = 0;
    for l in &prepared.events {
        let Some(t) = l.traceparent else { continue };
        let id = t.trace_id_hex();
        if ids.contains(&id) {
            continue;
        }
        if ids.len() < LOGGED_TRACE_IDS {
            ids.push(id);
        } else {
            more += 1;
        }
    }
    let mut trace_ids = ids.join(",");
    if more > 0 {
        trace_ids.push_str(&format!(",+{more} more"));
    }
    tracing::info_span!("batch", records, trace_ids = %trace_ids)
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// The request fingerprint ingest put on a record, if any.
fn request_fingerprint(m: &BorrowedMessage<'_>) -> Option<String> {
    header(m, vibemon_schemas::event::REQUEST_FINGERPRINT_HEADER).map(str::to_owned)
}

/// The record's `ce_traceparent`, if well formed: a record from another
/// producer may carry anything, and a bad one only loses its trace.
fn traceparent(m: &BorrowedMessage<'_>) -> Option<TraceParent> {
    header(m, vibemon_schemas::event::TRACEPARENT_HEADER).and_then(TraceParent::parse)
}

/// A header's value as UTF-8, if the record has it.
fn header<'m>(m: &'m BorrowedMessage<'_>, name: &str) -> Option<&'m str> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
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

/// Runs the loop until stopped (or caught up); blocking, hence its own
/// thread.
fn run(consumer: BaseConsumer<ProjectorContext>) -> Result<(), Fatal> {
    let shared = consumer.context().shared.clone();
    let config = &shared.config;
    consumer.subscribe(&[&config.topic])?;
    let targets = if config.until_caught_up {
        Some(high_watermarks(&consumer, &config.topic)?)
    } else {
        None
    };
    let mut oldest: Option<Instant> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        if !poll_once(&consumer, &shared, &mut oldest)? {
            continue;
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
    shared.take_fatal()?;
    // Leaving the group triggers a final revoke, which flushes nothing more.
    consumer.unsubscribe();
    shared.take_fatal()
}

/// Polls once and adds what came to the pending batch, writing the batch
/// when it is full or the queue ran dry. `oldest` is when the pending
/// batch's first record came. False when the record was one already applied
/// (below its partition's checkpoint) and was skipped.
fn poll_once(
    consumer: &BaseConsumer<ProjectorContext>,
    shared: &Shared,
    oldest: &mut Option<Instant>,
) -> Result<bool, Fatal> {
    let config = &shared.config;
    // With a batch pending, wait only briefly for more: once the queue
    // stays dry for `batch_idle`, the batch is written. Under load, records
    // queue up while a batch is written, so batches grow by themselves (to
    // --batch-max while catching up); when live and quiet, a record waits
    // `batch_idle`, not a whole linger.
    let wait = match oldest {
        Some(t) => config
            .batch_idle
            .min(config.batch_linger.saturating_sub(t.elapsed())),
        None => Duration::from_millis(100),
    };
    let polled = consumer.poll(wait);
    if polled.is_none() && oldest.is_some() {
        flush_and_commit(consumer, shared)?;
        *oldest = None;
    }
    match polled {
        None => {}
        Some(Ok(m)) => {
            let Some(len) = shared.add(&m) else {
                return Ok(false);
            };
            oldest.get_or_insert_with(Instant::now);
            if len >= config.batch_max {
                flush_and_commit(consumer, shared)?;
                *oldest = None;
            }
        }
        Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset))) => {
            let reason = "auto offset reset".to_owned();
            shared.record_fatal(Fatal::OffsetReset(reason));
        }
        Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
    }
    Ok(true)
}

impl Shared {
    /// Adds a polled record to the pending batch and returns the batch's
    /// size; `None` when the record was applied before (below its
    /// partition's position) and is skipped.
    fn add(&self, m: &BorrowedMessage<'_>) -> Option<usize> {
        let applied_below = self
            .positions
            .lock()
            .expect("not poisoned")
            .get(&m.partition())
            .copied();
        if applied_below.is_some_and(|next| m.offset() < next) {
            return None;
        }
        let record = Record {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            payload: m.payload().map(<[u8]>::to_vec),
            key: m.key().map(<[u8]>::to_vec),
            fingerprint: request_fingerprint(m),
            traceparent: traceparent(m),
        };
        let mut pending = self.pending.lock().expect("not poisoned");
        pending.push(record);
        Some(pending.len())
    }
}

fn flush_and_commit(
    consumer: &BaseConsumer<ProjectorContext>,
    shared: &Shared,
) -> Result<(), Fatal> {
    shared.take_fatal()?;
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
