//! The wire contract of the deployment pipeline, and nothing else: no I/O.
//!
//! - [`fields`]: validated newtypes (`CommitSha`, `RepoFullName`, ...) and the
//!   status/source enums, shared by the webhook validator and the event decoder.
//! - [`event`]: `DeploymentReported` (versions 1 and 2), its Kafka key and
//!   CloudEvents headers.
//! - [`commit`]: the commits a version-2 event lists.
//! - [`topic`]: the topics and their configuration.
//! - [`api`]: the HTTP bodies clients see.
//!
//! The JSON Schema of each released event version
//! (`deployment-reported.v1.schema.json`, `.v2.`, `.v3.`), the
//! OpenAPI document (`openapi.json`) and golden fixtures (`fixtures/`) sit beside
//! this crate's `Cargo.toml`; the tests hold code and files together.

pub mod api;
pub mod commit;
pub mod event;
pub mod fields;
pub mod topic;

pub use commit::{Commit, MAX_COMMITS};
pub use event::{DecodeError, DeploymentReported, LATEST_SCHEMA_VERSION, SCHEMA_VERSION};
pub use fields::{
    BranchName, CommitAuthor, CommitSha, CommitSubject, DeploymentSource, DeploymentStatus,
    DisplayName, EnvironmentName, ExternalId, ExtraData, FieldError, RepoFullName,
};
pub use topic::Topic;

/// The JSON Schema (draft 2020-12) of `DeploymentReported` v1.
pub const DEPLOYMENT_REPORTED_V1_SCHEMA: &str =
    include_str!("../deployment-reported.v1.schema.json");

/// The JSON Schema (draft 2020-12) of `DeploymentReported` v2.
pub const DEPLOYMENT_REPORTED_V2_SCHEMA: &str =
    include_str!("../deployment-reported.v2.schema.json");

/// The JSON Schema (draft 2020-12) of `DeploymentReported` v3.
pub const DEPLOYMENT_REPORTED_V3_SCHEMA: &str =
    include_str!("../deployment-reported.v3.schema.json");

/// Every released version's JSON Schema, oldest first: kept forever, since
/// the topic keeps every event ever written (`docs/event-versions.md`).
pub const EVENT_SCHEMAS: [(u32, &str); 3] = [
    (1, DEPLOYMENT_REPORTED_V1_SCHEMA),
    (2, DEPLOYMENT_REPORTED_V2_SCHEMA),
    (3, DEPLOYMENT_REPORTED_V3_SCHEMA),
];

/// The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");
