//! The environment of a delivery: the code host's name through the
//! receiver's `environment_map`, else the name itself, which must exist in
//! the workspace (the seed's rule) unless the receiver creates
//! environments on first sight.

use uuid::Uuid;
use vibemon_schemas::EnvironmentName;
use vibemon_store::integrations::Integration;
use vibemon_store::reference;

use crate::error::ApiError;
use crate::state::AppState;

/// Our environment for the code host's `named`: its id and name.
pub async fn resolve(
    state: &AppState,
    receiver: &Integration,
    named: &str,
) -> Result<(Uuid, EnvironmentName), ApiError> {
    let refused = |problem: String| ApiError::EnvironmentRefused {
        named: named.to_owned(),
        problem,
    };
    let mapped = receiver.environment_map.get(named);
    let name = EnvironmentName::parse(mapped.map_or(named, String::as_str)).map_err(|e| {
        refused(match mapped {
            Some(m) => format!(
                "is mapped to {m:?}, which is not a valid name here ({})",
                e.msg
            ),
            None => format!("is not a valid environment name here ({})", e.msg),
        })
    })?;
    match state
        .environments
        .resolve(receiver.workspace_id, &name)
        .await
    {
        Ok(id) => Ok((id, name)),
        Err(ApiError::EnvironmentNotFound(_)) if receiver.create_environments => {
            Ok((create(state, receiver.workspace_id, &name).await?, name))
        }
        Err(ApiError::EnvironmentNotFound(_)) => Err(refused(match mapped {
            Some(m) => format!("is mapped to '{m}', which does not exist in this workspace"),
            None => "does not exist in this workspace (names are case-sensitive)".to_owned(),
        })),
        Err(e) => Err(e),
    }
}

/// Creates the environment, or finds the one a concurrent delivery just
/// created. (The name cache may still say "none" for a few seconds; each
/// delivery meanwhile lands here and finds it.)
async fn create(
    state: &AppState,
    workspace_id: Uuid,
    name: &EnvironmentName,
) -> Result<Uuid, ApiError> {
    let unavailable = |e: sqlx::Error| ApiError::ReferenceUnavailable(e.to_string());
    match reference::create_environment(&state.pool, workspace_id, name.as_str()).await {
        Ok(env) => {
            tracing::info!(%workspace_id, environment = %name, "integration created an environment");
            Ok(env.id)
        }
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            reference::find_environment(&state.pool, workspace_id, name.as_str())
                .await
                .map_err(unavailable)?
                .map(|e| e.id)
                .ok_or_else(|| {
                    ApiError::Internal("environment vanished after a conflict".to_owned())
                })
        }
        Err(e) => Err(unavailable(e)),
    }
}
