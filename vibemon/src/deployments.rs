//! `vibemon deployments list|at`: the read API's queries, from the CLI.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vibemon_schemas::{DeploymentStatus, EnvironmentName};
use vibemon_store::read::{self, Cursor, DeploymentFilter};
use vibemon_store::reference;

use crate::cli::DeploymentsCommand;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::reference::connect;

fn time(flag: &str, s: &str) -> CliResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            CliError::Invalid(format!(
                "--{flag} {s:?} is not an RFC 3339 timestamp such as 2024-01-15T10:30:00Z: {e}"
            ))
        })
}

async fn environment_id(pool: &sqlx::PgPool, workspace: Uuid, name: &str) -> CliResult<Uuid> {
    let name = EnvironmentName::parse(name).map_err(|e| CliError::Invalid(e.msg))?;
    reference::find_environment(pool, workspace, name.as_str())
        .await
        .map_err(|e| CliError::db("looking up the environment", e))?
        .map(|e| e.id)
        .ok_or_else(|| CliError::NotFound(format!(
            "environment {name:?} not found in workspace {workspace} (names are case-sensitive): list them with `vibemon environment list --workspace {workspace}`"
        )))
}

pub async fn run(cmd: DeploymentsCommand, json: bool) -> CliResult<()> {
    match cmd {
        DeploymentsCommand::List {
            db,
            workspace,
            environment,
            repository,
            status,
            since,
            until,
            limit,
            cursor,
        } => {
            let status = status
                .map(|s| {
                    DeploymentStatus::parse(&s)
                        .map(|s| s.as_str().to_owned())
                        .map_err(|e| CliError::Invalid(e.msg))
                })
                .transpose()?;
            let since = since.map(|s| time("since", &s)).transpose()?;
            let until = until.map(|s| time("until", &s)).transpose()?;
            let cursor = cursor
                .map(|c| {
                    Cursor::decode(&c).ok_or_else(|| {
                        CliError::Invalid("--cursor is not a next_cursor this tool printed".into())
                    })
                })
                .transpose()?;
            let pool = connect(&db).await?;
            let environment_id = match environment {
                Some(name) => Some(environment_id(&pool, workspace, &name).await?),
                None => None,
            };
            let filter = DeploymentFilter {
                environment_id,
                repository,
                status,
                since,
                until,
            };
            let page = read::list_deployments(&pool, workspace, &filter, cursor, limit)
                .await
                .map_err(|e| CliError::db("listing deployments", e))?;
            if json {
                output::json(&page);
            } else {
                output::table(
                    &[
                        "deployed at",
                        "environment",
                        "repository",
                        "status",
                        "commit",
                        "branch",
                        "id",
                    ],
                    page.items
                        .iter()
                        .map(|d| {
                            vec![
                                output::when(Some(d.deployed_at)),
                                d.environment.clone(),
                                d.repo_full_name.clone(),
                                d.status.clone(),
                                d.commit_sha
                                    .as_deref()
                                    .map_or("-".into(), |s| s[..12].to_owned()),
                                d.branch.clone().unwrap_or_else(|| "-".into()),
                                d.id.to_string(),
                            ]
                        })
                        .collect(),
                );
                if let Some(next) = page.next_cursor {
                    eprintln!("more: --cursor {next}");
                }
            }
        }
        DeploymentsCommand::At {
            db,
            workspace,
            environment,
            at,
            repository,
        } => {
            let at = at
                .map(|s| time("at", &s))
                .transpose()?
                .unwrap_or_else(Utc::now);
            let pool = connect(&db).await?;
            let env = environment_id(&pool, workspace, &environment).await?;
            let running = read::deployed_at(&pool, workspace, env, at, repository.as_deref())
                .await
                .map_err(|e| CliError::db("querying deployments", e))?;
            if json {
                output::json(
                    &serde_json::json!({ "environment": environment, "at": at, "deployed": running }),
                );
            } else {
                output::table(
                    &[
                        "repository",
                        "commit",
                        "branch",
                        "deployed at",
                        "deployment",
                    ],
                    running
                        .iter()
                        .map(|r| {
                            vec![
                                r.repo_full_name.clone(),
                                r.commit_sha.clone().unwrap_or_else(|| "-".into()),
                                r.branch.clone().unwrap_or_else(|| "-".into()),
                                output::when(Some(r.deployed_at)),
                                r.deployment_id.to_string(),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }
    Ok(())
}
