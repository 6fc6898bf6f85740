//! `TestApp`: one ingest on port 0 with a fresh database, topic and tenant.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use vibemon_ingest::config::Config;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{read_topic, ReadRecord, Tenant, TestDb, TestTopic};

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: TestDb,
    pub topic: TestTopic,
    pub tenant: Tenant,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with a configuration tweak (shorter TTLs, smaller limits, ...).
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new().await;
        let topic = TestTopic::new(3).await;
        Self::spawn_on(db, topic, tweak).await
    }

    pub async fn spawn_on(db: TestDb, topic: TestTopic, tweak: impl FnOnce(&mut Config)) -> Self {
        let tenant = Tenant::create(&db.pool, "GitHub Actions").await;
        let mut config = Config::new(&db.url, KafkaArgs::local(&topic.brokers, &topic.name));
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(vibemon_ingest::serve(config, listener, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            db,
            topic,
            tenant,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a JSON body to the webhook with the tenant's key.
    pub async fn post(&self, body: &str) -> reqwest::Response {
        self.post_with(body, &[]).await
    }

    pub async fn post_with(&self, body: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/api/v1/deployments/webhook"))
            .header("X-Workspace-Key", &self.tenant.key)
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send().await.expect("ingest answers")
    }

    /// Every record on the topic, waiting up to `timeout` for `want` of them.
    pub async fn events(&self, want: usize, timeout: Duration) -> Vec<ReadRecord> {
        read_topic(&self.topic.brokers, &self.topic.name, want, timeout).await
    }

    /// The `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of the metric line starting with `name_and_labels`.
    pub async fn metric(&self, name_and_labels: &str) -> Option<f64> {
        self.metrics_text()
            .await
            .lines()
            .find(|l| l.starts_with(name_and_labels))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Stops ingest gracefully and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = &self.handle {
            h.abort();
        }
    }
}

/// The seed's minimal body.
pub const MINIMAL: &str = r#"{"environment": "production", "repository": "owner/repo"}"#;

pub async fn json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.expect("a JSON body");
    (status, body)
}

impl TestApp {
    /// How many records the topic holds, from its watermarks: a count that
    /// does not depend on how long a reader waited.
    pub async fn record_count(&self) -> i64 {
        let (brokers, topic) = (self.topic.brokers.clone(), self.topic.name.clone());
        tokio::task::spawn_blocking(move || vibemon_testkit::count_records(&brokers, &topic))
            .await
            .unwrap()
    }
}
