//! Faults under steady load, on real components: a broker SIGKILLed and
//! restarted while CI clients keep posting. Every 201 must be on the topic
//! exactly once and end up in `deployments`; every other answer must be a 503
//! with `Retry-After`, in bounded time, with no dropped connection; nothing
//! is on the topic that no request asked for. The topic is counted by its
//! high watermarks and read to them, so "absent" and "doubled" are numbers
//! that could move, not a read that gave up waiting.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{PrivateBroker, Tenant, TestDb, TestTopic};

use crate::stack::{Ingest, Projector};

#[derive(Debug, Default)]
struct Tally {
    sent: usize,
    accepted: Vec<uuid::Uuid>,
    unavailable: usize,
    /// The tag (in `extra_data`) of each request answered 503: a 503 has no
    /// event id to look for on the topic, the tag finds it.
    unavailable_tags: Vec<String>,
    other: Vec<String>,
    slowest: Duration,
    /// When each 201 and each 503 came back.
    accepted_at: Vec<Instant>,
    unavailable_at: Vec<Instant>,
}

/// `workers` clients posting back to back until `until`.
async fn load(url: String, key: String, workers: usize, until: Instant) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (tally, client, url, key) = (tally.clone(), client.clone(), url.clone(), key.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < until {
                    i += 1;
                    let tag = format!("{w}-{i}");
                    let body = format!(r#"{{"environment": "production", "repository": "acme/svc-{w}", "extra_data": {{"n": {i}, "tag": "{tag}"}}}}"#);
                    let started = Instant::now();
                    let resp = client
                        .post(&url)
                        .header("X-Workspace-Key", &key)
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let took = started.elapsed();
                    enum Seen {
                        Accepted(uuid::Uuid),
                        Unavailable,
                        Other(String),
                    }
                    let seen = match resp {
                        Ok(r) if r.status() == 201 => {
                            let v: serde_json::Value = r.json().await.unwrap();
                            Seen::Accepted(uuid::Uuid::parse_str(v["id"].as_str().unwrap()).unwrap())
                        }
                        Ok(r) if r.status() == 503 && r.headers().contains_key("retry-after") => Seen::Unavailable,
                        Ok(r) => Seen::Other(format!("HTTP {}", r.status())),
                        Err(e) => Seen::Other(format!("transport: {e}")),
                    };
                    let mut t = tally.lock().unwrap();
                    t.sent += 1;
                    t.slowest = t.slowest.max(took);
                    let now = Instant::now();
                    match seen {
                        Seen::Accepted(id) => {
                            t.accepted.push(id);
                            t.accepted_at.push(now);
                        }
                        Seen::Unavailable => {
                            t.unavailable += 1;
                            t.unavailable_tags.push(tag);
                            t.unavailable_at.push(now);
                        }
                        Seen::Other(why) => t.other.push(why),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(tally).unwrap().into_inner().unwrap()
}

/// Accepted ids missing from `deployments`.
async fn lost_in_postgres(pool: &sqlx::PgPool, accepted: &[uuid::Uuid]) -> usize {
    let stored: std::collections::HashSet<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM deployments")
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    accepted.iter().filter(|id| !stored.contains(id)).count()
}

/// The topic compared with the answers clients got.
#[derive(Debug)]
struct TopicCheck {
    /// Records on the topic: the sum of the high watermarks.
    on_topic: i64,
    /// 201s whose event id is not on the topic.
    lost: usize,
    /// Records beyond the first for a request (same tag) or an event id.
    doubled: usize,
    /// Requests answered 503 whose event is on the topic anyway (allowed:
    /// see `check_topic`).
    landed_503: usize,
    /// Records that belong to no request that was answered 201 or 503.
    unexplained: usize,
}

/// Reads the topic to its high watermarks and accounts for every record.
///
/// What ingest promises (ingest/src/sink.rs, webhook.rs, idempotency.rs): a 201 is sent only
/// after the idempotent (`enable.idempotence`, `acks=all`) producer's record
/// was acknowledged, so a 201's event is on the topic, exactly once. A 503
/// means "not acknowledged", not "not written": a full queue never sent the
/// record, but a delivery that timed out (`message.timeout.ms`) may have
/// been appended by the broker with the acknowledgement lost on the way back.
/// So a 503'd request's event is on the topic at most once, never twice
/// (idempotence), and the client that retries it makes a second, different
/// event, as `Retry-After` invites. Nothing else may be on the topic.
async fn check_topic(brokers: &str, topic: &str, tally: &Tally) -> TopicCheck {
    use vibemon_testkit::ledger::{
        event_id_counts, extra_copies, payload_json, read_to_end, records_on, tally as count_by,
    };
    let on_topic = records_on(brokers, topic);
    let records = read_to_end(brokers, topic, Duration::from_secs(60)).await;
    assert_eq!(records.len() as i64, on_topic, "read to the watermarks");
    let by_id = event_id_counts(&records);
    let by_tag = count_by(&records, |r| {
        payload_json(r)["extra_data"]["tag"]
            .as_str()
            .map(str::to_owned)
    });
    assert_eq!(
        by_tag.values().sum::<usize>(),
        records.len(),
        "every record carries its request's tag"
    );
    let lost = tally
        .accepted
        .iter()
        .filter(|id| !by_id.contains_key(id))
        .count();
    let landed_503 = tally
        .unavailable_tags
        .iter()
        .filter(|t| by_tag.contains_key(*t))
        .count();
    let accepted: std::collections::HashSet<uuid::Uuid> = tally.accepted.iter().copied().collect();
    let unavailable: std::collections::HashSet<&str> =
        tally.unavailable_tags.iter().map(String::as_str).collect();
    let unexplained = records
        .iter()
        .filter(|r| {
            let v = payload_json(r);
            let id = v["event_id"]
                .as_str()
                .and_then(|s| uuid::Uuid::parse_str(s).ok());
            let tag = v["extra_data"]["tag"].as_str();
            !(id.is_some_and(|id| accepted.contains(&id))
                || tag.is_some_and(|t| unavailable.contains(t)))
        })
        .count();
    TopicCheck {
        on_topic,
        lost,
        doubled: extra_copies(&by_id) + extra_copies(&by_tag),
        landed_503,
        unexplained,
    }
}

/// An ingest for steady load on `topic`, with a fresh tenant: its Kafka
/// settings, and the webhook's URL.
async fn ingest_under_load(
    db: &TestDb,
    topic: &TestTopic,
    message_timeout_ms: u64,
) -> (Tenant, KafkaArgs, Ingest, String) {
    let tenant = Tenant::create(&db.pool, "load").await;
    let kafka = KafkaArgs::local(&topic.brokers, &topic.name);
    let mut config = vibemon_ingest::config::Config::new(&db.url, kafka.clone());
    config.kafka_message_timeout_ms = message_timeout_ms;
    // Steady load from one address with one key: the limits are not under test here.
    config.rate_limit_per_ip = 0;
    config.rate_limit_per_key = 0;
    let ingest = Ingest::spawn_with(config).await;
    let url = format!("http://{}/api/v1/deployments/webhook", ingest.addr);
    (tenant, kafka, ingest, url)
}

/// Postgres compared with the answers clients got, once the projector ran.
#[derive(Debug)]
struct PostgresCheck {
    /// 201s missing from `deployments`.
    lost_in_postgres: usize,
    /// Rows in `deployment_audit`: one per applied event.
    audit_rows: i64,
    /// Reports counted into `deployments` beyond the audit rows.
    reports_beyond_audit: i64,
}

async fn check_postgres(pool: &sqlx::PgPool, accepted: &[uuid::Uuid]) -> PostgresCheck {
    let lost_in_postgres = lost_in_postgres(pool, accepted).await;
    let audit_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_audit")
        .fetch_one(pool)
        .await
        .unwrap();
    let reports_beyond_audit = vibemon_testkit::ledger::reports_beyond_audit(pool).await;
    PostgresCheck {
        lost_in_postgres,
        audit_rows,
        reports_beyond_audit,
    }
}

/// Every 201 is on the topic once and in Postgres once; nothing else is.
fn assert_every_answer_accounted_for(tally: &Tally, topic_check: &TopicCheck, pg: &PostgresCheck) {
    assert_eq!(topic_check.lost, 0, "201s whose event is not on the topic");
    assert_eq!(topic_check.doubled, 0, "records on the topic twice");
    assert_eq!(topic_check.unexplained, 0, "records no 201 or 503 explains");
    assert_eq!(
        topic_check.on_topic,
        (tally.accepted.len() + topic_check.landed_503) as i64,
        "the high watermarks add up to the 201s and the 503s that landed"
    );
    assert_eq!(
        pg.lost_in_postgres, 0,
        "accepted deployments missing from Postgres"
    );
    assert_eq!(
        pg.audit_rows, topic_check.on_topic,
        "every record applied once"
    );
    assert_eq!(
        pg.reports_beyond_audit, 0,
        "reports counted beyond the audit rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_sigkilled_and_restarted_under_load_loses_and_doubles_no_accepted_deployment() {
    let broker = PrivateBroker::start();
    let (db, topic) = (
        TestDb::new().await,
        TestTopic::on(&broker.brokers(), 3).await,
    );
    let (tenant, kafka, ingest, url) = ingest_under_load(&db, &topic, 3000).await;

    let started = Instant::now();
    let load = tokio::spawn(load(
        url,
        tenant.key.clone(),
        4,
        started + Duration::from_secs(14),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b = Arc::new(broker);
    let killer = b.clone();
    tokio::task::spawn_blocking(move || killer.kill())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let starter = b.clone();
    tokio::task::spawn_blocking(move || starter.up())
        .await
        .unwrap();
    let tally = load.await.unwrap();
    ingest.stop().await;

    let topic_check = check_topic(&topic.brokers, &topic.name, &tally).await;
    Projector::until_caught_up(&db.url, kafka, "fault-load").await;
    let pg = check_postgres(&db.pool, &tally.accepted).await;
    println!(
        "broker SIGKILL under load: sent {}, 201 {}, 503 {}, other {}, {topic_check:?}, {pg:?}, slowest answer {:?}",
        tally.sent,
        tally.accepted.len(),
        tally.unavailable,
        tally.other.len(),
        tally.slowest
    );

    assert!(
        tally.other.is_empty(),
        "answers other than 201/503+Retry-After: {:?}",
        tally.other
    );
    assert_every_answer_accounted_for(&tally, &topic_check, &pg);
    assert!(tally.unavailable > 0, "the kill was not felt");
    assert!(tally.accepted.len() > 20, "too little load got through");
    assert!(
        tally.slowest < Duration::from_secs(8),
        "an answer took {:?}",
        tally.slowest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_brokers_one_killed_under_load_ingest_keeps_accepting_and_nothing_is_lost_or_doubled(
) {
    let cluster = Arc::new(vibemon_testkit::PrivateCluster::start());
    let (db, topic) = (
        TestDb::new().await,
        TestTopic::replicated(&cluster.brokers(), 3, 3).await,
    );
    let (tenant, kafka, ingest, url) = ingest_under_load(&db, &topic, 5000).await;
    let projector = Projector::spawn(&db.url, kafka, "cluster-load").await;

    let started = Instant::now();
    let load = tokio::spawn(load(
        url,
        tenant.key.clone(),
        4,
        started + Duration::from_secs(26),
    ));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let killer = cluster.clone();
    tokio::task::spawn_blocking(move || killer.kill(2))
        .await
        .unwrap();
    // The controller fences a dead broker after broker.session.timeout.ms
    // (9 s); until then a record for a partition it led can only time out
    // (5 s here) and answer 503. After that, every answer must be a 201.
    let failover_over = Instant::now() + Duration::from_secs(9 + 5 + 2);
    let tally = load.await.unwrap();
    ingest.stop().await;
    let topic_check = check_topic(&topic.brokers, &topic.name, &tally).await;
    let on_topic = topic_check.on_topic;
    let projected = vibemon_testkit::eventually(Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_audit")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        (n >= on_topic).then_some(n)
    })
    .await;
    projector.stop().await;

    let pg = check_postgres(&db.pool, &tally.accepted).await;
    let fraction = tally.accepted.len() as f64 / tally.sent as f64;
    println!(
        "3 brokers, one SIGKILLed under load: sent {}, 201 {} ({:.1}%), 503 {}, other {}, {topic_check:?}, {pg:?}, slowest {:?}",
        tally.sent,
        tally.accepted.len(),
        100.0 * fraction,
        tally.unavailable,
        tally.other.len(),
        tally.slowest
    );

    assert!(
        tally.other.is_empty(),
        "answers other than 201/503+Retry-After: {:?}",
        tally.other
    );
    let late_503 = tally
        .unavailable_at
        .iter()
        .filter(|t| **t > failover_over)
        .count();
    let accepted_after = tally
        .accepted_at
        .iter()
        .filter(|t| **t > failover_over)
        .count();
    assert_eq!(
        late_503, 0,
        "ingest should answer only 201 once the dead broker is fenced ({fraction:.3} accepted overall)"
    );
    assert!(
        accepted_after >= 10,
        "ingest should keep accepting with two of three brokers: {accepted_after} 201s after the failover"
    );
    assert!(
        projected.is_some(),
        "the projector did not carry on after the kill"
    );
    assert_every_answer_accounted_for(&tally, &topic_check, &pg);
}
