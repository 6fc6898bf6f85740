//! `DeploymentReported`, schema version 1: the one event on the topic.
//!
//! ingest builds it from an accepted webhook; the projector and RCA consumers
//! decode it. The JSON Schema `deployment-reported.v1.schema.json` beside this
//! crate's `Cargo.toml` describes the same shape for consumers in other
//! languages, and the tests hold the two together with golden fixtures. This is
//! a compatibility promise: change it only by adding a new version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::fields::{
    check_timestamp_range, BranchName, CommitSha, DeploymentSource, DeploymentStatus, DisplayName,
    EnvironmentName, ExternalId, ExtraData, FieldError, RepoFullName,
};

/// The only schema version this code writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The CloudEvents `type` of this event.
pub const CE_TYPE: &str = "com.vibemonitor.deployment.reported.v1";

/// One accepted deployment report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentReported {
    /// Always [`SCHEMA_VERSION`]; decoders refuse any other.
    pub schema_version: u32,
    /// UUIDv7, unique per report; derived from the `Idempotency-Key` when one
    /// was sent, so a retried request carries the same id.
    pub event_id: Uuid,
    /// The `id` answered in the 201: the event id itself, or derived from
    /// (workspace, environment, repository, external_id) so all reports of
    /// one external deployment share it.
    pub deployment_id: Uuid,
    pub workspace_id: Uuid,
    pub environment_id: Uuid,
    /// The environment's name at the time of the report, for readers that
    /// have no Postgres.
    pub environment: EnvironmentName,
    pub repository: RepoFullName,
    pub branch: Option<BranchName>,
    pub commit_sha: Option<CommitSha>,
    pub status: DeploymentStatus,
    pub source: DeploymentSource,
    /// When the CI says it deployed; defaults to `received_at`.
    pub deployed_at: DateTime<Utc>,
    /// Free-form metadata from the CI, always a JSON object.
    pub extra_data: ExtraData,
    pub external_id: Option<ExternalId>,
    /// When ingest accepted the request; becomes the 201's `created_at`.
    pub received_at: DateTime<Utc>,
    /// Which API key (so which CI system) reported it.
    pub api_key_id: Uuid,
    /// That key's name when it reported, so the audit trail needs no join
    /// and a rebuild from the topic alone reproduces it.
    pub api_key_name: DisplayName,
}

/// Why bytes from the topic are not a usable event; the projector sends such
/// records to the dead-letter topic with this text as the reason.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The bytes are not JSON, or not this shape, or a field breaks its rules.
    #[error("invalid DeploymentReported v1: {0}")]
    Invalid(#[from] serde_json::Error),
    /// A timestamp that JSON carries but ingest would never have accepted
    /// and Postgres may not hold.
    #[error("invalid DeploymentReported v1: {0}")]
    OutOfRange(FieldError),
    /// A producer newer (or older) than this code wrote it; not ours to guess.
    #[error("unsupported schema_version {0} (this build reads version {SCHEMA_VERSION})")]
    UnsupportedVersion(u64),
}

impl DecodeError {
    /// A stable label for metrics and the DLQ's `dlq_reason_class` header.
    pub fn class(&self) -> &'static str {
        match self {
            DecodeError::Invalid(_) | DecodeError::OutOfRange(_) => "invalid",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
        }
    }
}

impl DeploymentReported {
    /// Decodes and validates one record value.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<u64>,
        }
        match serde_json::from_slice::<DeploymentReported>(payload) {
            Ok(event) if event.schema_version == SCHEMA_VERSION => {
                check_timestamp_range(event.deployed_at, "deployed_at")
                    .and_then(|()| check_timestamp_range(event.received_at, "received_at"))
                    .map_err(DecodeError::OutOfRange)?;
                Ok(event)
            }
            Ok(event) => Err(DecodeError::UnsupportedVersion(event.schema_version.into())),
            Err(err) => match serde_json::from_slice::<Version>(payload) {
                Ok(Version {
                    schema_version: Some(v),
                }) if v != u64::from(SCHEMA_VERSION) => Err(DecodeError::UnsupportedVersion(v)),
                _ => Err(DecodeError::Invalid(err)),
            },
        }
    }

    /// The record value: compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serializes")
    }

    /// The record key: reports for one environment share a partition, so they
    /// stay in order.
    pub fn partition_key(&self) -> String {
        format!("{}:{}", self.workspace_id, self.environment_id)
    }

    /// CloudEvents Kafka binding (binary mode) headers, as (name, value) pairs.
    pub fn cloudevents_headers(&self) -> [(&'static str, String); 6] {
        [
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", self.event_id.to_string()),
            ("ce_type", CE_TYPE.to_owned()),
            ("ce_source", format!("/workspaces/{}", self.workspace_id)),
            (
                "ce_time",
                self.received_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
            ("content-type", "application/json".to_owned()),
        ]
    }
}

/// Namespace for deriving deterministic ids (UUIDv5) from client-given keys.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a1e_5c3b_0d4f_4b8e_9a51_7c2d_e0f3_a9b4);

/// The event id for a request carrying an `Idempotency-Key`: the same
/// (workspace, key) always gives the same id, so retries collapse downstream.
pub fn idempotent_event_id(workspace_id: Uuid, idempotency_key: &str) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("idempotency:{workspace_id}:{idempotency_key}").as_bytes(),
    )
}

/// The deployment id shared by every report of one external deployment.
///
/// An external deployment is one repository's deployment to one environment:
/// Jenkins' `BUILD_NUMBER` or one CI run that deploys two services reports
/// the same `external_id` for two repositories, and those are two
/// deployments. With the repository in the identity, a deployment can never
/// move from one repository to another, so `current_deployments` never points
/// at a deployment that left its repository.
pub fn external_deployment_id(
    workspace_id: Uuid,
    environment_id: Uuid,
    repository: &RepoFullName,
    external_id: &ExternalId,
) -> Uuid {
    // Both parts are length-prefixed: a repository may contain ':'-free
    // characters only, but an external id may contain anything visible.
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!(
            "external:v2:{workspace_id}:{environment_id}:{}:{repository}:{external_id}",
            repository.as_str().len()
        )
        .as_bytes(),
    )
}

/// The Kafka header that carries [`request_fingerprint`] of the webhook body
/// for a request with an `Idempotency-Key`, so the projector can tell a
/// retry (same fingerprint) from a reuse of the key for another report.
pub const REQUEST_FINGERPRINT_HEADER: &str = "vibemon_request_fingerprint";

/// The fingerprint of a request body, as the IETF Idempotency-Key draft
/// describes: `sha256:` and the hex digest of the exact bytes. A client's
/// retry sends the same bytes.
pub fn request_fingerprint(body: &[u8]) -> String {
    content_digest(body)
}

/// `sha256:` and the hex SHA-256 of `bytes`: how the pipeline names exact
/// content (a request body, a record's value).
pub fn content_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn idempotency_keys_give_stable_ids_per_workspace() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(idempotent_event_id(a, "k1"), idempotent_event_id(a, "k1"));
        assert_ne!(idempotent_event_id(a, "k1"), idempotent_event_id(a, "k2"));
        assert_ne!(idempotent_event_id(a, "k1"), idempotent_event_id(b, "k1"));
    }

    #[test]
    fn external_ids_are_scoped_to_one_environment_and_repository() {
        let ws = Uuid::now_v7();
        let (e1, e2) = (Uuid::now_v7(), Uuid::now_v7());
        let run = ExternalId::parse("run-42").unwrap();
        let (api, web) = (
            RepoFullName::parse("acme/api").unwrap(),
            RepoFullName::parse("acme/web").unwrap(),
        );
        let id = |env, repo| external_deployment_id(ws, env, repo, &run);
        assert_eq!(id(e1, &api), id(e1, &api));
        assert_ne!(id(e1, &api), id(e2, &api));
        assert_ne!(id(e1, &api), id(e1, &web));
    }

    #[test]
    fn request_fingerprints_are_sha256_of_the_exact_bytes() {
        assert_eq!(
            request_fingerprint(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(request_fingerprint(b"{}"), request_fingerprint(b"{ }"));
    }

    #[test]
    fn fields_that_postgres_would_refuse_do_not_decode() {
        let good: Value = serde_json::from_str(include_str!(
            "../fixtures/deployment-reported.v1.minimal.json"
        ))
        .unwrap();
        assert!(DeploymentReported::decode(good.to_string().as_bytes()).is_ok());
        let broken = |field: &str, value: Value| {
            let mut v = good.clone();
            v[field] = value;
            DeploymentReported::decode(v.to_string().as_bytes())
        };
        for (field, value) in [
            ("api_key_name", Value::from("ci\u{0}key")),
            ("api_key_name", Value::from("")),
            ("api_key_name", Value::from("x".repeat(201))),
            ("extra_data", serde_json::json!({"k": "a\u{0}b"})),
            ("extra_data", serde_json::json!({"a\u{0}": 1})),
            ("branch", Value::from("main\u{0}")),
            ("external_id", Value::from("run\u{0}")),
            ("deployed_at", Value::from("0001-01-01T00:00:00Z")),
            ("deployed_at", Value::from("+10000-01-01T00:00:00Z")),
            ("received_at", Value::from("1900-01-01T00:00:00Z")),
        ] {
            let err = broken(field, value.clone()).expect_err(field);
            assert_eq!(err.class(), "invalid", "{field} = {value}: {err}");
        }
    }

    #[test]
    fn events_earlier_builds_accepted_still_decode() {
        // Before names refused invisible characters, ingest accepted and
        // published them; a rebuild must apply those events as it did then.
        let good: Value = serde_json::from_str(include_str!(
            "../fixtures/deployment-reported.v1.minimal.json"
        ))
        .unwrap();
        for (field, value) in [
            ("api_key_name", "ci\u{200B}key"),
            ("branch", "feature\u{202E}x"),
            ("external_id", "run\u{FEFF}42"),
        ] {
            let mut v = good.clone();
            v[field] = Value::from(value);
            let event = DeploymentReported::decode(v.to_string().as_bytes())
                .unwrap_or_else(|e| panic!("{field}: {e}"));
            let again: Value = serde_json::from_slice(&event.encode()).unwrap();
            assert_eq!(again[field], Value::from(value));
        }
    }

    #[test]
    fn an_unknown_schema_version_is_named_in_the_error() {
        let err =
            DeploymentReported::decode(br#"{"schema_version": 2, "whatever": true}"#).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedVersion(2)), "{err}");
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        for bytes in [&b""[..], b"\xff\xfe", b"[]", b"{\"schema_version\":1}"] {
            assert!(matches!(
                DeploymentReported::decode(bytes),
                Err(DecodeError::Invalid(_))
            ));
        }
    }
}
