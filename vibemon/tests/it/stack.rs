//! A real ingest and a real projector in the test's own process, on port 0,
//! stopped the way SIGTERM stops them (through `vibemon_testkit::spawned`).

use std::net::SocketAddr;

use vibemon_runtime::KafkaArgs;
use vibemon_testkit::spawned::Spawned;

/// A real ingest on port 0 for CLI tests that talk to it.
pub struct Ingest {
    pub addr: SocketAddr,
    service: Spawned,
}

impl Ingest {
    pub async fn spawn(db_url: &str, kafka: KafkaArgs) -> Self {
        Self::spawn_with(vibemon_ingest::config::Config::new(db_url, kafka)).await
    }

    pub async fn spawn_with(config: vibemon_ingest::config::Config) -> Self {
        let service = Spawned::start(|l, s| vibemon_ingest::serve(config, l, s)).await;
        Self {
            addr: service.addr,
            service,
        }
    }

    /// Posts `body` (JSON) to the webhook with the workspace key `key`.
    pub async fn post_webhook(
        &self,
        client: &reqwest::Client,
        key: &str,
        body: &'static str,
    ) -> reqwest::Response {
        client
            .post(self.service.url("/api/v1/deployments/webhook"))
            .header("X-Workspace-Key", key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Drains and stops; panics if it failed.
    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

/// A real projector in this process, stopped like SIGTERM would.
pub struct Projector(Spawned);

impl Projector {
    pub async fn spawn(db_url: &str, kafka: KafkaArgs, group: &str) -> Self {
        let config = vibemon_projector::config::Config::new(db_url, kafka, group);
        Self(Spawned::start(|l, s| vibemon_projector::serve(config, l, s)).await)
    }

    /// Runs a projector of `group` until it has caught up with the topic's
    /// end; panics if it failed.
    pub async fn until_caught_up(db_url: &str, kafka: KafkaArgs, group: &str) {
        let mut config = vibemon_projector::config::Config::new(db_url, kafka, group);
        config.until_caught_up = true;
        let service = Spawned::start(|l, s| vibemon_projector::serve(config, l, s)).await;
        service.finished().await.unwrap();
    }

    /// Finishes the batch, commits, leaves the group; panics if it failed.
    pub async fn stop(self) {
        self.0.stop().await.unwrap();
    }
}
