//! Test-only helpers: a fresh database and a fresh topic per test.
//!
//! Every integration test runs against the real Postgres and Kafka of
//! `deploy/local/services up` and gets resources nobody else touches, so the
//! suite runs in parallel. Both clean up on drop.
//!
//! [`database`] has the test database, its tenant and a private Postgres;
//! [`topics`] the test topic and reading it back; [`brokers`] private Kafka
//! brokers; [`spawned`] a service running in the test; [`events`] events as
//! ingest publishes them; [`ledger`] exact counts of what a topic holds;
//! [`openapi`] answers held to the published document; [`browser`] a headless
//! Chromium driven over WebDriver, for the dashboard. The
//! most used items are re-exported here.

pub mod brokers;
pub mod browser;
mod certs;
mod cleanup;
pub mod database;
pub mod events;
pub mod ledger;
pub mod openapi;
mod ports;
mod scripts;
pub mod spawned;
pub mod topics;

use std::time::Duration;

pub use brokers::{PrivateBroker, PrivateCluster, SaslBroker};
pub use database::{admin_database_url, PrivatePostgres, Tenant, TestDb};
pub use topics::{kafka_brokers, read_topic, ReadRecord, TestTopic};

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
