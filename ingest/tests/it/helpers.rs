//! `TestApp`: one ingest on port 0 with a fresh database, topic and tenant,
//! and the requests and metric reads the tests share.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use vibemon_ingest::config::Config;
use vibemon_ingest::webhook::WEBHOOK_PATH;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::spawned::Spawned;
use vibemon_testkit::{read_topic, ReadRecord, Tenant, TestDb, TestTopic};

pub struct TestApp {
    /// The running ingest; dropping it aborts it. Declared first so that it
    /// is dropped first: ingest stops before its database and topic go.
    service: Spawned,
    pub addr: SocketAddr,
    pub db: TestDb,
    pub topic: TestTopic,
    pub tenant: Tenant,
    pub client: reqwest::Client,
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
        let service =
            Spawned::start(|listener, shutdown| vibemon_ingest::serve(config, listener, shutdown))
                .await;
        Self {
            addr: service.addr,
            db,
            topic,
            tenant,
            client: reqwest::Client::new(),
            service,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.service.url(path)
    }

    /// POSTs a JSON body to the webhook with the tenant's key.
    pub async fn post(&self, body: &str) -> reqwest::Response {
        self.post_with(body, &[]).await
    }

    pub async fn post_with(&self, body: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.webhook_request(Some(&self.tenant.key), body);
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        req.send().await.expect("ingest answers")
    }

    /// POSTs a JSON body to the webhook with `key` (`None`: no key header).
    /// The future owns what it needs, so it can be spawned.
    pub fn post_as(
        &self,
        key: Option<&str>,
        body: &str,
    ) -> impl Future<Output = reqwest::Response> + Send + 'static {
        let req = self.webhook_request(key, body);
        async move { req.send().await.expect("ingest answers") }
    }

    fn webhook_request(&self, key: Option<&str>, body: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(self.url(WEBHOOK_PATH))
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            req = req.header("X-Workspace-Key", key);
        }
        req
    }

    /// GETs `path` with `key`, as the read API is called. The future owns what
    /// it needs, so it can be spawned; it yields reqwest's own error too, for
    /// the tests that count requests that got no answer.
    pub fn get_as(
        &self,
        key: &str,
        path: &str,
    ) -> impl Future<Output = reqwest::Result<reqwest::Response>> + Send + 'static {
        self.client
            .get(self.url(path))
            .header("X-Workspace-Key", key)
            .send()
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

    /// The value of a counter, 0 before it was first incremented (when
    /// Prometheus does not list it yet).
    pub async fn count(&self, name_and_labels: &str) -> f64 {
        self.metric(name_and_labels).await.unwrap_or(0.0)
    }

    /// argon2 verifications with `outcome` (`valid` or `invalid`) so far.
    pub async fn argon2_verifications(&self, outcome: &str) -> f64 {
        let name = format!("vibemon_ingest_argon2_verifications_total{{outcome=\"{outcome}\"}}");
        self.count(&name).await
    }

    /// Stops ingest gracefully and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.service.stop().await
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
        tokio::task::spawn_blocking(move || vibemon_testkit::ledger::records_on(&brokers, &topic))
            .await
            .unwrap()
    }
}
