//! Kafka for tests: a fresh topic per test ([`TestTopic`]), and what is on
//! it and read back ([`read_topic`]); [`crate::ledger`] counts what it holds.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use uuid::Uuid;
use vibemon_runtime::watermarks::{self, PartitionRange, TopicError};
use vibemon_schemas::Topic;

/// The local stack's brokers.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

pub(crate) fn admin_client(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client")
}

/// A topic of its own (and its dead-letter topic), deleted when this is dropped.
pub struct TestTopic {
    pub name: String,
    pub brokers: String,
    pub partitions: i32,
}

impl TestTopic {
    /// A new topic with `partitions` partitions, plus its dead-letter topic.
    pub async fn new(partitions: i32) -> Self {
        Self::on(&kafka_brokers(), partitions).await
    }

    /// The same on a given cluster (a private broker of a fault test).
    pub async fn on(brokers: &str, partitions: i32) -> Self {
        Self::replicated(brokers, partitions, 1).await
    }

    /// The same with `replication` replicas (min ISR comes from the cluster).
    pub async fn replicated(brokers: &str, partitions: i32, replication: i32) -> Self {
        let name = format!("test-{}", Uuid::new_v4().simple());
        let dlq = Topic::DeadLetters.name(&name);
        let admin = admin_client(brokers);
        let topics = [
            NewTopic::new(&name, partitions, TopicReplication::Fixed(replication)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(replication)),
        ];
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        for result in admin
            .create_topics(&topics, &opts)
            .await
            .expect("create topics")
        {
            result.expect("topic created");
        }
        Self {
            name,
            brokers: brokers.to_owned(),
            partitions,
        }
    }
}

impl TestTopic {
    /// This topic's dead-letter topic, named as the projector names it.
    pub fn dlq(&self) -> String {
        Topic::DeadLetters.name(&self.name)
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        let (brokers, name) = (self.brokers.clone(), self.name.clone());
        crate::cleanup::on_own_thread(move || async move {
            let admin = admin_client(&brokers);
            let dlq = Topic::DeadLetters.name(&name);
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                admin.delete_topics(&[&name, &dlq], &opts),
            )
            .await;
        });
    }
}

/// One record read back from a test topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl ReadRecord {
    /// A copy of what a consumer received.
    pub fn of(m: &impl Message) -> Self {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }
}

/// A consumer of a group of its own that never commits, for reading back.
pub(crate) fn reader(brokers: &str, group_prefix: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("{group_prefix}-{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Reads records of `topic` from the beginning until `want` were seen or
/// `timeout` passed; returns what it saw (so a test can assert "exactly n").
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Vec<ReadRecord> {
    let consumer = reader(brokers, "test-reader");
    let (owned_brokers, owned_topic) = (brokers.to_owned(), topic.to_owned());
    let ids = tokio::task::spawn_blocking(move || partition_ids(&owned_brokers, &owned_topic))
        .await
        .expect("the metadata request did not panic");
    let mut tpl = TopicPartitionList::new();
    for p in ids {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < want {
        let Ok(msg) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        out.push(ReadRecord::of(&msg.expect("kafka message")));
    }
    out
}

/// A client for metadata and watermark requests.
fn metadata_client(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-counter")
        .create()
        .expect("consumer")
}

/// Asks `ask` until the brokers answer for `topic`. A topic they do not know
/// has no partitions (and so no records); an error they report for it (a
/// leader not elected yet, just after creation) is asked again for up to
/// 10 s; a broker that still cannot answer fails the test.
fn or_none<T>(topic: &str, ask: impl Fn() -> Result<Vec<T>, TopicError>) -> Vec<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match ask() {
            Ok(found) => return found,
            Err(TopicError::Missing(_)) => return Vec::new(),
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("partitions of {topic}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The partition ids of `topic`, through [`vibemon_runtime::watermarks`].
/// Blocks on the network.
pub fn partition_ids(brokers: &str, topic: &str) -> Vec<i32> {
    let client = metadata_client(brokers);
    or_none(topic, || {
        watermarks::partitions(client.client(), topic, Duration::from_secs(10))
    })
}

/// Every partition of `topic` with its watermarks, through
/// [`vibemon_runtime::watermarks`]. Blocks on the network.
pub fn partition_ranges(brokers: &str, topic: &str) -> Vec<PartitionRange> {
    let client = metadata_client(brokers);
    or_none(topic, || {
        watermarks::watermarks(client.client(), topic, Duration::from_secs(10))
    })
}
