//! Measures the projector's throughput from empty to caught up.
//!
//! Preloads N valid events on a fresh topic, then times a projector (the
//! real loop, real Postgres) projecting them into a fresh database.
//!
//!   eval "$(deploy/local/services env)"
//!   cargo run --release -p vibemon-projector --example throughput -- 200000
//!
//! Prints events/s. The full comparison against COPY, row-at-a-time INSERT
//! and Kafka Connect belongs to the benchmark suite.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use vibemon_projector::config::Config;
use vibemon_projector::metrics::Metrics;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::events::{at, World};
use vibemon_testkit::{TestDb, TestTopic};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(100_000), |s| s.parse())?;
    let (db, topic) = (TestDb::new().await, TestTopic::new(6).await);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &topic.brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let worlds: Vec<World> = (0..20).map(|_| World::new()).collect();
    let repos = [
        "acme/api",
        "acme/web",
        "acme/worker",
        "acme/db",
        "acme/auth",
    ];
    let started = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for i in 0..n {
        let w = &worlds[i % worlds.len()];
        let e = w.report(
            repos[i % repos.len()],
            at("2024-01-01T00:00:00Z") + chrono::Duration::seconds(i as i64),
        );
        let (key, payload) = (e.partition_key(), e.encode());
        pending.push(
            producer
                .send_result(FutureRecord::to(&topic.name).key(&key).payload(&payload))
                .map_err(|(e, _)| e)?,
        );
        if pending.len() == 10_000 {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending.drain(..) {
        d.await?.map_err(|(e, _)| e)?;
    }
    eprintln!(
        "preloaded {n} events in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let mut config = Config::for_tests(
        &db.url,
        KafkaArgs::local(&topic.brokers, &topic.name),
        "throughput",
    );
    config.until_caught_up = true;
    config.batch_max = 5000;
    config.db_pool_size = 4;
    let loop_config = config.loop_config();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let metrics = Metrics::new();
    let started = Instant::now();
    vibemon_projector::serve_with(
        config,
        loop_config,
        listener,
        std::future::pending(),
        metrics.clone(),
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deployment_audit")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(rows as usize, n, "every event projected");
    println!(
        "projector: {n} events from empty to caught up in {secs:.2}s = {:.0} events/s ({} batches)",
        n as f64 / secs,
        metrics.batch_size.get_sample_count()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
