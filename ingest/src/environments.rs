//! Resolves an environment name to its id within a workspace, through a short
//! cache so the hot path does not query Postgres per request.
//!
//! Both answers are cached for the TTL (default 5 s): a newly created
//! environment is accepted within it, and a flood of requests for a missing
//! one costs one query per TTL.

use std::time::Duration;

use moka::future::Cache;
use sqlx::PgPool;
use uuid::Uuid;
use vibemon_schemas::EnvironmentName;
use vibemon_store::reference;

use crate::error::ApiError;

#[derive(Clone)]
pub struct Environments {
    pool: PgPool,
    cache: Cache<(Uuid, String), Option<Uuid>>,
}

impl Environments {
    pub fn new(pool: PgPool, ttl: Duration) -> Self {
        Self {
            pool,
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The environment's id, or 404 when the workspace has none of that name.
    pub async fn resolve(
        &self,
        workspace_id: Uuid,
        name: &EnvironmentName,
    ) -> Result<Uuid, ApiError> {
        let key = (workspace_id, name.as_str().to_owned());
        let pool = self.pool.clone();
        let found = self
            .cache
            .try_get_with(key, async move {
                reference::find_environment(&pool, workspace_id, name.as_str())
                    .await
                    .map(|env| env.map(|e| e.id))
            })
            .await
            .map_err(|e| ApiError::ReferenceUnavailable(e.to_string()))?;
        found.ok_or_else(|| ApiError::EnvironmentNotFound(name.to_string()))
    }
}
