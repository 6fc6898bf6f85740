//! `vibemon integration create|list|revoke`: receivers of a code host's own
//! deployment events (GitHub `deployment_status`, GitLab "Deployment Hook"),
//! kept by `vibemon_store::integrations` and served by ingest at
//! `/api/v1/integrations/{provider}/{id}`.
//!
//! A receiver's secret is derived from `VIBEMON_INTEGRATION_KEY` and never
//! stored, so `create` is the only command that needs the key and the only
//! one that ever prints a secret.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;
use vibemon_schemas::{DisplayName, EnvironmentName};
use vibemon_store::integrations::{self, Integration, NewIntegration, Provider, SecretKey};

use crate::cli::{IntegrationCommand, IntegrationCreateArgs};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::reference::{connect, require_workspace};

pub async fn run(cmd: IntegrationCommand, json: bool) -> CliResult<()> {
    match cmd {
        IntegrationCommand::Create(args) => create(args, json).await,
        IntegrationCommand::List { db, workspace } => list(&db, workspace, json).await,
        IntegrationCommand::Revoke { db, id } => revoke(&db, id, json).await,
    }
}

/// The key from `--integration-key` or `VIBEMON_INTEGRATION_KEY`, or how to
/// make one (exit 2 either way: the operator fixes it, as a bad flag).
fn secret_key(given: Option<&str>) -> CliResult<SecretKey> {
    let how = "make one with `openssl rand -base64 32` and set it, the same value, \
               for vibemon and for ingest";
    match given {
        Some(k) if !k.trim().is_empty() => {
            SecretKey::parse(k).map_err(|e| CliError::Invalid(format!("{e}; {how}")))
        }
        _ => Err(CliError::Invalid(format!(
            "{} is not set: receivers' secrets are derived from it; {how}",
            integrations::SECRET_KEY_ENV
        ))),
    }
}

/// `--map-environment NAME=OURS`, each OURS a valid environment name; a
/// code-host name mapped twice is refused rather than the last one winning.
fn environment_map(pairs: &[String]) -> CliResult<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for pair in pairs {
        let (theirs, ours) = pair.split_once('=').ok_or_else(|| {
            CliError::Invalid(format!(
                "--map-environment {pair:?} must be PROVIDER_NAME=OURS, e.g. --map-environment prod=production"
            ))
        })?;
        if theirs.trim().is_empty() {
            return Err(CliError::Invalid(format!(
                "--map-environment {pair:?}: the code host's environment name is empty"
            )));
        }
        let ours = EnvironmentName::parse(ours.to_owned())
            .map_err(|e| CliError::Invalid(format!("--map-environment {pair:?}: {}", e.msg)))?;
        if map
            .insert(theirs.to_owned(), ours.as_str().to_owned())
            .is_some()
        {
            return Err(CliError::Invalid(format!(
                "--map-environment maps {theirs:?} twice; give each code-host name once"
            )));
        }
    }
    Ok(map)
}

/// Everything `create` checks before it touches Postgres.
fn new_integration(args: &IntegrationCreateArgs) -> CliResult<NewIntegration> {
    let provider = Provider::parse(&args.provider).map_err(CliError::Invalid)?;
    let name = match &args.name {
        Some(n) if n.trim().is_empty() => {
            return Err(CliError::Invalid(
                "integration name must be 1 to 200 characters, not blank".into(),
            ))
        }
        Some(n) => DisplayName::parse(n.as_str())
            .map_err(|e| CliError::Invalid(format!("integration {e}")))?
            .as_str()
            .to_owned(),
        None => provider.as_str().to_owned(),
    };
    Ok(NewIntegration {
        workspace_id: args.workspace,
        provider,
        name,
        environment_map: environment_map(&args.map_environment)?,
        create_environments: args.create_environments,
    })
}

/// What `create --json` prints: the receiver, where to send to, and its
/// secret (this once).
#[derive(Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    integration: &'a Integration,
    path: String,
    url: String,
    secret: &'a str,
}

async fn create(args: IntegrationCreateArgs, json: bool) -> CliResult<()> {
    let new = new_integration(&args)?;
    let key = secret_key(args.integration_key.as_deref())?;
    let pool = connect(&args.db).await?;
    require_workspace(&pool, args.workspace).await?;
    let (integration, secret) = integrations::create(&pool, &key, &new)
        .await
        .map_err(|e| CliError::db("creating the integration", e))?;
    let path = integration.path();
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    if json {
        output::json(&Created {
            integration: &integration,
            path,
            url,
            secret: &secret,
        });
    } else {
        print_for_people(&integration, &url, &secret);
    }
    Ok(())
}

/// The URL and secret as a person pastes them into the code host's webhook
/// form, and the warning that the secret is shown once.
fn print_for_people(integration: &Integration, url: &str, secret: &str) {
    let (url_field, secret_field, events) = match integration.provider {
        Provider::Github => (
            "Payload URL",
            "Secret",
            "content type application/json, event \"Deployment statuses\"",
        ),
        Provider::Gitlab => ("URL", "Secret token", "trigger \"Deployment events\""),
    };
    output::line(format_args!("id:     {}", integration.id));
    output::line(format_args!("url:    {url}"));
    output::line(format_args!("secret: {secret}"));
    eprintln!(
        "integration {} created. In the {} webhook settings set {url_field} to the url above, \
         {secret_field} to the secret, and {events}.\n\
         This is the only time the secret is shown: paste it now. \
         (Lost it? Revoke this receiver and create another.)",
        integration.id,
        integration.provider.as_str(),
    );
}

async fn list(db: &crate::cli::Db, workspace: Uuid, json: bool) -> CliResult<()> {
    let pool = connect(db).await?;
    require_workspace(&pool, workspace).await?;
    let all = integrations::list(&pool, workspace)
        .await
        .map_err(|e| CliError::db("listing integrations", e))?;
    if json {
        let items: Vec<Listed> = all.iter().map(Listed::from).collect();
        output::json(&items);
    } else {
        output::table(
            &[
                "id",
                "provider",
                "name",
                "path",
                "created",
                "last used",
                "revoked",
            ],
            all.iter().map(row).collect(),
        );
    }
    Ok(())
}

/// A receiver as `list --json` and `revoke --json` print it: with its path,
/// never a secret (the store's type has none to give).
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    integration: &'a Integration,
    path: String,
}

impl<'a> From<&'a Integration> for Listed<'a> {
    fn from(integration: &'a Integration) -> Self {
        Listed {
            integration,
            path: integration.path(),
        }
    }
}

fn row(i: &Integration) -> Vec<String> {
    vec![
        i.id.to_string(),
        i.provider.as_str().to_owned(),
        i.name.clone(),
        i.path(),
        output::when(Some(i.created_at)),
        output::when(i.last_used_at),
        output::when(i.revoked_at),
    ]
}

/// Revokes a receiver: ingest then refuses its deliveries. As `key revoke`,
/// revoking one already revoked succeeds and keeps the first revocation's
/// time, so a script can run it again safely.
async fn revoke(db: &crate::cli::Db, id: Uuid, json: bool) -> CliResult<()> {
    let pool = connect(db).await?;
    let newly = integrations::revoke(&pool, id)
        .await
        .map_err(|e| CliError::db("revoking the integration", e))?;
    let integration = integrations::find(&pool, id)
        .await
        .map_err(|e| CliError::db("looking up the integration", e))?
        .ok_or_else(|| {
            CliError::NotFound(format!(
                "integration {id} not found: list them with `vibemon integration list --workspace <id>`"
            ))
        })?;
    if !newly {
        eprintln!(
            "integration {id} was revoked already, at {}",
            output::when(integration.revoked_at)
        );
    }
    if json {
        output::json(&Listed::from(&integration));
    } else {
        output::line(integration.id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_takes_valid_names_each_code_host_name_once() {
        let map =
            environment_map(&["prod=production".into(), "Staging EU=staging".into()]).unwrap();
        assert_eq!(map["prod"], "production");
        assert_eq!(map["Staging EU"], "staging");
        for bad in [
            vec!["prod".to_owned()],
            vec!["=production".to_owned()],
            vec!["prod=prod env".to_owned()],
            vec!["prod=production".to_owned(), "prod=staging".to_owned()],
        ] {
            assert!(
                matches!(environment_map(&bad), Err(CliError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
