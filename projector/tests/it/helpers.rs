//! Projectors to run (in-process) and what to read back; events come from
//! `vibemon_testkit::events`.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;
use vibemon_projector::config::Config;
use vibemon_runtime::KafkaArgs;
pub use vibemon_testkit::events::{at, producer, publish, publish_raw, World};
use vibemon_testkit::{eventually, TestTopic};

/// A projector running in this process.
pub struct Running {
    /// Where /healthz, /readyz and /metrics are served.
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

pub fn config(db_url: &str, topic: &TestTopic, group: &str) -> Config {
    let mut c = Config::new(db_url, KafkaArgs::local(&topic.brokers, &topic.name), group);
    c.batch_linger_ms = 20;
    c
}

pub async fn spawn(config: Config) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(vibemon_projector::serve(config, listener, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        handle,
    }
}

impl Running {
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .expect("stops in time")
            .unwrap()
    }

    /// Waits up to `timeout` for the projector to stop by itself and returns
    /// how it ended. If it does not stop, stops it and returns `None`: the
    /// consume loop runs on a blocking thread the test's runtime waits for at
    /// shutdown, so a projector left running would hang the test instead of
    /// failing it.
    pub async fn stopped_by_itself(mut self, timeout: Duration) -> Option<anyhow::Result<()>> {
        match tokio::time::timeout(timeout, &mut self.handle).await {
            Ok(ended) => Some(ended.unwrap()),
            Err(_) => {
                let _ = self.stop.take().unwrap().send(());
                let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.handle).await;
                None
            }
        }
    }
}

/// The projector binary, configured for `topic` and `group`, quiet, with
/// small batches; callers add or override settings before spawning it.
pub fn projector_command(db_url: &str, topic: &TestTopic, group: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_projector"));
    cmd.env("DATABASE_URL", db_url)
        .env("KAFKA_BROKERS", &topic.brokers)
        .env("KAFKA_TOPIC", &topic.name)
        .env("KAFKA_GROUP", group)
        .env("PROJECTOR_ADDR", "127.0.0.1:0")
        .env("PROJECTOR_BATCH_MAX", "50")
        .env("PROJECTOR_BATCH_LINGER_MS", "20")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

pub fn group() -> String {
    format!("test-group-{}", Uuid::new_v4().simple())
}

pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until `table` holds `n` rows; panics after `secs`.
pub async fn wait_rows(pool: &PgPool, table: &str, n: i64, secs: u64) {
    let got = eventually(Duration::from_secs(secs), || async {
        (count(pool, table).await >= n).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "{table} has {} rows, expected {n}",
        count(pool, table).await
    );
}
