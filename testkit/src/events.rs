//! Events as ingest would publish them, for tests that feed the topic
//! directly (projector, replay, tail).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use uuid::Uuid;
use vibemon_schemas::{
    DeploymentReported, DeploymentSource, DeploymentStatus, EnvironmentName, ExternalId,
    RepoFullName, SCHEMA_VERSION,
};

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The world events are reported in: a fresh workspace, environment and key.
#[derive(Clone, Copy)]
pub struct World {
    pub workspace_id: Uuid,
    pub environment_id: Uuid,
    pub key_id: Uuid,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        Self {
            workspace_id: Uuid::now_v7(),
            environment_id: Uuid::now_v7(),
            key_id: Uuid::now_v7(),
        }
    }

    /// A success report of `repo` at `deployed_at`.
    pub fn report(&self, repo: &str, deployed_at: DateTime<Utc>) -> DeploymentReported {
        let id = Uuid::now_v7();
        DeploymentReported {
            schema_version: SCHEMA_VERSION,
            event_id: id,
            deployment_id: id,
            workspace_id: self.workspace_id,
            environment_id: self.environment_id,
            environment: EnvironmentName::parse("production").unwrap(),
            repository: RepoFullName::parse(repo).unwrap(),
            branch: None,
            commit_sha: Some(
                vibemon_schemas::CommitSha::parse(format!(
                    "{:040x}",
                    id.as_u128() & ((1u128 << 120) - 1)
                ))
                .unwrap(),
            ),
            status: DeploymentStatus::Success,
            source: DeploymentSource::Webhook,
            deployed_at,
            extra_data: Default::default(),
            external_id: None,
            received_at: deployed_at,
            api_key_id: self.key_id,
            api_key_name: vibemon_schemas::DisplayName::parse("test").unwrap(),
            previous_commit_sha: None,
            commits: Vec::new(),
        }
    }

    /// A report of one external deployment in a given status.
    pub fn external(
        &self,
        repo: &str,
        external_id: &str,
        status: DeploymentStatus,
        deployed_at: DateTime<Utc>,
    ) -> DeploymentReported {
        let mut e = self.report(repo, deployed_at);
        let ext = ExternalId::parse(external_id).unwrap();
        e.deployment_id = vibemon_schemas::event::external_deployment_id(
            self.workspace_id,
            self.environment_id,
            &e.repository,
            &ext,
        );
        e.external_id = Some(ext);
        e.status = status;
        e
    }
}

pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap()
}

/// Publishes events as ingest would (same key, same encoding).
pub async fn publish(p: &FutureProducer, topic: &str, events: &[DeploymentReported]) {
    for e in events {
        publish_raw(p, topic, &e.partition_key(), &e.encode()).await;
    }
}

/// Publishes one event as ingest does for a request with an
/// `Idempotency-Key`: with the request-fingerprint header.
pub async fn publish_fingerprinted(
    p: &FutureProducer,
    topic: &str,
    event: &DeploymentReported,
    fingerprint: &str,
) {
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: vibemon_schemas::event::REQUEST_FINGERPRINT_HEADER,
        value: Some(fingerprint),
    });
    p.send(
        FutureRecord::to(topic)
            .key(&event.partition_key())
            .payload(&event.encode())
            .headers(headers),
        Duration::from_secs(10),
    )
    .await
    .expect("acknowledged");
}

pub async fn publish_raw(p: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    p.send(
        FutureRecord::to(topic).key(key).payload(payload),
        Duration::from_secs(10),
    )
    .await
    .expect("acknowledged");
}
