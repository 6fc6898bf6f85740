//! `vibemon`, the operator CLI: parse the command line, run one command, map
//! its error to an exit code.

mod cli;
mod deployments;
mod dora;
mod error;
mod git;
mod integration;
mod output;
mod reference;
mod replay;
mod report;
mod tail;
mod topics;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{CliError, CliResult};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> CliResult<()> {
    let json = cli.json;
    match cli.command {
        Command::Migrate(db) => {
            let pool = reference::connect(&db).await?;
            vibemon_store::migrate(&pool)
                .await
                .map_err(|e| CliError::Other(anyhow::anyhow!("migration failed: {e}")))?;
            let applied: i64 =
                sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| CliError::db("counting migrations", e))?;
            if json {
                output::json(&serde_json::json!({ "applied_migrations": applied }));
            } else {
                eprintln!("database is up to date ({applied} migrations applied)");
            }
            Ok(())
        }
        Command::Topics(cmd) => topics::run(cmd, json).await,
        Command::Workspace(cmd) => reference::workspace(cmd, json).await,
        Command::Environment(cmd) => reference::environment(cmd, json).await,
        Command::Key(cmd) => reference::key(cmd, json).await,
        Command::Integration(cmd) => integration::run(cmd, json).await,
        Command::Deployments(cmd) => deployments::run(cmd, json).await,
        Command::Dora(args) => dora::run(args, json).await,
        Command::Report(args) => report::run(args, json).await,
        Command::Replay(args) => replay::run(args, json).await,
        Command::Tail(args) => tail::run(args).await,
    }
}
