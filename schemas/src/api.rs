//! HTTP wire types that clients see: the 201 body and the error bodies.
//!
//! They follow the seed contract (`deployment-webhooks.md`) and the shape of
//! its API family (FastAPI): `{"detail": "..."}` for simple errors and
//! `{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}` for validation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::DeploymentReported;
use crate::fields::{DeploymentSource, DeploymentStatus};

/// The 201 body of `POST /api/v1/deployments/webhook`, field for field as the
/// seed gives it. Timestamps are RFC 3339 in UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentResponse {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub repo_full_name: String,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    pub status: DeploymentStatus,
    pub source: DeploymentSource,
    #[serde(with = "rfc3339")]
    pub deployed_at: DateTime<Utc>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<&DeploymentReported> for DeploymentResponse {
    fn from(e: &DeploymentReported) -> Self {
        Self {
            id: e.deployment_id,
            environment_id: e.environment_id,
            repo_full_name: e.repository.to_string(),
            branch: e.branch.as_ref().map(ToString::to_string),
            commit_sha: e.commit_sha.as_ref().map(ToString::to_string),
            status: e.status,
            source: e.source,
            deployed_at: e.deployed_at,
            created_at: e.received_at,
        }
    }
}

/// `{"detail": "..."}`: 401, 404, 413, 415, 429, 503.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    pub detail: String,
}

/// The 403 body: the key is valid but lacks the scope the route needs.
/// `missing_scope` is one of `ingest`, `read`, `admin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forbidden {
    pub detail: String,
    pub missing_scope: String,
}

/// One problem in a 422 body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationIssue {
    /// Where: `["body", "commit_sha"]`, `["body"]`, `["header", "idempotency-key"]`.
    pub loc: Vec<LocPart>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A path element in `loc`: a field name or an array index / byte position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LocPart {
    Field(String),
    Index(u64),
}

impl From<&str> for LocPart {
    fn from(s: &str) -> Self {
        LocPart::Field(s.to_owned())
    }
}

/// `{"detail": [ ...issues ]}`: 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationErrors {
    pub detail: Vec<ValidationIssue>,
}

/// Serializes timestamps as RFC 3339 UTC with a `Z`, seconds precision unless
/// the value has sub-second digits.
pub mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
