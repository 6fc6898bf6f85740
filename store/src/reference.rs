//! Workspaces and environments: the reference data ingest resolves requests
//! against, and operators manage with `vibemon`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Environment {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

pub async fn create_workspace(
    pool: &PgPool,
    name: &vibemon_schemas::DisplayName,
) -> Result<Workspace, sqlx::Error> {
    sqlx::query_as::<_, Workspace>(
        "INSERT INTO workspaces (id, name) VALUES ($1, $2) RETURNING id, name, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(name.as_str())
    .fetch_one(pool)
    .await
}

pub async fn get_workspace(pool: &PgPool, id: Uuid) -> Result<Option<Workspace>, sqlx::Error> {
    sqlx::query_as::<_, Workspace>("SELECT id, name, created_at FROM workspaces WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn list_workspaces(pool: &PgPool) -> Result<Vec<Workspace>, sqlx::Error> {
    sqlx::query_as::<_, Workspace>(
        "SELECT id, name, created_at FROM workspaces ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
}

/// Creates an environment. The name must already be a valid
/// `EnvironmentName`; a duplicate name in the workspace is a unique violation.
pub async fn create_environment(
    pool: &PgPool,
    workspace_id: Uuid,
    name: &str,
) -> Result<Environment, sqlx::Error> {
    sqlx::query_as::<_, Environment>(
        "INSERT INTO environments (id, workspace_id, name) VALUES ($1, $2, $3)
         RETURNING id, workspace_id, name, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(workspace_id)
    .bind(name)
    .fetch_one(pool)
    .await
}

/// The environment called exactly `name` (case-sensitive) in a workspace.
pub async fn find_environment(
    pool: &PgPool,
    workspace_id: Uuid,
    name: &str,
) -> Result<Option<Environment>, sqlx::Error> {
    sqlx::query_as::<_, Environment>(
        "SELECT id, workspace_id, name, created_at FROM environments
         WHERE workspace_id = $1 AND name = $2",
    )
    .bind(workspace_id)
    .bind(name)
    .fetch_optional(pool)
    .await
}

pub async fn list_environments(
    pool: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<Environment>, sqlx::Error> {
    sqlx::query_as::<_, Environment>(
        "SELECT id, workspace_id, name, created_at FROM environments
         WHERE workspace_id = $1 ORDER BY name",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await
}

/// Renames an environment; `None` when it does not exist.
pub async fn rename_environment(
    pool: &PgPool,
    workspace_id: Uuid,
    name: &str,
    new_name: &str,
) -> Result<Option<Environment>, sqlx::Error> {
    sqlx::query_as::<_, Environment>(
        "UPDATE environments SET name = $3 WHERE workspace_id = $1 AND name = $2
         RETURNING id, workspace_id, name, created_at",
    )
    .bind(workspace_id)
    .bind(name)
    .bind(new_name)
    .fetch_optional(pool)
    .await
}

/// How many deployments reference an environment.
pub async fn count_deployments(pool: &PgPool, environment_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM deployments WHERE environment_id = $1")
        .bind(environment_id)
        .fetch_one(pool)
        .await
}

/// Deletes an environment. Its projected history stays: the read model is
/// what the topic says happened, and a replay would bring it back anyway.
/// Returns false when it did not exist.
pub async fn delete_environment(pool: &PgPool, environment_id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM environments WHERE id = $1")
        .bind(environment_id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(done > 0)
}
