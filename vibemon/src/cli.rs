//! The command line: every command, flag and environment variable, with an
//! example in each `--help`.

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;
use vibemon_runtime::KafkaArgs;
use vibemon_store::scopes::Scopes;

/// vibemon: operate the Vibe Monitor deployment pipeline.
///
/// Manage workspaces, environments and API keys in Postgres, create the Kafka
/// topics, and apply the database migrations.
#[derive(Debug, Parser)]
#[command(
    name = "vibemon",
    version,
    after_help = "\
Examples:
  eval \"$(deploy/local/services env)\"
  vibemon migrate
  vibemon topics ensure
  WS=$(vibemon workspace create acme)
  vibemon environment create --workspace \"$WS\" production
  vibemon key create --workspace \"$WS\" --name \"GitHub Actions\"
  vibemon integration create --workspace \"$WS\" --provider github

Exit codes: 0 ok, 1 unexpected error, 2 invalid input, 3 not found, 4 conflict, 5 Postgres or Kafka unreachable."
)]
pub struct Cli {
    /// Print JSON instead of tables or bare ids.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Db {
    /// Postgres of the pipeline.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations (idempotent).
    #[command(
        after_help = "Example:\n  vibemon migrate --database-url postgres://vibemon:vibemon@127.0.0.1:5432/vibemon"
    )]
    Migrate(Db),

    /// Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),

    /// Workspaces: the tenants that own environments, keys and deployments.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),

    /// Environments of a workspace (production, staging, ...).
    #[command(subcommand)]
    Environment(EnvironmentCommand),

    /// Workspace API keys for CI systems.
    #[command(subcommand)]
    Key(KeyCommand),

    /// Receivers of GitHub's and GitLab's own deployment events (native
    /// intake: no CI step needed), one per workspace and code host.
    #[command(subcommand)]
    Integration(IntegrationCommand),

    /// Deployment history and "what was running at T", from the read model.
    #[command(subcommand)]
    Deployments(DeploymentsCommand),

    /// The four DORA metrics of an environment (optionally one repository):
    /// deployment frequency, lead time for changes, change failure rate and
    /// time to restore, per day, week or month, each beside the counts it was
    /// computed from. Definitions: docs/dora.md.
    #[command(after_help = "\
Examples:
  vibemon dora --workspace \"$WS\" --environment production
  vibemon dora --workspace \"$WS\" --environment production --repository acme/api \\
      --since 2024-01-01T00:00:00Z --until 2024-04-01T00:00:00Z --bucket month --json

Lead time counts each commit once, at its first successful deployment to the
environment, and only commits a report listed (`commits` in the webhook, filled
by `vibemon report`).")]
    Dora(DoraArgs),

    /// Report one deployment to ingest the way a CI step should: retries with
    /// backoff, an automatic Idempotency-Key, a short overall timeout, and exit
    /// 0 even when reporting failed (unless --strict), so a webhook outage
    /// never fails a deployment.
    #[command(after_help = "\
Examples:
  # In a CI job, with VM_API_URL and VM_WORKSPACE_KEY as secrets:
  vibemon report --environment production --repository \"$GITHUB_REPOSITORY\" \\
    --branch \"$GITHUB_REF_NAME\" --commit-sha \"$GITHUB_SHA\" --source github_actions \\
    --extra workflow_run_id=\"$GITHUB_RUN_ID\"
  # Progress of one run, one deployment:
  vibemon report --environment staging --repository acme/api --status in_progress --external-id run-42
  # Another checkout, or no commit list at all:
  vibemon report --environment production --repository acme/api --repo-path ./api
  vibemon report --environment production --repository acme/api --no-commits

What changed: inside a git work tree, report sends its HEAD (or --commit-sha)
as commit_sha, asks the read API which commit of the repository is deployed
in the environment now (previous_commit_sha) and sends `git log` from there
to the reported commit as `commits`, newest first, at most 100 (author cut to
64, subject to 100 characters). A shallow clone has the reported commit's
history deepened (`git fetch --no-tags --deepen`, 50, 200 then 1000 commits;
checkout with fetch-depth: 0 to skip the fetches) until the deployed commit
is an ancestor and the range crosses no shallow boundary. Otherwise (nothing
deployed yet, a rollback, a force-push, a failed fetch) only the reported
commit is sent, and stderr says why. If ingest answers 422 to a body with
commits, the report is sent once more without them. Each git process is
killed after 30 s; --timeout-secs covers the delivery (and at most 5 s of it
for the read API), not git. What-changed problems never change the exit code.

Exit codes with --strict: 2 refused (4xx), 5 not delivered (ingest unreachable, 5xx, timeout).")]
    Report(ReportArgs),

    /// Rebuild the read model from the topic, into the live database
    /// (idempotent) or into a fresh one. Safe to interrupt and run again.
    #[command(after_help = "\
Examples:
  # Rebuild everything into a new database `rebuild` on the same server:
  vibemon replay --into rebuild
  # Re-apply the last day into the live database (changes nothing already there):
  vibemon replay --since 2024-01-15T00:00:00Z
  # One workspace only:
  vibemon replay --into acme_only --workspace 0193f5d0-1111-7aaa-8bbb-cccccccccccc")]
    Replay(ReplayArgs),

    /// Follow the topic as decoded NDJSON (one event per line), optionally
    /// filtered; Ctrl-C stops.
    #[command(after_help = "\
Examples:
  vibemon tail --environment production
  vibemon tail --from-beginning --workspace \"$WS\" --limit 10 | jq .commit_sha")]
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub db: Db,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Write into this database on the DATABASE_URL server instead of the
    /// live one; it is created and migrated when missing.
    #[arg(long)]
    pub into: Option<String>,
    /// Start at the first record at or after this time (RFC 3339), found by
    /// Kafka's offsets-for-times; default: the beginning of the topic.
    #[arg(long)]
    pub since: Option<String>,
    /// Apply only this workspace's events.
    #[arg(long)]
    pub workspace: Option<Uuid>,
    /// Consumer group whose checkpoints track the replay's progress; run the
    /// same command again to resume.
    #[arg(long, default_value = "vibemon-replay")]
    pub group: String,
    /// Forget the group's checkpoints first and start over.
    #[arg(long)]
    pub restart: bool,
    /// Records per transaction.
    #[arg(long, default_value_t = 5000)]
    pub batch_max: usize,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Only this workspace's events.
    #[arg(long)]
    pub workspace: Option<Uuid>,
    /// Only events of environments with this name.
    #[arg(long)]
    pub environment: Option<String>,
    /// Start at the beginning of the topic instead of its end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after printing this many events.
    #[arg(long)]
    pub limit: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the event topic and its dead-letter topic with their
    /// configuration (infinite retention), or bring existing ones in line.
    #[command(
        after_help = "Examples:\n  vibemon topics ensure\n  vibemon topics ensure --partitions 12 --replication-factor 3 --min-insync-replicas 2"
    )]
    Ensure {
        #[command(flatten)]
        kafka: KafkaArgs,
        /// Partitions of the event topic; the projector scales up to this many instances.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Replicas of each partition (3 in production, 1 on a single local broker).
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        /// `min.insync.replicas` for the topics (unset: the broker's default).
        #[arg(long)]
        min_insync_replicas: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace; prints its id.
    #[command(after_help = "Example:\n  WS=$(vibemon workspace create acme)")]
    Create {
        #[command(flatten)]
        db: Db,
        /// A name for people; need not be unique.
        name: String,
    },
    /// List workspaces.
    #[command(after_help = "Example:\n  vibemon workspace list --json")]
    List {
        #[command(flatten)]
        db: Db,
    },
}

#[derive(Debug, Subcommand)]
pub enum EnvironmentCommand {
    /// Create an environment; prints its id. Names are case-sensitive.
    #[command(
        after_help = "Example:\n  vibemon environment create --workspace \"$WS\" production"
    )]
    Create {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        workspace: Uuid,
        /// ASCII letters, digits, '.', '_' and '-', at most 64 characters.
        name: String,
    },
    /// List a workspace's environments.
    #[command(after_help = "Example:\n  vibemon environment list --workspace \"$WS\"")]
    List {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        workspace: Uuid,
    },
    /// Rename an environment; CI systems must then report the new name.
    #[command(
        after_help = "Example:\n  vibemon environment rename --workspace \"$WS\" prod production"
    )]
    Rename {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        workspace: Uuid,
        name: String,
        new_name: String,
    },
    /// Delete an environment. Refused while deployments reference it, unless
    /// --force; the history stays (it is what the topic says happened).
    #[command(
        after_help = "Example:\n  vibemon environment delete --workspace \"$WS\" preview-123 --force"
    )]
    Delete {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        workspace: Uuid,
        name: String,
        /// Delete even though deployments reference it.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeploymentsCommand {
    /// Deployment history, newest first.
    #[command(
        after_help = "Example:\n  vibemon deployments list --workspace \"$WS\" --environment production --since 2024-01-15T00:00:00Z"
    )]
    List(ListArgs),
    /// What was running in an environment at a time: per repository, the
    /// latest successful deployment at or before it.
    #[command(
        after_help = "Example:\n  vibemon deployments at --workspace \"$WS\" --environment production --at 2024-01-15T10:30:00+01:00"
    )]
    At(AtArgs),
}

// The flags of `deployments list` (its help text is on the variant).
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub db: Db,
    #[arg(long)]
    pub workspace: Uuid,
    #[arg(long)]
    pub environment: Option<String>,
    #[arg(long)]
    pub repository: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    /// Only deployments at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Only deployments at or before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// The `next_cursor` of a previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

// The flags of `deployments at` (its help text is on the variant).
#[derive(Debug, Args)]
pub struct AtArgs {
    #[command(flatten)]
    pub db: Db,
    #[arg(long)]
    pub workspace: Uuid,
    #[arg(long)]
    pub environment: String,
    /// RFC 3339, any offset; default now.
    #[arg(long)]
    pub at: Option<String>,
    #[arg(long)]
    pub repository: Option<String>,
}

// The flags of `dora` (its help text is on the variant).
#[derive(Debug, Args)]
pub struct DoraArgs {
    #[command(flatten)]
    pub db: Db,
    #[arg(long)]
    pub workspace: Uuid,
    #[arg(long)]
    pub environment: String,
    /// Only this repository.
    #[arg(long)]
    pub repository: Option<String>,
    /// Start of the window, inclusive (RFC 3339); default --days before --until.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the window, exclusive (RFC 3339); default now.
    #[arg(long)]
    pub until: Option<String>,
    /// The window's length when --since is not given.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=3650))]
    pub days: i64,
    /// day, week (from Monday) or month, in UTC.
    #[arg(long, default_value = "week")]
    pub bucket: String,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Base URL of ingest.
    #[arg(long, env = "VM_API_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The workspace API key.
    #[arg(long, env = "VM_WORKSPACE_KEY", hide_env_values = true)]
    pub key: String,
    #[arg(long)]
    pub environment: String,
    #[arg(long)]
    pub repository: String,
    #[arg(long)]
    pub branch: Option<String>,
    #[arg(long)]
    pub commit_sha: Option<String>,
    /// pending, in_progress, success, failed or cancelled.
    #[arg(long, default_value = "success")]
    pub status: String,
    /// webhook, github_actions, argocd or jenkins.
    #[arg(long, default_value = "webhook")]
    pub source: String,
    /// RFC 3339; default: when ingest receives it.
    #[arg(long)]
    pub deployed_at: Option<String>,
    /// The CI's own id for this deployment (reports sharing it update one deployment).
    #[arg(long)]
    pub external_id: Option<String>,
    /// extra_data entries, `name=value`, repeatable.
    #[arg(long = "extra", value_name = "NAME=VALUE")]
    pub extra: Vec<String>,
    /// Idempotency-Key for all attempts; default: a fresh random one.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Give up delivering after this many seconds, retries included (the
    /// git work before it is bounded separately: 30 s per git process).
    #[arg(long, default_value_t = 20)]
    pub timeout_secs: u64,
    /// Exit non-zero when the report was not accepted (what changed
    /// failing to be worked out is only a note on stderr).
    #[arg(long)]
    pub strict: bool,
    /// The git work tree of the deployed code, whose history fills `commits`
    /// and `previous_commit_sha` (default: the current directory, skipped
    /// with a note on stderr when it is not a work tree).
    #[arg(long, value_name = "DIR")]
    pub repo_path: Option<std::path::PathBuf>,
    /// Send neither `commits` nor `previous_commit_sha`: no git, no read API call.
    #[arg(long)]
    pub no_commits: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key; prints the key once. Store it as a CI secret.
    #[command(after_help = "Scopes (a key may do only what its scopes name):\n  \
        ingest  send deployment reports to the webhook (the default: what a CI secret needs)\n  \
        read    read the history: the read API, `vibemon report`'s commit ranges, the dashboard\n  \
        admin   manage keys and environments in the dashboard\n\n\
        Examples:\n  \
        vibemon key create --workspace \"$WS\" --name \"GitHub Actions\"\n  \
        vibemon key create --workspace \"$WS\" --name \"GitHub Actions\" --scope ingest,read\n  \
        vibemon key create --workspace \"$WS\" --name \"SRE team\" --scope read,admin")]
    Create {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        workspace: Uuid,
        /// Which CI system uses it; shown in the audit trail.
        #[arg(long)]
        name: String,
        /// What the key may do: a comma-separated list of ingest, read and
        /// admin. Scopes cannot be changed later; create another key instead.
        #[arg(long, default_value = "ingest", value_parser = parse_scopes)]
        scope: Scopes,
    },
    /// Revoke a key; ingest refuses it within its key cache TTL (30 s by default).
    #[command(after_help = "Example:\n  vibemon key revoke 0193f5d0-3333-7aaa-8bbb-eeeeeeeeeeee")]
    Revoke {
        #[command(flatten)]
        db: Db,
        key_id: Uuid,
    },
    /// List a workspace's keys: id, name, prefix, created, last used, revoked. Never a secret.
    #[command(after_help = "Example:\n  vibemon key list --workspace \"$WS\"")]
    List {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        workspace: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Create a receiver; prints its URL and its secret, once. Paste both
    /// into the code host's webhook settings (README.md, "Native intake").
    #[command(after_help = "\
Examples:
  export VIBEMON_INTEGRATION_KEY=...   # the same as ingest's; make one with: openssl rand -base64 32
  vibemon integration create --workspace \"$WS\" --provider github --url https://ingest.example.com
  vibemon integration create --workspace \"$WS\" --provider gitlab --name \"GitLab group acme\" \\
    --map-environment prod=production --map-environment stage=staging --json

The secret is derived from VIBEMON_INTEGRATION_KEY and the receiver, never
stored: a lost secret cannot be shown again (revoke and create another), and
changing the key changes every receiver's secret.")]
    Create(IntegrationCreateArgs),
    /// List a workspace's receivers: id, provider, name, path, created, last
    /// used, revoked. Never a secret.
    #[command(after_help = "Example:\n  vibemon integration list --workspace \"$WS\" --json")]
    List {
        #[command(flatten)]
        db: Db,
        #[arg(long)]
        workspace: Uuid,
    },
    /// Revoke a receiver; ingest refuses its deliveries from then on.
    /// Revoking one twice keeps the first time.
    #[command(
        after_help = "Example:\n  vibemon integration revoke 0193f5d0-4444-7aaa-8bbb-ffffffffffff"
    )]
    Revoke {
        #[command(flatten)]
        db: Db,
        id: Uuid,
    },
}

// The flags of `integration create` (its help text is on the variant).
#[derive(Debug, Args)]
pub struct IntegrationCreateArgs {
    #[command(flatten)]
    pub db: Db,
    #[arg(long)]
    pub workspace: Uuid,
    /// github or gitlab.
    #[arg(long)]
    pub provider: String,
    /// A name for people, shown by `integration list`; default: the provider.
    #[arg(long)]
    pub name: Option<String>,
    /// Base URL of ingest as the code host reaches it, to print the full URL.
    #[arg(long, env = "VM_API_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The code host's environment name -> ours, repeatable; other names are
    /// used as they are.
    #[arg(long = "map-environment", value_name = "PROVIDER_NAME=OURS")]
    pub map_environment: Vec<String>,
    /// Create an environment the first time a delivery names one that is
    /// neither mapped nor known (default: such a delivery is refused, 404).
    #[arg(long)]
    pub create_environments: bool,
    /// The key receivers' secrets are derived from, base64 of at least 32
    /// bytes: the same value ingest has.
    #[arg(long, env = "VIBEMON_INTEGRATION_KEY", hide_env_values = true)]
    pub integration_key: Option<String>,
}

fn parse_scopes(list: &str) -> Result<Scopes, String> {
    Scopes::parse_list(list).map_err(|e| e.to_string())
}
