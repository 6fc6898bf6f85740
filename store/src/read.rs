//! The read model's queries, shared by the HTTP read API (in ingest) and the
//! CLI (`vibemon deployments list|at`), so both answer the same question the
//! same way. Every query is scoped to one workspace and served by an index
//! (see `docs/read-api.md` for the plans on a million rows).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Most items one page may hold; larger `limit`s are capped to it.
pub const MAX_PAGE: i64 = 200;

/// Most reports one deployment's `report_log` shows: the latest ones, oldest
/// first, so the report that settled its status is always there. A
/// deployment's `reports` field says how many it has in all; a CI system
/// that reports one `external_id` without end cannot make one read unbounded.
pub const MAX_REPORT_LOG: i64 = 500;

/// One deployment as the read API shows it: the seed's fields and more.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeploymentView {
    pub id: Uuid,
    pub environment_id: Uuid,
    pub environment: String,
    pub repo_full_name: String,
    pub branch: Option<String>,
    pub commit_sha: Option<String>,
    pub status: String,
    pub source: String,
    #[serde(with = "ts")]
    pub deployed_at: DateTime<Utc>,
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "ts")]
    pub updated_at: DateTime<Utc>,
    pub external_id: Option<String>,
    pub extra_data: serde_json::Value,
    /// How many reports this deployment received.
    pub reports: i32,
}

const VIEW_COLUMNS: &str =
    "id, environment_id, environment, repo_full_name, branch, commit_sha, status, source, \
     deployed_at, created_at, updated_at, external_id, extra_data, reports";

/// Filters of `GET /api/v1/deployments`.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub environment_id: Option<Uuid>,
    pub repository: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Where a page ends: the (deployed_at, id) of its last item, opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub deployed_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            self.deployed_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(s: &str) -> Option<Self> {
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
        let (micros, id) = raw.split_once('|')?;
        let deployed_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        // A crafted cursor must not carry an instant Postgres cannot hold.
        vibemon_schemas::fields::check_timestamp_range(deployed_at, "cursor").ok()?;
        Some(Self {
            deployed_at,
            id: id.parse().ok()?,
        })
    }
}

/// A page of deployments, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub items: Vec<DeploymentView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The history query (parameters: workspace, environment id, repository,
/// status, since, until, cursor time, cursor id, limit).
pub fn list_sql() -> String {
    format!(
        "SELECT {VIEW_COLUMNS} FROM deployments
         WHERE workspace_id = $1
           AND ($2::uuid IS NULL OR environment_id = $2)
           AND ($3::text IS NULL OR repo_full_name = $3)
           AND ($4::text IS NULL OR status = $4)
           AND ($5::timestamptz IS NULL OR deployed_at >= $5)
           AND ($6::timestamptz IS NULL OR deployed_at <= $6)
           AND ($7::timestamptz IS NULL OR (deployed_at, id) < ($7, $8))
         ORDER BY deployed_at DESC, id DESC
         LIMIT $9"
    )
}

/// Deployments of a workspace, newest first (by deployed_at, then id).
pub async fn list_deployments(
    pool: &PgPool,
    workspace_id: Uuid,
    filter: &DeploymentFilter,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<Page, sqlx::Error> {
    let limit = limit.clamp(1, MAX_PAGE);
    let sql = list_sql();
    let mut items: Vec<DeploymentView> = sqlx::query_as(&sql)
        .bind(workspace_id)
        .bind(filter.environment_id)
        .bind(&filter.repository)
        .bind(&filter.status)
        .bind(filter.since)
        .bind(filter.until)
        .bind(cursor.map(|c| c.deployed_at))
        .bind(cursor.map(|c| c.id))
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|d| {
            Cursor {
                deployed_at: d.deployed_at,
                id: d.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

/// One report of a deployment, from the audit trail.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ReportView {
    pub event_id: Uuid,
    pub status: String,
    pub source: String,
    #[serde(with = "ts")]
    pub received_at: DateTime<Utc>,
    pub api_key_id: Uuid,
    /// Which CI system reported it.
    pub api_key_name: String,
    pub kafka_topic: String,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
    /// The event as it is on the topic.
    pub payload: serde_json::Value,
}

/// A deployment with the reports it received, oldest first (the latest
/// [`MAX_REPORT_LOG`] of them).
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentDetail {
    #[serde(flatten)]
    pub deployment: DeploymentView,
    pub report_log: Vec<ReportView>,
    /// For a successful deployment: where it sits among the successes of
    /// its environment and repository. `None` otherwise.
    pub lineage: Option<LineageView>,
    /// The commits its reports listed, newest commit first (at most
    /// [`MAX_REPORT_LOG`]).
    pub commits: Vec<CommitView>,
}

/// A successful deployment's predecessor and rollbacks (docs/dora.md).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct LineageView {
    /// The successful deployment before it in the same environment and
    /// repository.
    pub predecessor_id: Option<Uuid>,
    pub predecessor_commit_sha: Option<String>,
    /// Set when this deployment is a rollback: the earlier deployment of the
    /// same commit that it went back to.
    pub rollback_to: Option<Uuid>,
    /// Set when a later rollback undid this deployment.
    pub rolled_back_by: Option<Uuid>,
}

/// A commit a deployment's reports listed.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct CommitView {
    pub sha: String,
    #[serde(with = "ts")]
    pub committed_at: DateTime<Utc>,
    #[serde(with = "ts_opt")]
    pub authored_at: Option<DateTime<Utc>>,
    pub author: Option<String>,
    pub subject: Option<String>,
}

/// One deployment of the workspace; `None` when absent or another workspace's.
/// Its four parts are read in one read-only snapshot, so a batch the
/// projector commits meanwhile never shows half (a success without its
/// lineage, a report log ahead of the status).
pub async fn get_deployment(
    pool: &PgPool,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<DeploymentDetail>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let sql = format!("SELECT {VIEW_COLUMNS} FROM deployments WHERE workspace_id = $1 AND id = $2");
    let Some(deployment) = sqlx::query_as::<_, DeploymentView>(&sql)
        .bind(workspace_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let report_log = sqlx::query_as(
        "SELECT * FROM (
             SELECT event_id, status, source, received_at, api_key_id, api_key_name, kafka_topic,
                    kafka_partition, kafka_offset, payload
             FROM deployment_audit WHERE deployment_id = $1 AND workspace_id = $2
             ORDER BY received_at DESC, event_id DESC LIMIT $3
         ) latest ORDER BY received_at, event_id",
    )
    .bind(id)
    .bind(workspace_id)
    .bind(MAX_REPORT_LOG)
    .fetch_all(&mut *tx)
    .await?;
    let lineage = sqlx::query_as(
        "SELECT predecessor_id, predecessor_commit_sha, rollback_to, rolled_back_by
         FROM deployment_lineage WHERE deployment_id = $1 AND workspace_id = $2",
    )
    .bind(id)
    .bind(workspace_id)
    .fetch_optional(&mut *tx)
    .await?;
    let commits = sqlx::query_as(
        "SELECT sha, committed_at, authored_at, author, subject FROM deployment_commits
         WHERE deployment_id = $1 ORDER BY committed_at DESC, sha LIMIT $2",
    )
    .bind(id)
    .bind(MAX_REPORT_LOG)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(DeploymentDetail {
        deployment,
        report_log,
        lineage,
        commits,
    }))
}

/// What runs in one environment for one repository.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Running {
    pub repo_full_name: String,
    pub deployment_id: Uuid,
    pub commit_sha: Option<String>,
    pub branch: Option<String>,
    #[serde(with = "ts")]
    pub deployed_at: DateTime<Utc>,
}

/// An environment with what is deployed there now.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentView {
    pub id: Uuid,
    pub name: String,
    pub deployed: Vec<Running>,
}

/// Every environment of the workspace with its current deployments.
pub async fn environments_now(
    pool: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<EnvironmentView>, sqlx::Error> {
    let envs = crate::reference::list_environments(pool, workspace_id).await?;
    #[derive(sqlx::FromRow)]
    struct Current {
        environment_id: Uuid,
        #[sqlx(flatten)]
        running: Running,
    }
    let rows: Vec<Current> = sqlx::query_as(
        "SELECT environment_id, repo_full_name, deployment_id, commit_sha, branch, deployed_at
         FROM current_deployments WHERE workspace_id = $1 ORDER BY repo_full_name",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await?;
    Ok(envs
        .into_iter()
        .map(|e| EnvironmentView {
            deployed: rows
                .iter()
                .filter(|r| r.environment_id == e.id)
                .map(|r| r.running.clone())
                .collect(),
            id: e.id,
            name: e.name,
        })
        .collect())
}

/// What runs in one environment for one repository, with what the
/// dashboard's overview shows beside it: the deployment's status and source,
/// who reported it last, and whether it is a rollback.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct OverviewRow {
    pub environment_id: Uuid,
    pub repo_full_name: String,
    pub deployment_id: Uuid,
    pub commit_sha: Option<String>,
    pub branch: Option<String>,
    pub status: String,
    pub source: String,
    #[serde(with = "ts")]
    pub deployed_at: DateTime<Utc>,
    /// The key (or integration) name of its latest report.
    pub reported_by: Option<String>,
    pub rollback_to: Option<Uuid>,
    /// The newest deployment of the repository here when it is later than
    /// what runs and did not succeed (failed, or still under way): what
    /// runs is the last success, and this says something came after it.
    pub later_id: Option<Uuid>,
    pub later_status: Option<String>,
    #[serde(with = "ts_opt")]
    pub later_at: Option<DateTime<Utc>>,
}

/// Every environment of the workspace (by name) with what runs there now,
/// per repository: one index probe per current row, whatever the history's
/// length.
pub async fn overview(
    pool: &PgPool,
    workspace_id: Uuid,
) -> Result<Vec<(crate::reference::Environment, Vec<OverviewRow>)>, sqlx::Error> {
    let envs = crate::reference::list_environments(pool, workspace_id).await?;
    let rows: Vec<OverviewRow> = sqlx::query_as(
        "SELECT c.environment_id, c.repo_full_name, d.id AS deployment_id, d.commit_sha, d.branch,
                d.status, d.source, d.deployed_at, a.api_key_name AS reported_by, l.rollback_to,
                later.id AS later_id, later.status AS later_status, later.deployed_at AS later_at
         FROM current_deployments c
         JOIN deployments d ON d.id = c.deployment_id
         LEFT JOIN deployment_lineage l ON l.deployment_id = d.id
         LEFT JOIN LATERAL (
             SELECT api_key_name FROM deployment_audit
             WHERE deployment_id = d.id ORDER BY received_at DESC LIMIT 1
         ) a ON true
         -- Only deployments after the last success are read (an index range
         -- of deployments_ws_env_time), however long the history is.
         LEFT JOIN LATERAL (
             SELECT id, status, deployed_at FROM deployments n
             WHERE n.workspace_id = c.workspace_id AND n.environment_id = c.environment_id
               AND n.deployed_at > c.deployed_at AND n.repo_full_name = c.repo_full_name
             ORDER BY n.deployed_at DESC, n.id DESC LIMIT 1
         ) later ON true
         WHERE c.workspace_id = $1
         ORDER BY c.repo_full_name",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await?;
    Ok(envs
        .into_iter()
        .map(|e| {
            let here = rows
                .iter()
                .filter(|r| r.environment_id == e.id)
                .cloned()
                .collect();
            (e, here)
        })
        .collect())
}

/// The repositories that ever succeeded in an environment, by name (the
/// timeline's repository filter offers them).
pub async fn overview_repositories(
    pool: &PgPool,
    workspace_id: Uuid,
    environment_id: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT repo_full_name FROM current_deployments
         WHERE workspace_id = $1 AND environment_id = $2 ORDER BY repo_full_name",
    )
    .bind(workspace_id)
    .bind(environment_id)
    .fetch_all(pool)
    .await
}

/// A successful deployment's rollback marks, for a page of a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct LineageMarks {
    pub deployment_id: Uuid,
    pub rollback_to: Option<Uuid>,
    pub rolled_back_by: Option<Uuid>,
}

/// The rollback marks of the given deployments (only successes have any).
pub async fn lineage_marks(
    pool: &PgPool,
    workspace_id: Uuid,
    ids: &[Uuid],
) -> Result<Vec<LineageMarks>, sqlx::Error> {
    sqlx::query_as(
        "SELECT deployment_id, rollback_to, rolled_back_by FROM deployment_lineage
         WHERE workspace_id = $1 AND deployment_id = ANY($2)",
    )
    .bind(workspace_id)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// The as-of query (parameters: workspace, environment id, at, repository).
pub const DEPLOYED_AT_SQL: &str = "SELECT d.repo_full_name, d.id AS deployment_id, d.commit_sha, d.branch, d.deployed_at
         FROM current_deployments c
         CROSS JOIN LATERAL (
             SELECT id, repo_full_name, commit_sha, branch, deployed_at FROM deployments d
             WHERE d.workspace_id = c.workspace_id AND d.environment_id = c.environment_id
               AND d.repo_full_name = c.repo_full_name AND d.status = 'success' AND d.deployed_at <= $3
             ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1
         ) d
         WHERE c.workspace_id = $1 AND c.environment_id = $2 AND ($4::text IS NULL OR c.repo_full_name = $4)
         ORDER BY d.repo_full_name";

/// What was running in an environment at `at`: per repository, the latest
/// successful deployment with `deployed_at <= at`. Reports that arrived late
/// or out of order are already merged in `deployments`; failed deployments
/// never count; a repository with no success yet at `at` is absent.
///
/// Repositories come from `current_deployments` (every repository that ever
/// succeeded there), and each is one index probe into the partial index
/// `deployments_success_asof`: no scan of the environment's history.
pub async fn deployed_at(
    pool: &PgPool,
    workspace_id: Uuid,
    environment_id: Uuid,
    at: DateTime<Utc>,
    repository: Option<&str>,
) -> Result<Vec<Running>, sqlx::Error> {
    sqlx::query_as(DEPLOYED_AT_SQL)
        .bind(workspace_id)
        .bind(environment_id)
        .bind(at)
        .bind(repository)
        .fetch_all(pool)
        .await
}

/// RFC 3339 UTC with a `Z`, as every timestamp the API returns.
pub(crate) mod ts {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

mod ts_opt {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::ts::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let c = Cursor {
            deployed_at: DateTime::from_timestamp_micros(1_705_314_600_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "!!",
            "bm90IGEgY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("12|nope"),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
