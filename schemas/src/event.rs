//! `DeploymentReported`, schema versions 1 to 3: the one event on the topic.
//!
//! ingest builds it from an accepted webhook; the projector and RCA consumers
//! decode it. The JSON Schemas `deployment-reported.v{1,2,3}.schema.json` beside
//! this crate's `Cargo.toml` describe the same shapes for consumers in other
//! languages, and the tests hold them together with golden fixtures. This is
//! a compatibility promise: change it only by adding a new version, as
//! `docs/event-versions.md` says. Version 2 adds two optional fields
//! (`previous_commit_sha`, `commits`); an event without them is written as
//! version 1, byte for byte as before, so a v1 consumer reads it. Version 3
//! adds the `source` values `github` and `gitlab`, written only for a code
//! host's own events received natively.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::commit::{check_commit_list, Commit};
use crate::fields::{
    check_timestamp_range, BranchName, CommitSha, DeploymentSource, DeploymentStatus, DisplayName,
    EnvironmentName, ExternalId, ExtraData, FieldError, RepoFullName,
};

/// Version 1: what every event without the version-2 fields is written as.
pub const SCHEMA_VERSION: u32 = 1;

/// The newest version this code writes and reads; the decoder reads every
/// version from 1 to this one.
pub const LATEST_SCHEMA_VERSION: u32 = 3;

/// The CloudEvents `type` of a version: `com.vibemonitor.deployment.reported.v1`, `.v2`.
pub fn ce_type(version: u32) -> String {
    format!("com.vibemonitor.deployment.reported.v{version}")
}

/// The CloudEvents `dataschema` of a version: the `$id` of its JSON Schema.
pub fn ce_dataschema(version: u32) -> String {
    format!("https://vibemonitor.dev/schemas/deployment-reported.v{version}.schema.json")
}

/// One accepted deployment report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentReported {
    /// 1, or 2 when a version-2 field is present
    /// ([`DeploymentReported::version_needed`]); decoders refuse any other.
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
    /// Version 2: the commit the reporter believes was deployed before, so a
    /// rollback or a skipped deployment can be told from the topic. Never
    /// written as `null`: absent means not given.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_sha"
    )]
    pub previous_commit_sha: Option<CommitSha>,
    /// Version 2: the commits this deployment ships, at most
    /// [`crate::commit::MAX_COMMITS`], no SHA twice. Never written empty:
    /// absent means not given.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "commit_list"
    )]
    pub commits: Vec<Commit>,
}

/// `previous_commit_sha` when the key is present: a SHA, never `null`.
fn present_sha<'de, D: Deserializer<'de>>(d: D) -> Result<Option<CommitSha>, D::Error> {
    CommitSha::deserialize(d).map(Some)
}

/// `commits` when the key is present: a list by [`check_commit_list`].
fn commit_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Commit>, D::Error> {
    let commits = Vec::<Commit>::deserialize(d)?;
    check_commit_list(&commits).map_err(serde::de::Error::custom)?;
    Ok(commits)
}

/// Why bytes from the topic are not a usable event; the projector sends such
/// records to the dead-letter topic with this text as the reason.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// The bytes are not JSON, or not this shape, or a field breaks its rules.
    #[error("invalid DeploymentReported: {0}")]
    Invalid(#[from] serde_json::Error),
    /// A timestamp that JSON carries but ingest would never have accepted
    /// and Postgres may not hold.
    #[error("invalid DeploymentReported: {0}")]
    OutOfRange(FieldError),
    /// A field that its declared version does not have: version 1 forbids
    /// `commits` and `previous_commit_sha`, so a consumer of v1 never meets
    /// data it would drop unseen.
    #[error("invalid DeploymentReported v{version}: {field} needs schema_version {needed}")]
    NotInVersion {
        version: u32,
        field: &'static str,
        needed: u32,
    },
    /// A producer newer (or older) than this code wrote it; not ours to guess.
    #[error("unsupported schema_version {0} (this build reads versions {SCHEMA_VERSION} to {LATEST_SCHEMA_VERSION})")]
    UnsupportedVersion(u64),
}

impl DecodeError {
    /// A stable label for metrics and the DLQ's `dlq_reason_class` header.
    pub fn class(&self) -> &'static str {
        match self {
            DecodeError::Invalid(_)
            | DecodeError::OutOfRange(_)
            | DecodeError::NotInVersion { .. } => "invalid",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
        }
    }
}

impl DeploymentReported {
    /// Decodes and validates one record value, of any version from 1 to
    /// [`LATEST_SCHEMA_VERSION`].
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<u64>,
        }
        let readable =
            |v: u64| (u64::from(SCHEMA_VERSION)..=u64::from(LATEST_SCHEMA_VERSION)).contains(&v);
        match serde_json::from_slice::<DeploymentReported>(payload) {
            Ok(event) if readable(event.schema_version.into()) => {
                event.check()?;
                Ok(event)
            }
            Ok(event) => Err(DecodeError::UnsupportedVersion(event.schema_version.into())),
            Err(err) => match serde_json::from_slice::<Version>(payload) {
                Ok(Version {
                    schema_version: Some(v),
                }) if !readable(v) => Err(DecodeError::UnsupportedVersion(v)),
                _ => Err(DecodeError::Invalid(err)),
            },
        }
    }

    /// What serde cannot say: the timestamps' range, and no field newer
    /// than the declared version.
    fn check(&self) -> Result<(), DecodeError> {
        check_timestamp_range(self.deployed_at, "deployed_at")
            .and_then(|()| check_timestamp_range(self.received_at, "received_at"))
            .map_err(DecodeError::OutOfRange)?;
        let newer = [
            ("source", self.source.is_native_intake(), 3),
            ("previous_commit_sha", self.previous_commit_sha.is_some(), 2),
            ("commits", !self.commits.is_empty(), 2),
        ];
        match newer
            .iter()
            .find(|(_, present, needed)| *present && self.schema_version < *needed)
        {
            Some((field, _, needed)) => Err(DecodeError::NotInVersion {
                version: self.schema_version,
                field,
                needed: *needed,
            }),
            None => Ok(()),
        }
    }

    /// The lowest version that carries this event: 3 for a `source` of
    /// native intake (`github`, `gitlab`), 2 when it has a version-2 field,
    /// else 1. ingest writes this version, so a consumer of an older version
    /// keeps reading every event that has nothing new for it.
    pub fn version_needed(&self) -> u32 {
        if self.source.is_native_intake() {
            3
        } else if self.previous_commit_sha.is_some() || !self.commits.is_empty() {
            2
        } else {
            SCHEMA_VERSION
        }
    }

    /// The record value: compact JSON. A version-2 field that is not given
    /// is not written, so a version-1 event is byte for byte what builds
    /// before version 2 wrote.
    pub fn encode(&self) -> Vec<u8> {
        debug_assert!(
            self.schema_version >= self.version_needed(),
            "a v{} event carrying v{} fields",
            self.schema_version,
            self.version_needed()
        );
        serde_json::to_vec(self).expect("an event always serializes")
    }

    /// The record key: reports for one environment share a partition, so they
    /// stay in order.
    pub fn partition_key(&self) -> String {
        format!("{}:{}", self.workspace_id, self.environment_id)
    }

    /// CloudEvents Kafka binding (binary mode) headers, as (name, value)
    /// pairs. `ce_type` and `ce_dataschema` name the schema version, so a
    /// consumer can skip or dead-letter a version it does not know by its
    /// headers, without parsing the value.
    pub fn cloudevents_headers(&self) -> [(&'static str, String); 7] {
        [
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", self.event_id.to_string()),
            ("ce_type", ce_type(self.schema_version)),
            ("ce_dataschema", ce_dataschema(self.schema_version)),
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

/// The Kafka header of the CloudEvents distributed-tracing extension: the
/// W3C `traceparent` of the request that wrote the record. Not part of the
/// event (the value), so no schema version: every record ingest writes
/// carries it from its introduction on; older records have none.
pub const TRACEPARENT_HEADER: &str = "ce_traceparent";

/// The extension's `tracestate`, forwarded only when the request sent one
/// beside a valid `traceparent`.
pub const TRACESTATE_HEADER: &str = "ce_tracestate";

/// Longest `tracestate` carried on: W3C's 32 list members of at most 256
/// characters each would be 8 KiB; 512 bytes is what the spec asks every
/// vendor to propagate at least.
pub const TRACESTATE_MAX_LEN: usize = 512;

/// A W3C Trace Context `traceparent`, version `00`, parsed strictly:
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lowercase, ids
/// not all zero. Anything else is not a `traceparent` (ingest then starts a
/// trace of its own), so a value of this type is always well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: u128,
    parent_id: u64,
    flags: u8,
}

impl TraceParent {
    /// `None` when either id is all zero, which W3C forbids.
    pub fn new(trace_id: u128, parent_id: u64, flags: u8) -> Option<Self> {
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Strict parse of a header value; `None` for anything malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        let lower_hex = |s: &[u8]| s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if bytes.len() != 55
            || !value.starts_with("00-")
            || bytes[35] != b'-'
            || bytes[52] != b'-'
            || !lower_hex(&bytes[3..35])
            || !lower_hex(&bytes[36..52])
            || !lower_hex(&bytes[53..55])
        {
            return None;
        }
        Self::new(
            u128::from_str_radix(&value[3..35], 16).ok()?,
            u64::from_str_radix(&value[36..52], 16).ok()?,
            u8::from_str_radix(&value[53..55], 16).ok()?,
        )
    }

    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The id of the span that wrote the record (W3C's `parent-id`: the
    /// parent of whatever continues the trace).
    pub fn parent_id(&self) -> u64 {
        self.parent_id
    }

    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// The trace id as 32 lowercase hex digits, as Jaeger and the logs show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// A `tracestate` worth carrying on: 1 to [`TRACESTATE_MAX_LEN`] printable
/// ASCII characters. Its list syntax is the tracing vendors' business; this
/// only keeps control bytes and floods out of headers and logs.
pub fn acceptable_tracestate(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= TRACESTATE_MAX_LEN
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_traceparent_parses_strictly_and_prints_back() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(text).unwrap();
        assert_eq!(parsed.to_string(), text);
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.parent_id(), 0x00f0_67aa_0ba9_02b7);
        assert_eq!(parsed.flags(), 1);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0é736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

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
            DeploymentReported::decode(br#"{"schema_version": 4, "whatever": true}"#).unwrap_err();
        assert!(matches!(err, DecodeError::UnsupportedVersion(4)), "{err}");
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
