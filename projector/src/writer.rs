//! Writes one prepared batch in one Postgres transaction: the audit rows, the
//! deployment history, current state, and the consumer checkpoints.
//!
//! Exactly-once comes from three choices:
//! - the checkpoint (next offset per partition) commits with the rows it
//!   produced, so a crash replays exactly the uncommitted records;
//! - `deployment_audit` is the ledger of applied events: only events it did
//!   not hold yet (`ON CONFLICT DO NOTHING RETURNING`) go on to the other
//!   tables, so a redelivered event, an `Idempotency-Key` retry, or a replay
//!   over the live database changes nothing;
//! - every merge is order-independent: a deployment keeps the greatest report
//!   by (status rank, deployed_at, received_at, event id), and current state
//!   is recomputed from history for the keys a batch touched.
//!
//! All statements are set-based (`UNNEST` arrays): a batch costs a handful of
//! round trips whatever its size.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::batch::Located;

/// What a committed batch did, for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Events new to the audit ledger.
    pub new_events: usize,
    /// Events already applied before (redeliveries, replays, retries).
    pub duplicates: usize,
}

/// Writes `events` and the checkpoints in one transaction.
pub async fn write_batch(
    pool: &PgPool,
    group: &str,
    events: &[Located],
    next_offsets: &BTreeMap<(String, i32), i64>,
) -> Result<Applied, sqlx::Error> {
    let events: Vec<&Located> = events.iter().collect();
    write_transaction(pool, group, &events, next_offsets).await
}

/// Writes a batch as up to `writers` transactions at once, one per group of
/// partitions (partition modulo `writers`).
///
/// One Postgres backend runs one transaction on one core; this lets the
/// writes use more. It is safe because the record key is the environment:
/// all reports of an environment, and so every `deployments` and
/// `current_deployments` row they touch, live in one partition, so the
/// groups write disjoint rows and never wait on each other. Each group's
/// checkpoints commit with its own rows. If one group fails after another
/// committed, retrying the whole batch is still exact: the audit ledger
/// turns the committed group's events into duplicates that change nothing.
pub async fn write_partitioned(
    pool: &PgPool,
    group: &str,
    events: &[Located],
    next_offsets: &BTreeMap<(String, i32), i64>,
    writers: usize,
) -> Result<Applied, sqlx::Error> {
    let writers = writers.max(1);
    let slot = |partition: i32| partition.rem_euclid(writers as i32) as usize;
    // Per writer: its events and its partitions' next offsets.
    type Share<'a> = (Vec<&'a Located>, BTreeMap<(String, i32), i64>);
    let mut groups: Vec<Share> = (0..writers).map(|_| Default::default()).collect();
    for l in events {
        groups[slot(l.partition)].0.push(l);
    }
    for ((topic, partition), next) in next_offsets {
        groups[slot(*partition)]
            .1
            .insert((topic.clone(), *partition), *next);
    }
    let writes = groups
        .iter()
        .filter(|(events, offsets)| !events.is_empty() || !offsets.is_empty())
        .map(|(events, offsets)| write_transaction(pool, group, events, offsets));
    let mut applied = Applied::default();
    for result in futures::future::join_all(writes).await {
        let a = result?;
        applied.new_events += a.new_events;
        applied.duplicates += a.duplicates;
    }
    Ok(applied)
}

async fn write_transaction(
    pool: &PgPool,
    group: &str,
    events: &[&Located],
    next_offsets: &BTreeMap<(String, i32), i64>,
) -> Result<Applied, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let new_ids = insert_audit(&mut tx, events).await?;
    let mut seen = HashSet::new();
    let fresh: Vec<&Located> = events
        .iter()
        .copied()
        .filter(|e| new_ids.contains(&e.event.event_id) && seen.insert(e.event.event_id))
        .collect();
    upsert_deployments(&mut tx, &fresh).await?;
    refresh_current(&mut tx, &fresh).await?;
    save_checkpoints(&mut tx, group, next_offsets).await?;
    tx.commit().await?;
    Ok(Applied {
        new_events: fresh.len(),
        duplicates: events.len() - fresh.len(),
    })
}

async fn insert_audit(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&Located],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let n = events.len();
    let (mut event_id, mut deployment_id, mut workspace_id, mut environment_id, mut key_id) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut key_name, mut source, mut status, mut received_at, mut payload) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut topic, mut partition, mut offset) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for l in events {
        let e = &l.event;
        event_id.push(e.event_id);
        deployment_id.push(e.deployment_id);
        workspace_id.push(e.workspace_id);
        environment_id.push(e.environment_id);
        key_id.push(e.api_key_id);
        key_name.push(e.api_key_name.to_string());
        source.push(e.source.as_str());
        status.push(e.status.as_str());
        received_at.push(e.received_at);
        payload.push(serde_json::to_value(e).expect("events serialize"));
        topic.push(l.topic.clone());
        partition.push(l.partition);
        offset.push(l.offset);
    }
    let rows: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO deployment_audit (event_id, deployment_id, workspace_id, environment_id, api_key_id,
             api_key_name, source, status, received_at, payload, kafka_topic, kafka_partition, kafka_offset)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::text[],
             $8::text[], $9::timestamptz[], $10::jsonb[], $11::text[], $12::int4[], $13::int8[])
         ON CONFLICT (event_id) DO NOTHING
         RETURNING event_id",
    )
    .bind(event_id)
    .bind(deployment_id)
    .bind(workspace_id)
    .bind(environment_id)
    .bind(key_id)
    .bind(key_name)
    .bind(source)
    .bind(status)
    .bind(received_at)
    .bind(payload)
    .bind(topic)
    .bind(partition)
    .bind(offset)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The order in which reports of one deployment supersede each other: status
/// only moves forward, then the later `deployed_at`, then the later receipt,
/// then the event id as a deterministic tie-break.
type ReportOrder = (i16, DateTime<Utc>, DateTime<Utc>, Uuid);

fn report_order(l: &Located) -> ReportOrder {
    let e = &l.event;
    (e.status.rank(), e.deployed_at, e.received_at, e.event_id)
}

/// Columns replaced when a newer report arrives.
const REPLACED: [&str; 14] = [
    "workspace_id",
    "environment_id",
    "environment",
    "repo_full_name",
    "branch",
    "commit_sha",
    "status",
    "source",
    "deployed_at",
    "extra_data",
    "external_id",
    "updated_at",
    "status_rank",
    "last_event_id",
];

async fn upsert_deployments(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
) -> Result<(), sqlx::Error> {
    // One row per deployment: the winning report, the first receipt, the count.
    let mut merged: HashMap<Uuid, (&Located, DateTime<Utc>, i32)> = HashMap::new();
    for &l in fresh {
        let e = &l.event;
        merged
            .entry(e.deployment_id)
            .and_modify(|(best, first, count)| {
                if report_order(l) > report_order(best) {
                    *best = l;
                }
                *first = (*first).min(e.received_at);
                *count += 1;
            })
            .or_insert((l, e.received_at, 1));
    }
    if merged.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = merged.into_values().collect();
    let mut id = Vec::new();
    let (mut ws, mut env_id, mut env, mut repo, mut branch, mut sha) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut status, mut source, mut deployed_at, mut extra, mut external) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut created, mut updated, mut rank, mut last, mut reports) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (l, first, count) in rows {
        let e = &l.event;
        id.push(e.deployment_id);
        ws.push(e.workspace_id);
        env_id.push(e.environment_id);
        env.push(e.environment.to_string());
        repo.push(e.repository.to_string());
        branch.push(e.branch.as_ref().map(ToString::to_string));
        sha.push(e.commit_sha.as_ref().map(ToString::to_string));
        status.push(e.status.as_str());
        source.push(e.source.as_str());
        deployed_at.push(e.deployed_at);
        extra.push(serde_json::Value::Object(e.extra_data.as_map().clone()));
        external.push(e.external_id.as_ref().map(ToString::to_string));
        created.push(first);
        updated.push(e.received_at);
        rank.push(e.status.rank());
        last.push(e.event_id);
        reports.push(count);
    }
    let newer = "(excluded.status_rank, excluded.deployed_at, excluded.updated_at, excluded.last_event_id) \
                 > (d.status_rank, d.deployed_at, d.updated_at, d.last_event_id)";
    let replaced: Vec<String> = REPLACED
        .iter()
        .map(|c| format!("{c} = CASE WHEN {newer} THEN excluded.{c} ELSE d.{c} END"))
        .collect();
    let sql = format!(
        "INSERT INTO deployments AS d (id, workspace_id, environment_id, environment, repo_full_name, branch,
             commit_sha, status, source, deployed_at, extra_data, external_id, created_at, updated_at,
             status_rank, last_event_id, reports)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
             $8::text[], $9::text[], $10::timestamptz[], $11::jsonb[], $12::text[], $13::timestamptz[],
             $14::timestamptz[], $15::int2[], $16::uuid[], $17::int4[])
         ON CONFLICT (id) DO UPDATE SET
             {},
             created_at = LEAST(d.created_at, excluded.created_at),
             reports = d.reports + excluded.reports,
             projected_at = now()",
        replaced.join(",\n             ")
    );
    sqlx::query(&sql)
        .bind(id)
        .bind(ws)
        .bind(env_id)
        .bind(env)
        .bind(repo)
        .bind(branch)
        .bind(sha)
        .bind(status)
        .bind(source)
        .bind(deployed_at)
        .bind(extra)
        .bind(external)
        .bind(created)
        .bind(updated)
        .bind(rank)
        .bind(last)
        .bind(reports)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Recomputes `current_deployments` for every (workspace, environment,
/// repository) the batch touched, from `deployments` itself: the latest
/// success by (deployed_at, id). A late, older success therefore never
/// replaces a newer one, and the result does not depend on arrival order.
async fn refresh_current(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
) -> Result<(), sqlx::Error> {
    let keys: HashSet<(Uuid, Uuid, String)> = fresh
        .iter()
        .map(|l| {
            (
                l.event.workspace_id,
                l.event.environment_id,
                l.event.repository.to_string(),
            )
        })
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let (mut ws, mut env, mut repo) = (Vec::new(), Vec::new(), Vec::new());
    for (w, e, r) in keys {
        ws.push(w);
        env.push(e);
        repo.push(r);
    }
    sqlx::query(
        "WITH keys AS (
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[]) AS k(ws, env, repo)
         ), best AS (
             SELECT k.ws, k.env, k.repo, b.id, b.commit_sha, b.branch, b.deployed_at
             FROM keys k LEFT JOIN LATERAL (
                 SELECT d.id, d.commit_sha, d.branch, d.deployed_at FROM deployments d
                 WHERE d.workspace_id = k.ws AND d.environment_id = k.env
                   AND d.repo_full_name = k.repo AND d.status = 'success'
                 ORDER BY d.deployed_at DESC, d.id DESC LIMIT 1
             ) b ON true
         ), gone AS (
             DELETE FROM current_deployments c USING best
             WHERE best.id IS NULL AND c.workspace_id = best.ws
               AND c.environment_id = best.env AND c.repo_full_name = best.repo
         )
         INSERT INTO current_deployments AS c
             (workspace_id, environment_id, repo_full_name, deployment_id, commit_sha, branch, deployed_at)
         SELECT ws, env, repo, id, commit_sha, branch, deployed_at FROM best WHERE id IS NOT NULL
         ON CONFLICT (workspace_id, environment_id, repo_full_name) DO UPDATE SET
             deployment_id = excluded.deployment_id, commit_sha = excluded.commit_sha,
             branch = excluded.branch, deployed_at = excluded.deployed_at, projected_at = now()
         WHERE (c.deployment_id, c.commit_sha, c.branch, c.deployed_at)
               IS DISTINCT FROM (excluded.deployment_id, excluded.commit_sha, excluded.branch, excluded.deployed_at)",
    )
    .bind(ws)
    .bind(env)
    .bind(repo)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn save_checkpoints(
    tx: &mut Transaction<'_, Postgres>,
    group: &str,
    next_offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), sqlx::Error> {
    if next_offsets.is_empty() {
        return Ok(());
    }
    let (mut topics, mut partitions, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
    for ((t, p), o) in next_offsets {
        topics.push(t.clone());
        partitions.push(*p);
        offsets.push(*o);
    }
    sqlx::query(
        "INSERT INTO projector_checkpoints (consumer_group, topic, partition, next_offset)
         SELECT $1, * FROM UNNEST($2::text[], $3::int4[], $4::int8[])
         ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
             next_offset = excluded.next_offset, updated_at = now()",
    )
    .bind(group)
    .bind(topics)
    .bind(partitions)
    .bind(offsets)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The stored next offset per partition of `topic` for `group`.
pub async fn load_checkpoints(
    pool: &PgPool,
    group: &str,
    topic: &str,
) -> Result<HashMap<i32, i64>, sqlx::Error> {
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT partition, next_offset FROM projector_checkpoints WHERE consumer_group = $1 AND topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// A digest of the projected tables, projection timestamps left out: two
/// databases with the same digest hold the same read model. Used to check
/// that a rebuild from the topic reproduces the live tables.
pub async fn digest(pool: &PgPool) -> Result<String, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT md5(
            (SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM (
                SELECT id, workspace_id, environment_id, environment, repo_full_name, branch, commit_sha, status,
                       source, deployed_at, extra_data, external_id, created_at, updated_at, status_rank,
                       last_event_id, reports FROM deployments) t)
            || '#' ||
            (SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM (
                SELECT event_id, deployment_id, workspace_id, environment_id, api_key_id, api_key_name, source,
                       status, received_at, payload, kafka_topic, kafka_partition, kafka_offset
                FROM deployment_audit) t)
            || '#' ||
            (SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM (
                SELECT workspace_id, environment_id, repo_full_name, deployment_id, commit_sha, branch, deployed_at
                FROM current_deployments) t))",
    )
    .fetch_one(pool)
    .await
}
