//! The wire contract of the deployment pipeline, and nothing else: no I/O.
//!
//! - [`fields`]: validated newtypes (`CommitSha`, `RepoFullName`, ...) and the
//!   status/source enums, shared by the webhook validator and the event decoder.
//! - [`event`]: `DeploymentReported` v1, its Kafka key and CloudEvents headers.
//! - [`topic`]: the topics and their configuration.
//! - [`api`]: the HTTP bodies clients see.
//!
//! The JSON Schema of the event (`deployment-reported.v1.schema.json`), the
//! OpenAPI document (`openapi.json`) and golden fixtures (`fixtures/`) sit beside
//! this crate's `Cargo.toml`; the tests hold code and files together.

pub mod api;
pub mod event;
pub mod fields;
pub mod topic;

pub use event::{DecodeError, DeploymentReported, SCHEMA_VERSION};
pub use fields::{
    BranchName, CommitSha, DeploymentSource, DeploymentStatus, DisplayName, EnvironmentName,
    ExternalId, ExtraData, FieldError, RepoFullName,
};
pub use topic::Topic;

/// The JSON Schema (draft 2020-12) of `DeploymentReported` v1.
pub const DEPLOYMENT_REPORTED_V1_SCHEMA: &str =
    include_str!("../deployment-reported.v1.schema.json");

/// The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");
