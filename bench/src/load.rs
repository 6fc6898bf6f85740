//! The HTTP load generator.
//!
//! Two shapes of load, both posting realistic seed bodies (the GitHub Actions
//! example of the contract, with a different commit and run id each time):
//! - a closed loop: N connections, each sending its next request as soon as
//!   the last one was answered; it finds the maximum throughput;
//! - an open loop: requests due at a fixed rate whatever the server does, with
//!   latency counted from when each request was due, so a stalled server can't
//!   hide its queue (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use uuid::Uuid;

const REPOS: [&str; 5] = [
    "acme/api",
    "acme/web",
    "acme/worker",
    "acme/billing",
    "acme/auth",
];

/// The `n`th body: the contract's GitHub Actions example with its variables
/// filled in (about 300 bytes).
pub fn seed_body(n: u64) -> String {
    let repo = REPOS[(n % REPOS.len() as u64) as usize];
    let sha = (u128::from(n) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    format!(
        r#"{{"environment": "production", "repository": "{repo}", "branch": "main", "commit_sha": "{:08x}{sha:032x}", "status": "success", "source": "github_actions", "extra_data": {{"workflow_run_id": "{}", "actor": "octocat"}}}}"#,
        n as u32,
        9_000_000_000 + n
    )
}

/// Where the load goes: a webhook URL and the key it is posted with.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub key: String,
}

/// What one load run saw.
pub struct LoadResult {
    /// Requests answered 201.
    pub ok: u64,
    /// Requests answered otherwise, or not answered at all.
    pub failed: u64,
    /// Open loop only: requests that were due but not sent, because too many
    /// were already outstanding.
    pub skipped: u64,
    pub elapsed: Duration,
    /// Latency of every answered request, in microseconds.
    pub latency: Histogram<u64>,
    /// Open loop with ids kept: each accepted deployment's id and when its 201
    /// arrived.
    pub acked: Vec<(Uuid, Instant)>,
}

impl LoadResult {
    /// Accepted webhooks per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency percentile (0–100) in milliseconds.
    pub fn ms(&self, percentile: f64) -> f64 {
        self.latency.value_at_percentile(percentile) as f64 / 1000.0
    }
}

struct Shared {
    client: reqwest::Client,
    target: Target,
    next_body: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    ok: AtomicU64,
    failed: AtomicU64,
    acked: Mutex<Vec<(Uuid, Instant)>>,
    keep_ids: bool,
}

impl Shared {
    fn new(target: Target, connections: usize, keep_ids: bool) -> Arc<Self> {
        Arc::new(Self {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            target,
            next_body: AtomicU64::new(0),
            latency: Mutex::new(histogram()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            acked: Mutex::new(Vec::new()),
            keep_ids,
        })
    }

    /// Sends one request; `due` is when it should have started.
    async fn send(&self, due: Instant, record: bool) {
        let body = seed_body(self.next_body.fetch_add(1, Ordering::Relaxed));
        let response = self
            .client
            .post(&self.target.url)
            .header("X-Workspace-Key", &self.target.key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await;
        let answer = match response {
            Ok(r) => {
                let status = r.status().as_u16();
                r.bytes().await.ok().map(|b| (status, b))
            }
            Err(_) => None,
        };
        let done = Instant::now();
        if !record {
            return;
        }
        match answer {
            Some((201, ref body)) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                if self.keep_ids {
                    if let Some(id) = deployment_id(body) {
                        self.acked.lock().unwrap().push((id, done));
                    }
                }
            }
            _ => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if answer.is_some() {
            let micros = (done - due).as_micros().max(1) as u64;
            self.latency.lock().unwrap().saturating_record(micros);
        }
    }

    fn result(self: Arc<Self>, elapsed: Duration, skipped: u64) -> LoadResult {
        LoadResult {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            skipped,
            elapsed,
            latency: self.latency.lock().unwrap().clone(),
            acked: std::mem::take(&mut self.acked.lock().unwrap()),
        }
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant figures.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn deployment_id(body: &[u8]) -> Option<Uuid> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("id")?.as_str()?.parse().ok()
}

/// `connections` clients in a closed loop: `warmup` unrecorded, then
/// `duration` recorded.
pub async fn closed_loop(
    target: Target,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let shared = Shared::new(target, connections, false);
    let start = Instant::now();
    let (record_from, until) = (start + warmup, start + warmup + duration);
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    shared.send(now, now >= record_from).await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("load worker");
    }
    shared.result(duration, 0)
}

/// Requests due at `rate` per second for `duration`, at most `max_in_flight`
/// outstanding; with `keep_ids`, the ids and 201 times of accepted ones.
pub async fn open_loop(
    target: Target,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    keep_ids: bool,
) -> LoadResult {
    let shared = Shared::new(target, max_in_flight, keep_ids);
    let permits = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut skipped = 0;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            shared.send(due, true).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = start.elapsed().max(duration);
    let mut result = shared.result(duration, skipped);
    // Count the rate over the offered window; stragglers answered after it
    // stretch it.
    result.elapsed = elapsed;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_bodies_are_valid_json_and_differ_in_commit() {
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&seed_body(0)).unwrap(),
            serde_json::from_str(&seed_body(1)).unwrap(),
        );
        assert_eq!(a["source"], "github_actions");
        assert_eq!(a["commit_sha"].as_str().unwrap().len(), 40);
        assert_ne!(a["commit_sha"], b["commit_sha"]);
        assert_ne!(a["repository"], b["repository"]);
    }
}
