//! Checks, on assignment, that the topic is still the one this database's
//! checkpoints were taken on.
//!
//! A checkpoint beyond the partition's end, or before its start, means the
//! topic is not the one this database was projected from (recreated,
//! truncated, restored). So does a record before the checkpoint that is not
//! the one this database applied last (a topic recreated and filled again
//! past the checkpoint). Consuming on would silently skip records, so the
//! consume loop stops and says what to do. A check that cannot be made
//! (Kafka does not answer) is retried, then stops the projector too: it
//! fails closed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use vibemon_runtime::watermarks::{range, PartitionRange};
use vibemon_store::checkpoints::Position;

use crate::batch::record_digest;
use crate::retry::backoff;

/// The topic does not match a checkpoint: the projector must not consume it.
#[derive(Debug, thiserror::Error)]
#[error("{topic}[{partition}]: the checkpoint is at offset {checkpoint}, {problem}. The topic was recreated, truncated or restored from elsewhere, so its offsets no longer match what this database applied. Rebuild the read model into an empty database with `vibemon replay`, or, if you are sure, delete this group's rows from projector_checkpoints; then start the projector again")]
pub struct Mismatch {
    pub topic: String,
    pub partition: i32,
    pub checkpoint: i64,
    pub problem: String,
}

/// Why the check did not pass.
#[derive(Debug)]
pub enum Refusal {
    /// The topic does not match a checkpoint.
    Mismatch(Mismatch),
    /// Kafka did not answer, after retries.
    Unverifiable(KafkaError),
}

/// A record that must be the one this database applied last: its
/// partition, offset and expected digest.
struct Expected {
    topic: String,
    partition: i32,
    offset: i64,
    digest: String,
}

/// Checks every assigned partition that has a checkpoint; retries what
/// Kafka could not answer a few times. `client` asks for watermarks; `probe`
/// configures the consumer that reads back the records before checkpoints.
pub fn check<C: ClientContext>(
    client: &Client<C>,
    probe: &ClientConfig,
    tpl: &TopicPartitionList,
    checkpoints: &HashMap<i32, Position>,
) -> Result<(), Refusal> {
    let mut attempt = 0;
    loop {
        match try_check(client, probe, tpl, checkpoints) {
            Err(Refusal::Unverifiable(e)) if attempt < 3 => {
                tracing::warn!(error = %e, attempt, "cannot check the checkpoints against the topic yet; retrying");
                std::thread::sleep(backoff(attempt));
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// One try of [`check`].
fn try_check<C: ClientContext>(
    client: &Client<C>,
    probe: &ClientConfig,
    tpl: &TopicPartitionList,
    checkpoints: &HashMap<i32, Position>,
) -> Result<(), Refusal> {
    let mut to_read = Vec::new();
    for elem in tpl.elements() {
        let Some(position) = checkpoints.get(&elem.partition()) else {
            continue;
        };
        let (topic, partition) = (elem.topic(), elem.partition());
        // Only the partitions assigned here: one another instance owns must
        // not stop this one by failing to answer.
        let range = range(client, topic, partition, Duration::from_secs(10))
            .map_err(Refusal::Unverifiable)?;
        if let Some(expected) = within(topic, &range, position)? {
            to_read.push(expected);
        }
    }
    if to_read.is_empty() {
        return Ok(());
    }
    let found = read_digests(probe, &to_read).map_err(Refusal::Unverifiable)?;
    for expected in to_read {
        compare(&found, expected)?;
    }
    Ok(())
}

/// Whether the checkpoint lies within the partition's range of offsets;
/// if so, the record before it to compare, when there is one to compare.
fn within(
    topic: &str,
    range: &PartitionRange,
    position: &Position,
) -> Result<Option<Expected>, Refusal> {
    let (low, high, checkpoint) = (range.low, range.high, position.next);
    let mismatch = |problem: String| {
        Refusal::Mismatch(Mismatch {
            topic: topic.to_owned(),
            partition: range.partition,
            checkpoint,
            problem,
        })
    };
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
    let Some(digest) = &position.last_record else {
        return Ok(None);
    };
    Ok((checkpoint > low).then(|| Expected {
        topic: topic.to_owned(),
        partition: range.partition,
        offset: checkpoint - 1,
        digest: digest.clone(),
    }))
}

/// Whether the record read back is the one this database applied.
fn compare(found: &HashMap<i32, String>, expected: Expected) -> Result<(), Refusal> {
    let Some(got) = found.get(&expected.partition) else {
        // `read_digests` answers for every partition it was asked about or
        // fails; should that ever change, this retries rather than passes.
        return Err(Refusal::Unverifiable(KafkaError::MessageConsumption(
            RDKafkaErrorCode::UnknownPartition,
        )));
    };
    if *got == expected.digest {
        return Ok(());
    }
    let Expected {
        topic,
        partition,
        offset,
        digest,
    } = expected;
    Err(Refusal::Mismatch(Mismatch {
        topic,
        partition,
        checkpoint: offset + 1,
        problem: format!("but the record at offset {offset} is not the one this database applied there (its value is {got}, the applied one was {digest})"),
    }))
}

/// `record_digest` of the record at each expected (partition, offset), read
/// by one short-lived consumer outside the group.
fn read_digests(
    probe: &ClientConfig,
    wanted: &[Expected],
) -> Result<HashMap<i32, String>, KafkaError> {
    let mut config = probe.clone();
    config
        .set("group.id", "vibemon-projector-probe")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "error");
    let probe: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    for w in wanted {
        tpl.add_partition_offset(&w.topic, w.partition, Offset::Offset(w.offset))?;
    }
    probe.assign(&tpl)?;
    let mut found = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while found.len() < wanted.len() {
        if Instant::now() >= deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::RequestTimedOut,
            ));
        }
        match probe.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let want = wanted.iter().find(|w| w.partition == m.partition());
                if want.is_some_and(|w| w.offset == m.offset()) {
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
