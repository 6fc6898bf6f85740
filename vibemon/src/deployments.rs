//! `vibemon deployments list|at`: the read API's queries, from the CLI.

use chrono::{DateTime, Utc};
use uuid::Uuid;
use vibemon_schemas::fields::parse_query_timestamp;
use vibemon_schemas::{DeploymentStatus, EnvironmentName};
use vibemon_store::read::{self, Cursor, DeploymentFilter, DeploymentView, Running};
use vibemon_store::reference;

use crate::cli::{AtArgs, DeploymentsCommand, ListArgs};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::reference::connect;

/// The read API's timestamp rules, so the CLI and the API accept the same
/// instants (and the CLI never sends Postgres one it cannot hold).
pub(crate) fn time(flag: &str, s: &str) -> CliResult<DateTime<Utc>> {
    parse_query_timestamp(s, &format!("--{flag}")).map_err(CliError::Invalid)
}

pub(crate) async fn environment_id(
    pool: &sqlx::PgPool,
    workspace: Uuid,
    name: &str,
) -> CliResult<Uuid> {
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
        DeploymentsCommand::List(args) => list(args, json).await,
        DeploymentsCommand::At(args) => at(args, json).await,
    }
}

/// The flags of `deployments list` checked, before anything is asked of
/// Postgres: everything of the filter but the environment's id.
struct ListQuery {
    status: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    cursor: Option<Cursor>,
}

impl ListQuery {
    fn parse(args: &ListArgs) -> CliResult<Self> {
        let status = args
            .status
            .as_deref()
            .map(|s| {
                DeploymentStatus::parse(s)
                    .map(|s| s.as_str().to_owned())
                    .map_err(|e| CliError::Invalid(e.msg))
            })
            .transpose()?;
        let since = args
            .since
            .as_deref()
            .map(|s| time("since", s))
            .transpose()?;
        let until = args
            .until
            .as_deref()
            .map(|s| time("until", s))
            .transpose()?;
        let cursor = args
            .cursor
            .as_deref()
            .map(|c| {
                Cursor::decode(c).ok_or_else(|| {
                    CliError::Invalid("--cursor is not a next_cursor this tool printed".into())
                })
            })
            .transpose()?;
        Ok(Self {
            status,
            since,
            until,
            cursor,
        })
    }
}

async fn list(args: ListArgs, json: bool) -> CliResult<()> {
    let query = ListQuery::parse(&args)?;
    let pool = connect(&args.db).await?;
    let environment_id = match &args.environment {
        Some(name) => Some(environment_id(&pool, args.workspace, name).await?),
        None => None,
    };
    let filter = DeploymentFilter {
        environment_id,
        repository: args.repository,
        status: query.status,
        since: query.since,
        until: query.until,
    };
    let page = read::list_deployments(&pool, args.workspace, &filter, query.cursor, args.limit)
        .await
        .map_err(|e| CliError::db("listing deployments", e))?;
    if json {
        output::json(&page);
        return Ok(());
    }
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
        page.items.iter().map(history_row).collect(),
    );
    if let Some(next) = page.next_cursor {
        eprintln!("more: --cursor {next}");
    }
    Ok(())
}

fn history_row(d: &DeploymentView) -> Vec<String> {
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
}

async fn at(args: AtArgs, json: bool) -> CliResult<()> {
    let at = args
        .at
        .as_deref()
        .map(|s| time("at", s))
        .transpose()?
        .unwrap_or_else(Utc::now);
    let pool = connect(&args.db).await?;
    let env = environment_id(&pool, args.workspace, &args.environment).await?;
    let running = read::deployed_at(&pool, args.workspace, env, at, args.repository.as_deref())
        .await
        .map_err(|e| CliError::db("querying deployments", e))?;
    if json {
        output::json(
            &serde_json::json!({ "environment": args.environment, "at": at, "deployed": running }),
        );
        return Ok(());
    }
    output::table(
        &[
            "repository",
            "commit",
            "branch",
            "deployed at",
            "deployment",
        ],
        running.iter().map(running_row).collect(),
    );
    Ok(())
}

fn running_row(r: &Running) -> Vec<String> {
    vec![
        r.repo_full_name.clone(),
        r.commit_sha.clone().unwrap_or_else(|| "-".into()),
        r.branch.clone().unwrap_or_else(|| "-".into()),
        output::when(Some(r.deployed_at)),
        r.deployment_id.to_string(),
    ]
}
