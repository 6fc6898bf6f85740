//! Faults under steady load, on real components: a broker SIGKILLed and
//! restarted while CI clients keep posting. Every 201 must end up in
//! `deployments`; every other answer must be a 503 with `Retry-After`, in
//! bounded time, with no dropped connection.

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
                    let body = format!(r#"{{"environment": "production", "repository": "acme/svc-{w}", "extra_data": {{"n": {i}}}}}"#);
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

/// Accepted ids missing from `deployments`, and deployments counted twice.
async fn lost_and_doubled(pool: &sqlx::PgPool, accepted: &[uuid::Uuid]) -> (usize, i64) {
    let stored: std::collections::HashSet<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM deployments")
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let lost = accepted.iter().filter(|id| !stored.contains(id)).count();
    let doubled = sqlx::query_scalar("SELECT count(*) FROM deployments WHERE reports <> 1")
        .fetch_one(pool)
        .await
        .unwrap();
    (lost, doubled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_sigkilled_and_restarted_under_load_loses_no_accepted_deployment() {
    let broker = PrivateBroker::start();
    let (db, topic) = (
        TestDb::new().await,
        TestTopic::on(&broker.brokers(), 3).await,
    );
    let tenant = Tenant::create(&db.pool, "load").await;
    let kafka = KafkaArgs::local(&topic.brokers, &topic.name);
    let mut config = vibemon_ingest::config::Config::for_tests(&db.url, kafka.clone());
    config.kafka_message_timeout_ms = 3000;
    // Steady load from one address with one key: the limits are not under test here.
    config.rate_limit_per_ip = 0;
    config.rate_limit_per_key = 0;
    let ingest = Ingest::spawn_with(config).await;
    let url = format!("http://{}/api/v1/deployments/webhook", ingest.addr);

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

    let mut pc = vibemon_projector::config::Config::for_tests(&db.url, kafka, "fault-load");
    pc.until_caught_up = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    vibemon_projector::serve(pc, listener, std::future::pending())
        .await
        .unwrap();
    let (lost, doubled) = lost_and_doubled(&db.pool, &tally.accepted).await;
    println!(
        "broker SIGKILL under load: sent {}, 201 {}, 503 {}, other {}, lost {lost}, doubled {doubled}, slowest answer {:?}",
        tally.sent,
        tally.accepted.len(),
        tally.unavailable,
        tally.other.len(),
        tally.slowest
    );

    assert!(tally.unavailable > 0, "the kill was not felt: {tally:?}");
    assert!(
        tally.accepted.len() > 20,
        "too little load got through: {tally:?}"
    );
    assert!(
        tally.other.is_empty(),
        "answers other than 201/503+Retry-After: {:?}",
        tally.other
    );
    assert_eq!(lost, 0, "accepted deployments missing from Postgres");
    assert_eq!(doubled, 0);
    assert!(
        tally.slowest < Duration::from_secs(8),
        "an answer took {:?}",
        tally.slowest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_brokers_one_killed_under_load_ingest_keeps_accepting_and_nothing_is_lost() {
    let cluster = Arc::new(vibemon_testkit::PrivateCluster::start());
    let (db, topic) = (
        TestDb::new().await,
        TestTopic::replicated(&cluster.brokers(), 3, 3).await,
    );
    let tenant = Tenant::create(&db.pool, "load").await;
    let kafka = KafkaArgs::local(&topic.brokers, &topic.name);
    let mut config = vibemon_ingest::config::Config::for_tests(&db.url, kafka.clone());
    config.kafka_message_timeout_ms = 5000;
    config.rate_limit_per_ip = 0;
    config.rate_limit_per_key = 0;
    let ingest = Ingest::spawn_with(config).await;
    let projector = Projector::spawn(&db.url, kafka, "cluster-load").await;
    let url = format!("http://{}/api/v1/deployments/webhook", ingest.addr);

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
    let accepted = tally.accepted.len() as i64;
    let projected = vibemon_testkit::eventually(Duration::from_secs(60), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        (n >= accepted).then_some(n)
    })
    .await;
    projector.stop().await;

    let (lost, doubled) = lost_and_doubled(&db.pool, &tally.accepted).await;
    let fraction = tally.accepted.len() as f64 / tally.sent as f64;
    println!(
        "3 brokers, one SIGKILLed under load: sent {}, 201 {} ({:.1}%), 503 {}, other {}, lost {lost}, doubled {doubled}, slowest {:?}",
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
    assert_eq!(lost, 0);
    assert_eq!(doubled, 0);
}
