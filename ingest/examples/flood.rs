//! Does a flood of random keys starve valid traffic? Measures the valid-key
//! p50/p99 latency without and then with a concurrent flood of random
//! (well-formed, unknown) keys, side by side in one run, and prints the ratio.
//!
//!   eval "$(deploy/local/services env)"
//!   cargo run --release -p vibemon-ingest --example flood -- [seconds per phase]
//!
//! The per-IP limit is turned off, as if the flood came from many addresses:
//! what is measured is the argon2 bound, the negative cache and the key cache.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vibemon_ingest::config::Config;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{Tenant, TestDb, TestTopic};

const BODY: &str = r#"{"environment": "production", "repository": "acme/api", "branch": "main"}"#;

async fn closed_loop(
    url: String,
    key: impl Fn() -> String + Send + Sync + 'static,
    workers: usize,
    secs: u64,
) -> Vec<Duration> {
    let key = Arc::new(key);
    let samples = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (url, key, samples, client) =
                (url.clone(), key.clone(), samples.clone(), client.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let started = Instant::now();
                    let _ = client
                        .post(&url)
                        .header("X-Workspace-Key", key())
                        .header("Content-Type", "application/json")
                        .body(BODY)
                        .send()
                        .await;
                    samples.lock().unwrap().push(started.elapsed());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut s = Arc::try_unwrap(samples).unwrap().into_inner().unwrap();
    s.sort();
    s
}

fn pct(s: &[Duration], p: f64) -> Duration {
    s[((s.len() as f64 * p) as usize).min(s.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::args().nth(1).map_or(Ok(10), |s| s.parse())?;
    let (db, topic) = (TestDb::new().await, TestTopic::new(3).await);
    let tenant = Tenant::create(&db.pool, "valid").await;
    let mut config = Config::for_tests(&db.url, KafkaArgs::local(&topic.brokers, &topic.name));
    config.rate_limit_per_ip = 0;
    config.rate_limit_per_key = 0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!(
        "http://{}/api/v1/deployments/webhook",
        listener.local_addr()?
    );
    tokio::spawn(vibemon_ingest::serve(
        config,
        listener,
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let valid = tenant.key.clone();

    let quiet = closed_loop(
        url.clone(),
        {
            let k = valid.clone();
            move || k.clone()
        },
        4,
        secs,
    )
    .await;
    let flood = tokio::spawn(closed_loop(
        url.clone(),
        vibemon_store::keys::generate_unhashed_plaintext,
        16,
        secs,
    ));
    let loud = closed_loop(url.clone(), move || valid.clone(), 4, secs).await;
    let flood = flood.await?;

    let (q99, l99) = (pct(&quiet, 0.99), pct(&loud, 0.99));
    println!(
        "valid key, no flood:   {} requests, p50 {:?}, p99 {:?}",
        quiet.len(),
        pct(&quiet, 0.5),
        q99
    );
    println!(
        "valid key, with flood: {} requests, p50 {:?}, p99 {:?}",
        loud.len(),
        pct(&loud, 0.5),
        l99
    );
    println!(
        "flood: {} random-key requests, p50 {:?}",
        flood.len(),
        pct(&flood, 0.5)
    );
    println!(
        "p99 ratio (flood / no flood): {:.2}x (target <= 2x)",
        l99.as_secs_f64() / q99.as_secs_f64()
    );
    Ok(())
}
