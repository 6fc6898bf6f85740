//! A topic's partitions and their watermarks, asked of the brokers.
//!
//! The projector (caught-up targets, checkpoint checks), `vibemon replay`
//! (progress, `--since`), `vibemon tail` and the test kit all need them; this
//! is the one place that asks. Both calls block on the network: from async
//! code, call them on a blocking thread.

use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// One partition's range of offsets still held by the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRange {
    pub partition: i32,
    /// The first offset still held (records below it were deleted).
    pub low: i64,
    /// The offset the next record will get.
    pub high: i64,
}

/// Why a topic's partitions could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("topic {0} not found: create it with `vibemon topics ensure`")]
    Missing(String),
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
}

/// The partition ids of `topic`, in order. A topic the brokers do not know,
/// or know with no partitions, is [`TopicError::Missing`]; any other error
/// the brokers report for it (no leader yet, say) is [`TopicError::Kafka`].
pub fn partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, TopicError> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(TopicError::Missing(topic.to_owned()));
    };
    match found.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
            return Err(TopicError::Missing(topic.to_owned()))
        }
        Some(code) => return Err(KafkaError::MetadataFetch(code).into()),
    }
    let mut ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Err(TopicError::Missing(topic.to_owned()));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// One partition's watermarks: a single offsets request, for callers that
/// know which partitions they need (an assignment) and must not depend on
/// the others answering.
pub fn range<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<PartitionRange, KafkaError> {
    let (low, high) = client.fetch_watermarks(topic, partition, timeout)?;
    Ok(PartitionRange {
        partition,
        low,
        high,
    })
}

/// Every partition of `topic` with its low and high watermarks, in partition
/// order: one metadata request, then one offsets request per partition.
pub fn watermarks<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionRange>, TopicError> {
    partitions(client, topic, timeout)?
        .into_iter()
        .map(|partition| Ok(range(client, topic, partition, timeout)?))
        .collect()
}
