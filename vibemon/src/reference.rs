//! `vibemon workspace|environment|key`: the reference data in Postgres.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;
use vibemon_schemas::{DisplayName, EnvironmentName};
use vibemon_store::scopes::Scopes;
use vibemon_store::{keys, reference};

use crate::cli::{Db, EnvironmentCommand, KeyCommand, WorkspaceCommand};
use crate::error::{CliError, CliResult};
use crate::output;

pub async fn connect(db: &Db) -> CliResult<PgPool> {
    vibemon_store::connect(&db.database_url, 2)
        .await
        .map_err(|e| CliError::db("connecting to DATABASE_URL", e))
}

pub async fn require_workspace(pool: &PgPool, id: Uuid) -> CliResult<()> {
    match reference::get_workspace(pool, id).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(CliError::NotFound(format!(
            "workspace {id} not found: list workspaces with `vibemon workspace list`"
        ))),
        Err(e) => Err(CliError::db("looking up the workspace", e)),
    }
}

/// A workspace or key name, checked by the same rule the event decoder uses.
fn check_label(what: &str, name: &str) -> CliResult<DisplayName> {
    if name.trim().is_empty() {
        return Err(CliError::Invalid(format!(
            "{what} name must be 1 to 200 characters, not blank"
        )));
    }
    DisplayName::parse(name).map_err(|e| CliError::Invalid(format!("{what} {e}")))
}

/// One row of a table of named things.
fn named_row(id: Uuid, name: &str, created: DateTime<Utc>) -> Vec<String> {
    vec![id.to_string(), name.to_owned(), output::when(Some(created))]
}

/// What a command that makes or changes one thing prints: the thing as JSON
/// with `--json`, else its id alone (for `$(…)` in scripts).
fn print_one(json: bool, value: &impl Serialize, id: Uuid) {
    if json {
        output::json(value)
    } else {
        crate::output::line(id)
    }
}

pub async fn workspace(cmd: WorkspaceCommand, json: bool) -> CliResult<()> {
    match cmd {
        WorkspaceCommand::Create { db, name } => create_workspace(&db, &name, json).await,
        WorkspaceCommand::List { db } => list_workspaces(&db, json).await,
    }
}

async fn create_workspace(db: &Db, name: &str, json: bool) -> CliResult<()> {
    let name = check_label("workspace", name)?;
    let pool = connect(db).await?;
    let ws = reference::create_workspace(&pool, &name)
        .await
        .map_err(|e| CliError::db("creating the workspace", e))?;
    print_one(json, &ws, ws.id);
    Ok(())
}

async fn list_workspaces(db: &Db, json: bool) -> CliResult<()> {
    let pool = connect(db).await?;
    let all = reference::list_workspaces(&pool)
        .await
        .map_err(|e| CliError::db("listing workspaces", e))?;
    output::list(json, &all, &["id", "name", "created"], |w| {
        named_row(w.id, &w.name, w.created_at)
    });
    Ok(())
}

pub async fn environment(cmd: EnvironmentCommand, json: bool) -> CliResult<()> {
    match cmd {
        EnvironmentCommand::Create {
            db,
            workspace,
            name,
        } => create_environment(&db, workspace, name, json).await,
        EnvironmentCommand::List { db, workspace } => list_environments(&db, workspace, json).await,
        EnvironmentCommand::Rename {
            db,
            workspace,
            name,
            new_name,
        } => rename_environment(&db, workspace, &name, new_name, json).await,
        EnvironmentCommand::Delete {
            db,
            workspace,
            name,
            force,
        } => delete_environment(&db, workspace, &name, force, json).await,
    }
}

async fn create_environment(db: &Db, workspace: Uuid, name: String, json: bool) -> CliResult<()> {
    let name = EnvironmentName::parse(name).map_err(|e| CliError::Invalid(e.msg))?;
    let pool = connect(db).await?;
    require_workspace(&pool, workspace).await?;
    let env = match reference::create_environment(&pool, workspace, name.as_str()).await {
        Ok(env) => env,
        Err(e) if vibemon_store::is_unique_violation(&e) => {
            return Err(CliError::Conflict(format!(
                "environment {name:?} already exists in workspace {workspace}: list them with `vibemon environment list --workspace {workspace}`"
            )))
        }
        Err(e) => return Err(CliError::db("creating the environment", e)),
    };
    print_one(json, &env, env.id);
    Ok(())
}

async fn list_environments(db: &Db, workspace: Uuid, json: bool) -> CliResult<()> {
    let pool = connect(db).await?;
    require_workspace(&pool, workspace).await?;
    let all = reference::list_environments(&pool, workspace)
        .await
        .map_err(|e| CliError::db("listing environments", e))?;
    output::list(json, &all, &["id", "name", "created"], |e| {
        named_row(e.id, &e.name, e.created_at)
    });
    Ok(())
}

async fn rename_environment(
    db: &Db,
    workspace: Uuid,
    name: &str,
    new_name: String,
    json: bool,
) -> CliResult<()> {
    let new_name = EnvironmentName::parse(new_name).map_err(|e| CliError::Invalid(e.msg))?;
    let pool = connect(db).await?;
    require_workspace(&pool, workspace).await?;
    let env = match reference::rename_environment(&pool, workspace, name, new_name.as_str()).await {
        Ok(Some(env)) => env,
        Ok(None) => return Err(env_not_found(name, workspace)),
        Err(e) if vibemon_store::is_unique_violation(&e) => {
            return Err(CliError::Conflict(format!(
                "environment {new_name:?} already exists in workspace {workspace}"
            )))
        }
        Err(e) => return Err(CliError::db("renaming the environment", e)),
    };
    print_one(json, &env, env.id);
    Ok(())
}

async fn delete_environment(
    db: &Db,
    workspace: Uuid,
    name: &str,
    force: bool,
    json: bool,
) -> CliResult<()> {
    let pool = connect(db).await?;
    require_workspace(&pool, workspace).await?;
    let env = reference::find_environment(&pool, workspace, name)
        .await
        .map_err(|e| CliError::db("looking up the environment", e))?
        .ok_or_else(|| env_not_found(name, workspace))?;
    let used = reference::count_deployments(&pool, env.id)
        .await
        .map_err(|e| CliError::db("counting deployments", e))?;
    if used > 0 && !force {
        return Err(CliError::Conflict(format!(
            "environment {name:?} has {used} deployments; ingest would then refuse its reports. Add --force to delete it anyway (its history is kept)"
        )));
    }
    reference::delete_environment(&pool, env.id)
        .await
        .map_err(|e| CliError::db("deleting the environment", e))?;
    print_one(json, &env, env.id);
    Ok(())
}

fn env_not_found(name: &str, workspace: Uuid) -> CliError {
    CliError::NotFound(format!(
        "environment {name:?} not found in workspace {workspace} (names are case-sensitive): list them with `vibemon environment list --workspace {workspace}`"
    ))
}

pub async fn key(cmd: KeyCommand, json: bool) -> CliResult<()> {
    match cmd {
        KeyCommand::Create {
            db,
            workspace,
            name,
            scope,
        } => create_key(&db, workspace, &name, scope, json).await,
        KeyCommand::Revoke { db, key_id } => revoke_key(&db, key_id, json).await,
        KeyCommand::List { db, workspace } => list_keys(&db, workspace, json).await,
    }
}

async fn create_key(
    db: &Db,
    workspace: Uuid,
    name: &str,
    scopes: Scopes,
    json: bool,
) -> CliResult<()> {
    let name = check_label("key", name)?;
    let pool = connect(db).await?;
    require_workspace(&pool, workspace).await?;
    let (info, plaintext) = keys::create(&pool, workspace, &name, scopes)
        .await
        .map_err(|e| CliError::db("creating the key", e))?;
    if json {
        let mut v = serde_json::to_value(&info).expect("serializable");
        v["key"] = serde_json::Value::from(plaintext);
        output::json(&v)
    } else {
        crate::output::line(&plaintext);
        eprintln!(
            "key {} created with scope {}; this is the only time it is shown: store it as a CI secret now",
            info.id, info.scopes
        );
    }
    Ok(())
}

async fn revoke_key(db: &Db, key_id: Uuid, json: bool) -> CliResult<()> {
    let pool = connect(db).await?;
    let info = keys::revoke(&pool, key_id, None)
        .await
        .map_err(|e| CliError::db("revoking the key", e))?
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "key {key_id} not found: list keys with `vibemon key list --workspace <id>`"
            ))
        })?;
    print_one(json, &info, info.id);
    Ok(())
}

async fn list_keys(db: &Db, workspace: Uuid, json: bool) -> CliResult<()> {
    let pool = connect(db).await?;
    require_workspace(&pool, workspace).await?;
    let all = keys::list(&pool, workspace)
        .await
        .map_err(|e| CliError::db("listing keys", e))?;
    output::list(
        json,
        &all,
        &[
            "id",
            "name",
            "prefix",
            "scope",
            "created",
            "last used",
            "revoked",
        ],
        key_row,
    );
    Ok(())
}

fn key_row(k: &keys::KeyInfo) -> Vec<String> {
    vec![
        k.id.to_string(),
        k.name.clone(),
        format!("{}{}", keys::KEY_PREFIX, k.prefix),
        k.scopes.to_string(),
        output::when(Some(k.created_at)),
        output::when(k.last_used_at),
        output::when(k.revoked_at),
    ]
}
