//! "What changed": the commits each deployment listed, each successful
//! deployment's predecessor and rollbacks (`deployment_lineage`), and where
//! each commit first shipped (`shipped_commits`), kept in the batch's
//! transaction by [`crate::writer`].
//!
//! Like `current_deployments`, these tables are recomputed from
//! `deployments` for what a batch touched, so they do not depend on the
//! order events arrive in (docs/dora.md defines each column):
//! - the lineage of an environment and repository is recomputed from a lower
//!   bound to its newest deployment, by [`crate::lineage`]. A change at
//!   position P (a success appearing, moving, or ceasing to be one) can alter
//!   the facts of the successes after P, and, through what they compare
//!   against, of those after P's predecessor, after the latest success of
//!   known commit before P, and after the latest earlier deployment of P's
//!   commit (a rollback's anchor). The bound is the earliest of those over
//!   every change in the batch, before and after it; live traffic appends,
//!   so the span is a few rows, and the computation is linear in it.
//! - `shipped_commits` is recomputed for every (environment, repository,
//!   sha) that a touched deployment lists.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use vibemon_schemas::DeploymentStatus;

use crate::batch::Located;
use crate::lineage;

/// A deployment as the database held it before a batch changed it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Before {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub environment_id: Uuid,
    pub repo_full_name: String,
    pub status: String,
    pub commit_sha: Option<String>,
    pub deployed_at: DateTime<Utc>,
}

/// The deployments of `fresh` that already had a row, as they were: only a
/// deployment named by an external id can have had reports before.
pub async fn before(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
) -> Result<Vec<Before>, sqlx::Error> {
    let ids: Vec<Uuid> = fresh
        .iter()
        .filter(|l| l.event.external_id.is_some())
        .map(|l| l.event.deployment_id)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT id, workspace_id, environment_id, repo_full_name, status, commit_sha, deployed_at
         FROM deployments WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await
}

/// Records the commits the events of `fresh` list, then recomputes the
/// lineage and the first-shipped commits they may have changed.
pub async fn refresh(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
    before: &[Before],
) -> Result<(), sqlx::Error> {
    let listed = fresh.iter().any(|l| !l.event.commits.is_empty());
    if listed {
        insert_commits(tx, fresh).await?;
    }
    if listed || !before.is_empty() {
        refresh_shipped(tx, fresh, before).await?;
    }
    let was_success = |b: &Before| b.status == DeploymentStatus::Success.as_str();
    if fresh
        .iter()
        .any(|l| l.event.status == DeploymentStatus::Success)
        || before.iter().any(was_success)
    {
        let earlier: Vec<&Before> = before.iter().filter(|b| was_success(b)).collect();
        refresh_lineage(tx, fresh, &earlier).await?;
    }
    Ok(())
}

/// Upserts one `deployment_commits` row per (deployment, sha) the events
/// list; between two reports listing one commit, the greater event id
/// gives its details, in the batch as against the table.
async fn insert_commits(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
) -> Result<(), sqlx::Error> {
    let mut chosen: HashMap<(Uuid, &str), (Uuid, &vibemon_schemas::commit::Commit)> =
        HashMap::new();
    for l in fresh {
        let e = &l.event;
        for c in &e.commits {
            let slot = chosen
                .entry((e.deployment_id, c.sha.as_str()))
                .or_insert((e.event_id, c));
            if e.event_id > slot.0 {
                *slot = (e.event_id, c);
            }
        }
    }
    let mut rows = CommitRows::default();
    for ((deployment, _), (event, commit)) in chosen {
        rows.push(deployment, event, commit);
    }
    sqlx::query(
        "INSERT INTO deployment_commits AS c
             (deployment_id, sha, committed_at, authored_at, author, subject, event_id)
         SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                              $5::text[], $6::text[], $7::uuid[])
         ON CONFLICT (deployment_id, sha) DO UPDATE SET
             committed_at = excluded.committed_at, authored_at = excluded.authored_at,
             author = excluded.author, subject = excluded.subject, event_id = excluded.event_id
         WHERE excluded.event_id > c.event_id",
    )
    .bind(rows.deployment)
    .bind(rows.sha)
    .bind(rows.committed_at)
    .bind(rows.authored_at)
    .bind(rows.author)
    .bind(rows.subject)
    .bind(rows.event)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Column arrays for `deployment_commits`.
#[derive(Default)]
struct CommitRows {
    deployment: Vec<Uuid>,
    sha: Vec<String>,
    committed_at: Vec<DateTime<Utc>>,
    authored_at: Vec<Option<DateTime<Utc>>>,
    author: Vec<Option<String>>,
    subject: Vec<Option<String>>,
    event: Vec<Uuid>,
}

impl CommitRows {
    fn push(&mut self, deployment: Uuid, event: Uuid, c: &vibemon_schemas::commit::Commit) {
        self.deployment.push(deployment);
        self.sha.push(c.sha.as_str().to_owned());
        self.committed_at.push(c.committed_at);
        self.authored_at.push(c.authored_at);
        self.author
            .push(c.author.as_ref().map(|a| a.as_str().to_owned()));
        self.subject
            .push(c.subject.as_ref().map(|s| s.as_str().to_owned()));
        self.event.push(event);
    }
}

/// Recomputes `shipped_commits` for every (key, sha) listed by a deployment
/// of `fresh`, under its key now and the key it had before.
async fn refresh_shipped(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
    before: &[Before],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = fresh.iter().map(|l| l.event.deployment_id).collect();
    let old = OldKeys::of(before.iter());
    sqlx::query(REFRESH_SHIPPED)
        .bind(ids)
        .bind(old.id)
        .bind(old.workspace)
        .bind(old.environment)
        .bind(old.repository)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `$1`: deployments touched; `$2..$5`: (id, workspace, environment,
/// repository) they had before. Per (key, sha) they list: the first success
/// listing it becomes the row, or the row goes when there is none.
const REFRESH_SHIPPED: &str = "WITH touched AS (
         SELECT d.workspace_id AS ws, d.environment_id AS env, d.repo_full_name AS repo, c.sha
         FROM deployment_commits c JOIN deployments d ON d.id = c.deployment_id
         WHERE c.deployment_id = ANY($1)
         UNION
         SELECT o.ws, o.env, o.repo, c.sha
         FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[], $5::text[]) AS o(id, ws, env, repo)
         JOIN deployment_commits c ON c.deployment_id = o.id
     ), best AS (
         SELECT t.ws, t.env, t.repo, t.sha, b.id, b.deployed_at, b.committed_at
         FROM touched t LEFT JOIN LATERAL (
             SELECT d.id, d.deployed_at, c.committed_at
             FROM deployment_commits c JOIN deployments d ON d.id = c.deployment_id
             WHERE c.sha = t.sha AND d.workspace_id = t.ws AND d.environment_id = t.env
               AND d.repo_full_name = t.repo AND d.status = 'success'
             ORDER BY d.deployed_at, d.id LIMIT 1
         ) b ON true
     ), gone AS (
         DELETE FROM shipped_commits s USING best
         WHERE best.id IS NULL AND s.workspace_id = best.ws AND s.environment_id = best.env
           AND s.repo_full_name = best.repo AND s.sha = best.sha
     )
     INSERT INTO shipped_commits AS s
         (workspace_id, environment_id, repo_full_name, sha, deployment_id, deployed_at, committed_at)
     SELECT ws, env, repo, sha, id, deployed_at, committed_at FROM best WHERE id IS NOT NULL
     ON CONFLICT (workspace_id, environment_id, repo_full_name, sha) DO UPDATE SET
         deployment_id = excluded.deployment_id, deployed_at = excluded.deployed_at,
         committed_at = excluded.committed_at
     WHERE (s.deployment_id, s.deployed_at, s.committed_at)
           IS DISTINCT FROM (excluded.deployment_id, excluded.deployed_at, excluded.committed_at)";

/// Column arrays of the keys deployments had before a batch.
#[derive(Default)]
struct OldKeys {
    id: Vec<Uuid>,
    workspace: Vec<Uuid>,
    environment: Vec<Uuid>,
    repository: Vec<String>,
}

impl OldKeys {
    fn of<'a>(before: impl Iterator<Item = &'a Before>) -> Self {
        let mut keys = Self::default();
        for b in before {
            keys.id.push(b.id);
            keys.workspace.push(b.workspace_id);
            keys.environment.push(b.environment_id);
            keys.repository.push(b.repo_full_name.clone());
        }
        keys
    }
}

/// Recomputes `deployment_lineage` for every environment and repository
/// where `fresh` may have added, moved or removed a success; `earlier` are
/// the successes the batch's deployments were before it. Postgres finds each
/// key's bound and the rows from it on ([`LINEAGE_SPAN`]), [`lineage::facts`]
/// computes, and one statement writes what changed.
async fn refresh_lineage(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
    earlier: &[&Before],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = fresh.iter().map(|l| l.event.deployment_id).collect();
    let old = OldKeys::of(earlier.iter().copied());
    let sha: Vec<Option<String>> = earlier.iter().map(|b| b.commit_sha.clone()).collect();
    let at_before: Vec<DateTime<Utc>> = earlier.iter().map(|b| b.deployed_at).collect();
    let fetch = |extra: Vec<(LineageKey, lineage::Position)>| {
        let mut x = OldKeys::default();
        let (mut at, mut id) = (Vec::new(), Vec::new());
        for ((ws, env, repo), (a, i)) in extra {
            x.workspace.push(ws);
            x.environment.push(env);
            x.repository.push(repo);
            at.push(a);
            id.push(i);
        }
        sqlx::query_as::<_, SpanRow>(LINEAGE_SPAN)
            .bind(ids.clone())
            .bind(old.id.clone())
            .bind(old.workspace.clone())
            .bind(old.environment.clone())
            .bind(old.repository.clone())
            .bind(sha.clone())
            .bind(at_before.clone())
            .bind(x.workspace)
            .bind(x.environment)
            .bind(x.repository)
            .bind(at)
            .bind(id)
    };
    let mut keys = spans(fetch(Vec::new()).fetch_all(&mut **tx).await?);
    let fresh_ids: HashSet<Uuid> = ids.iter().copied().collect();
    let further: Vec<(LineageKey, lineage::Position)> = keys
        .iter()
        .flat_map(|(key, span)| {
            span.anchors_before_bound(&fresh_ids)
                .into_iter()
                .map(move |p| (key.clone(), p))
        })
        .collect();
    if !further.is_empty() {
        keys = spans(fetch(further).fetch_all(&mut **tx).await?);
    }
    let mut write = LineageWrite::default();
    for ((ws, env, repo), key) in keys {
        let facts = lineage::facts(&key.before, &key.span);
        write.push(ws, env, &repo, key.bound, &key.span, facts);
    }
    write.execute(tx).await
}

/// (workspace, environment, repository): one lineage.
type LineageKey = (Uuid, Uuid, String);

/// The rows of [`LINEAGE_SPAN`] by key, each span in order.
fn spans(rows: Vec<SpanRow>) -> BTreeMap<LineageKey, KeySpan> {
    let mut keys: BTreeMap<LineageKey, KeySpan> = BTreeMap::new();
    for row in rows {
        keys.entry((row.ws, row.env, row.repo.clone()))
            .or_default()
            .add(row);
    }
    for key in keys.values_mut() {
        key.span.sort_by_key(lineage::Success::position);
    }
    keys
}

/// One row of [`LINEAGE_SPAN`].
#[derive(sqlx::FromRow)]
struct SpanRow {
    kind: String,
    ws: Uuid,
    env: Uuid,
    repo: String,
    at: DateTime<Utc>,
    id: Uuid,
    sha: Option<String>,
}

/// A key's bound, the successes from it on, and what came before.
#[derive(Default)]
struct KeySpan {
    bound: Option<lineage::Position>,
    span: Vec<lineage::Success>,
    before: lineage::Before,
}

impl KeySpan {
    /// The positions, before the bound, of the anchors of successes the
    /// batch changed (`fresh`): the earlier deployment of a commit that no
    /// success of the span deployed before it. Each one is a change's
    /// candidate the bound did not include.
    fn anchors_before_bound(&self, fresh: &HashSet<Uuid>) -> Vec<lineage::Position> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut out = Vec::new();
        for s in &self.span {
            let Some(sha) = s.commit_sha.as_deref() else {
                continue;
            };
            if seen.insert(sha) && fresh.contains(&s.id) {
                if let Some(anchor) = self.before.anchors.get(sha) {
                    out.push(anchor.position());
                }
            }
        }
        out
    }

    fn add(&mut self, row: SpanRow) {
        let success = lineage::Success {
            id: row.id,
            deployed_at: row.at,
            commit_sha: row.sha,
        };
        match row.kind.as_str() {
            "bound" => self.bound = Some(success.position()),
            "span" => self.span.push(success),
            "predecessor" => self.before.predecessor = Some(success),
            "known" => self.before.known = Some(success),
            "anchor" => {
                if let Some(sha) = success.commit_sha.clone() {
                    self.before.anchors.insert(sha, success);
                }
            }
            other => unreachable!("LINEAGE_SPAN has no row kind {other:?}"),
        }
    }
}

/// `$1`: deployments touched (their successes now count as changes);
/// `$2..$7`: (id, workspace, environment, repository, sha, deployed_at) of
/// the successes they were before.
///
/// `bounds`: per key, the earliest position a change can affect: the change
/// itself, the success before it, the latest success of known commit before
/// it, and the latest earlier success of its commit (a rollback's anchor).
/// That last one is looked up here only for what the batch's deployments
/// were before (`$2..$7`); for what they are now, [`refresh_lineage`] finds
/// it among the rows returned and, in the rare case it lies before the
/// bound, runs the query again with it as an extra candidate (`$8..$12`):
/// one index probe per new success instead of two.
/// Rows: each bound; the successes from it on (`span`); and before
/// the bound, the success just before it, the latest success of known commit,
/// and the latest success of each commit the span deploys.
const LINEAGE_SPAN: &str = "WITH was AS (
         SELECT ws, env, repo, sha, at, id
         FROM UNNEST($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::timestamptz[])
             AS o(id, ws, env, repo, sha, at)
     ), changed AS (
         SELECT * FROM was
         UNION ALL
         SELECT workspace_id, environment_id, repo_full_name, commit_sha, deployed_at, id
         FROM deployments WHERE id = ANY($1) AND status = 'success'
     ), earliest AS (
         -- Per key, its earliest change: the success before it and the
         -- latest of known commit before it are at or before those of any
         -- later change.
         SELECT DISTINCT ON (ws, env, repo) ws, env, repo, at, id
         FROM changed ORDER BY ws, env, repo, at, id
     ), candidates AS (
         SELECT ws, env, repo, at, id FROM earliest
         UNION ALL
         SELECT c.ws, c.env, c.repo, p.deployed_at, p.id FROM earliest c CROSS JOIN LATERAL (
             SELECT d.deployed_at, d.id FROM deployments d
             WHERE d.workspace_id = c.ws AND d.environment_id = c.env AND d.repo_full_name = c.repo
               AND d.status = 'success' AND (d.deployed_at, d.id) < (c.at, c.id)
             ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1
         ) p
         UNION ALL
         SELECT c.ws, c.env, c.repo, k.deployed_at, k.id FROM earliest c CROSS JOIN LATERAL (
             SELECT d.deployed_at, d.id FROM deployments d
             WHERE d.workspace_id = c.ws AND d.environment_id = c.env AND d.repo_full_name = c.repo
               AND d.status = 'success' AND d.commit_sha IS NOT NULL
               AND (d.deployed_at, d.id) < (c.at, c.id)
             ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1
         ) k
         UNION ALL
         SELECT c.ws, c.env, c.repo, a.deployed_at, a.id FROM was c CROSS JOIN LATERAL (
             SELECT d.deployed_at, d.id FROM deployments d
             WHERE d.workspace_id = c.ws AND d.environment_id = c.env AND d.repo_full_name = c.repo
               AND d.status = 'success' AND d.commit_sha = c.sha AND (d.deployed_at, d.id) < (c.at, c.id)
             ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1
         ) a
         UNION ALL
         SELECT * FROM UNNEST($8::uuid[], $9::uuid[], $10::text[], $11::timestamptz[], $12::uuid[])
     ), bounds AS (
         SELECT DISTINCT ON (ws, env, repo) ws, env, repo, at, id
         FROM candidates ORDER BY ws, env, repo, at, id
     ), span AS (
         SELECT b.ws, b.env, b.repo, d.deployed_at AS at, d.id, d.commit_sha AS sha
         FROM bounds b JOIN deployments d
           ON d.workspace_id = b.ws AND d.environment_id = b.env AND d.repo_full_name = b.repo
          AND d.status = 'success' AND (d.deployed_at, d.id) >= (b.at, b.id)
     )
     SELECT 'bound' AS kind, ws, env, repo, at, id, NULL::text AS sha FROM bounds
     UNION ALL
     SELECT 'span', * FROM span
     UNION ALL
     SELECT 'predecessor', b.ws, b.env, b.repo, p.deployed_at, p.id, p.commit_sha
     FROM bounds b CROSS JOIN LATERAL (
         SELECT d.deployed_at, d.id, d.commit_sha FROM deployments d
         WHERE d.workspace_id = b.ws AND d.environment_id = b.env AND d.repo_full_name = b.repo
           AND d.status = 'success' AND (d.deployed_at, d.id) < (b.at, b.id)
         ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1
     ) p
     UNION ALL
     SELECT 'known', b.ws, b.env, b.repo, k.deployed_at, k.id, k.commit_sha
     FROM bounds b CROSS JOIN LATERAL (
         SELECT d.deployed_at, d.id, d.commit_sha FROM deployments d
         WHERE d.workspace_id = b.ws AND d.environment_id = b.env AND d.repo_full_name = b.repo
           AND d.status = 'success' AND d.commit_sha IS NOT NULL
           AND (d.deployed_at, d.id) < (b.at, b.id)
         ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1
     ) k
     UNION ALL
     SELECT 'anchor', s.ws, s.env, s.repo, a.deployed_at, a.id, a.commit_sha
     FROM (SELECT DISTINCT ws, env, repo, sha FROM span WHERE sha IS NOT NULL) s
     JOIN bounds b ON b.ws = s.ws AND b.env = s.env AND b.repo = s.repo
     CROSS JOIN LATERAL (
         SELECT d.deployed_at, d.id, d.commit_sha FROM deployments d
         WHERE d.workspace_id = s.ws AND d.environment_id = s.env AND d.repo_full_name = s.repo
           AND d.status = 'success' AND d.commit_sha = s.sha AND (d.deployed_at, d.id) < (b.at, b.id)
         ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1
     ) a";

/// Column arrays for the lineage write: the bounds, and every success from
/// them on with its facts.
#[derive(Default)]
struct LineageWrite {
    bound_ws: Vec<Uuid>,
    bound_env: Vec<Uuid>,
    bound_repo: Vec<String>,
    bound_at: Vec<DateTime<Utc>>,
    bound_id: Vec<Uuid>,
    id: Vec<Uuid>,
    ws: Vec<Uuid>,
    env: Vec<Uuid>,
    repo: Vec<String>,
    at: Vec<DateTime<Utc>>,
    sha: Vec<Option<String>>,
    predecessor_id: Vec<Option<Uuid>>,
    predecessor_sha: Vec<Option<String>>,
    rollback_to: Vec<Option<Uuid>>,
    rolled_back_by: Vec<Option<Uuid>>,
}

impl LineageWrite {
    fn push(
        &mut self,
        ws: Uuid,
        env: Uuid,
        repo: &str,
        bound: Option<lineage::Position>,
        span: &[lineage::Success],
        facts: Vec<lineage::Facts>,
    ) {
        if let Some((at, id)) = bound {
            self.bound_ws.push(ws);
            self.bound_env.push(env);
            self.bound_repo.push(repo.to_owned());
            self.bound_at.push(at);
            self.bound_id.push(id);
        }
        for (s, f) in span.iter().zip(facts) {
            self.id.push(s.id);
            self.ws.push(ws);
            self.env.push(env);
            self.repo.push(repo.to_owned());
            self.at.push(s.deployed_at);
            self.sha.push(s.commit_sha.clone());
            self.predecessor_id.push(f.predecessor_id);
            self.predecessor_sha.push(f.predecessor_commit_sha);
            self.rollback_to.push(f.rollback_to);
            self.rolled_back_by.push(f.rolled_back_by);
        }
    }

    async fn execute(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        if self.bound_ws.is_empty() {
            return Ok(());
        }
        sqlx::query(WRITE_LINEAGE)
            .bind(self.bound_ws)
            .bind(self.bound_env)
            .bind(self.bound_repo)
            .bind(self.bound_at)
            .bind(self.bound_id)
            .bind(self.id)
            .bind(self.ws)
            .bind(self.env)
            .bind(self.repo)
            .bind(self.at)
            .bind(self.sha)
            .bind(self.predecessor_id)
            .bind(self.predecessor_sha)
            .bind(self.rollback_to)
            .bind(self.rolled_back_by)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// `$1..$5`: the bounds; `$6..$15`: the rows from them on. Rows of a key
/// from its bound on that are not among them go (no longer successes, or
/// moved to another key, which writes them there); the rest are upserted
/// when they changed.
const WRITE_LINEAGE: &str = "WITH bounds AS (
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::uuid[])
             AS b(ws, env, repo, at, id)
     ), rows AS (
         SELECT * FROM UNNEST($6::uuid[], $7::uuid[], $8::uuid[], $9::text[], $10::timestamptz[],
             $11::text[], $12::uuid[], $13::text[], $14::uuid[], $15::uuid[])
             AS r(id, ws, env, repo, at, sha, predecessor_id, predecessor_sha, rollback_to, rolled_back_by)
     ), gone AS (
         DELETE FROM deployment_lineage l USING bounds b
         WHERE l.workspace_id = b.ws AND l.environment_id = b.env AND l.repo_full_name = b.repo
           AND (l.deployed_at, l.deployment_id) >= (b.at, b.id)
           AND NOT EXISTS (SELECT 1 FROM rows r WHERE r.id = l.deployment_id)
     )
     INSERT INTO deployment_lineage AS l (deployment_id, workspace_id, environment_id, repo_full_name,
         deployed_at, commit_sha, predecessor_id, predecessor_commit_sha, rollback_to, rolled_back_by)
     SELECT id, ws, env, repo, at, sha, predecessor_id, predecessor_sha, rollback_to, rolled_back_by
     FROM rows
     ON CONFLICT (deployment_id) DO UPDATE SET
         workspace_id = excluded.workspace_id, environment_id = excluded.environment_id,
         repo_full_name = excluded.repo_full_name, deployed_at = excluded.deployed_at,
         commit_sha = excluded.commit_sha, predecessor_id = excluded.predecessor_id,
         predecessor_commit_sha = excluded.predecessor_commit_sha,
         rollback_to = excluded.rollback_to, rolled_back_by = excluded.rolled_back_by
     WHERE (l.workspace_id, l.environment_id, l.repo_full_name, l.deployed_at, l.commit_sha,
            l.predecessor_id, l.predecessor_commit_sha, l.rollback_to, l.rolled_back_by)
           IS DISTINCT FROM
           (excluded.workspace_id, excluded.environment_id, excluded.repo_full_name,
            excluded.deployed_at, excluded.commit_sha, excluded.predecessor_id,
            excluded.predecessor_commit_sha, excluded.rollback_to, excluded.rolled_back_by)";
