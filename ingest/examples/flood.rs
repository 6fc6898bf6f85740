//! Does a flood of random keys starve valid traffic? Measures the valid key's
//! latency (p50, p99, worst) and every answer other than 201, first without
//! and then with a concurrent flood of random (well-formed, unknown) keys.
//! Each phase lasts at least three key-cache TTLs, so the valid key's entry
//! would expire (and, before refresh-ahead, be re-verified in the flooded
//! argon2 queue) several times during the flood.
//!
//!   eval "$(deploy/local/services env)"
//!   cargo run --release -p vibemon-ingest --example flood -- [ttl seconds] [seconds per phase]
//!
//! Defaults: the production TTL of 30 s and phases of 3.2 TTLs (96 s). The
//! per-IP limit is turned off, as if the flood came from many addresses: what
//! is measured is the argon2 bound, the negative cache and the key cache.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vibemon_ingest::config::Config;
use vibemon_ingest::webhook::WEBHOOK_PATH;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::spawned::Spawned;
use vibemon_testkit::{Tenant, TestDb, TestTopic};

const BODY: &str = r#"{"environment": "production", "repository": "acme/api", "branch": "main"}"#;

/// One answer: how long it took and its status (`None`: no answer at all).
type Sample = (Duration, Option<u16>);

async fn closed_loop(
    url: String,
    key: impl Fn() -> String + Send + Sync + 'static,
    workers: usize,
    secs: u64,
) -> Vec<Sample> {
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
                    let status = client
                        .post(&url)
                        .header("X-Workspace-Key", key())
                        .header("Content-Type", "application/json")
                        .body(BODY)
                        .send()
                        .await
                        .ok()
                        .map(|r| r.status().as_u16());
                    samples.lock().unwrap().push((started.elapsed(), status));
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

fn pct(s: &[Sample], p: f64) -> Duration {
    s[((s.len() as f64 * p) as usize).min(s.len() - 1)].0
}

/// "N requests, p50, p99, worst, answers other than 201".
fn summary(s: &[Sample]) -> String {
    let mut others: BTreeMap<String, usize> = BTreeMap::new();
    for (_, status) in s.iter().filter(|(_, st)| *st != Some(201)) {
        let label = status.map_or_else(|| "no answer".to_owned(), |c| c.to_string());
        *others.entry(label).or_default() += 1;
    }
    format!(
        "{} requests, p50 {:?}, p99 {:?}, worst {:?}, non-201: {:?}",
        s.len(),
        pct(s, 0.5),
        pct(s, 0.99),
        s.last().map_or(Duration::ZERO, |x| x.0),
        others
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let ttl: u64 = std::env::args().nth(1).map_or(Ok(30), |s| s.parse())?;
    let secs: u64 = std::env::args()
        .nth(2)
        .map_or(Ok(ttl * 16 / 5), |s| s.parse())?;
    let (db, topic) = (TestDb::new().await, TestTopic::new(3).await);
    let tenant = Tenant::create(&db.pool, "valid").await;
    let mut config = Config::new(&db.url, KafkaArgs::local(&topic.brokers, &topic.name));
    config.rate_limit_per_ip = 0;
    config.rate_limit_per_key = 0;
    config.key_cache_ttl_secs = ttl;
    let ingest =
        Spawned::start(|listener, shutdown| vibemon_ingest::serve(config, listener, shutdown))
            .await;
    let url = ingest.url(WEBHOOK_PATH);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let valid = tenant.key.clone();
    println!(
        "key cache TTL {ttl} s, {secs} s per phase ({:.1} TTLs)",
        secs as f64 / ttl as f64
    );

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

    report(&quiet, &loud, &flood);
    Ok(())
}

/// The three phases side by side, and the p99 ratio the flood must keep.
fn report(quiet: &[Sample], loud: &[Sample], flood: &[Sample]) {
    println!("valid key, no flood:   {}", summary(quiet));
    println!("valid key, with flood: {}", summary(loud));
    println!("flood of random keys:  {}", summary(flood));
    println!(
        "p99 ratio (flood / no flood): {:.2}x (target <= 2x)",
        pct(loud, 0.99).as_secs_f64() / pct(quiet, 0.99).as_secs_f64()
    );
}
