//! What a topic holds, counted exactly: the high watermarks, and every record
//! up to them read back by offset.
//!
//! Fault tests compare these numbers with what clients were told (201s) and
//! with what Postgres holds. A read that waits "a few hundred milliseconds"
//! cannot tell "absent" from "not read yet"; reading each partition up to the
//! high watermark taken first can, so a count of zero here means zero.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use uuid::Uuid;

use crate::topics::{admin_client, partition_ranges, reader, ReadRecord};

/// Per partition: (low watermark, high watermark). Blocks on the network.
pub fn watermarks(brokers: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    partition_ranges(brokers, topic)
        .into_iter()
        .map(|r| (r.partition, (r.low, r.high)))
        .collect()
}

/// Records on the topic: the sum over partitions of high minus low.
pub fn records_on(brokers: &str, topic: &str) -> i64 {
    watermarks(brokers, topic)
        .values()
        .map(|(low, high)| high - low)
        .sum()
}

/// Every record of `topic` below the high watermarks taken at the call, read
/// by offset. Panics if the end is not reached within `timeout`, so a short
/// read is a failure, never a smaller count.
pub async fn read_to_end(brokers: &str, topic: &str, timeout: Duration) -> Vec<ReadRecord> {
    let (b, t) = (brokers.to_owned(), topic.to_owned());
    let ends = tokio::task::spawn_blocking(move || watermarks(&b, &t))
        .await
        .expect("the watermark requests did not panic");
    let mut missing: BTreeMap<i32, (i64, i64)> = ends
        .iter()
        .filter(|(_, (low, high))| high > low)
        .map(|(p, marks)| (*p, *marks))
        .collect();
    let want: i64 = missing.values().map(|(low, high)| high - low).sum();
    let mut out = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
    if missing.is_empty() {
        return out;
    }
    let consumer = reader(brokers, "test-ledger");
    let mut tpl = TopicPartitionList::new();
    for (p, (low, _)) in &missing {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*low))
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = tokio::time::Instant::now() + timeout;
    while !missing.is_empty() {
        let Ok(msg) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            panic!(
                "read {} of {want} records of {topic} in {timeout:?}; partitions not read to their end: {missing:?}",
                out.len()
            );
        };
        let m = match msg {
            Ok(m) => m,
            // A broker of the cluster may be down (the fault under test):
            // librdkafka reports the lost connection and carries on with the
            // others; the deadline above still bounds the read.
            Err(e) => {
                eprintln!("ledger: reading {topic}: {e} (retrying)");
                continue;
            }
        };
        if below_high_watermark(&mut missing, m.partition(), m.offset()) {
            out.push(ReadRecord::of(&m));
        }
    }
    out
}

/// Whether the record at `offset` of `partition` is one to count: below the
/// high watermark still `missing` for its partition. The partition is no
/// longer missing once its last record before the watermark is read.
fn below_high_watermark(
    missing: &mut BTreeMap<i32, (i64, i64)>,
    partition: i32,
    offset: i64,
) -> bool {
    let Some((_, high)) = missing.get(&partition).copied() else {
        return false;
    };
    if offset >= high {
        return false;
    }
    if offset + 1 >= high {
        missing.remove(&partition);
    }
    true
}

/// The record's payload as JSON (every event on our topics is JSON).
pub fn payload_json(r: &ReadRecord) -> serde_json::Value {
    serde_json::from_slice(r.payload.as_deref().unwrap_or_default()).unwrap_or_default()
}

/// How many records carry each key `key_of` finds (records it finds none in
/// are not counted).
pub fn tally<K: Eq + Hash>(
    records: &[ReadRecord],
    key_of: impl Fn(&ReadRecord) -> Option<K>,
) -> HashMap<K, usize> {
    let mut counts = HashMap::new();
    for r in records {
        if let Some(k) = key_of(r) {
            *counts.entry(k).or_insert(0) += 1;
        }
    }
    counts
}

/// How many records per `event_id` on the topic.
pub fn event_id_counts(records: &[ReadRecord]) -> HashMap<Uuid, usize> {
    tally(records, |r| {
        payload_json(r)["event_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
    })
}

/// Records beyond the first for each key: zero exactly when nothing is doubled.
pub fn extra_copies<K>(counts: &HashMap<K, usize>) -> usize {
    counts.values().map(|n| n.saturating_sub(1)).sum()
}

/// Reports counted into `deployments` beyond the events in the audit ledger:
/// `sum(deployments.reports) - count(deployment_audit)`. Every applied event
/// adds one report and one audit row, so this is zero unless an event was
/// counted twice (the audit insert itself ignores duplicates, so its row
/// count alone cannot show one).
pub async fn reports_beyond_audit(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT coalesce(sum(reports), 0)::bigint FROM deployments)
              - (SELECT count(*) FROM deployment_audit)",
    )
    .fetch_one(pool)
    .await
    .expect("count reports and audit rows")
}

/// Sets one topic configuration (e.g. `max.message.bytes`) on a real broker.
pub async fn set_topic_config(brokers: &str, topic: &str, key: &str, value: &str) {
    let admin = admin_client(brokers);
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    for result in admin
        .alter_configs(&[change], &opts)
        .await
        .expect("alter configs")
    {
        result.expect("topic config changed");
    }
}
