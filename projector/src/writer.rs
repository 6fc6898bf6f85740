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
//! A batch is first streamed with a binary `COPY` into a session-lived
//! temporary staging table; every write after that is one set-based
//! `INSERT … SELECT` from it, so a batch costs a handful of round trips
//! whatever its size and each value crosses the wire once. The audit ledger
//! stores each event as this build encodes it, in a `json` column (kept as
//! text, not parsed into `jsonb`), and one history row per deployment per
//! batch is reduced in SQL before its upsert. The "what changed" tables
//! (commits, lineage, first-shipped commits) are kept by
//! [`crate::what_changed`] in the same transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::{PgPool, Postgres, Transaction};
use tracing::Instrument;
use uuid::Uuid;

use vibemon_schemas::DeploymentReported;
use vibemon_store::checkpoints::{self, Position};
use vibemon_store::copy::BinaryCopy;

use crate::batch::Located;
use crate::tracing_spans;
use crate::what_changed;

/// What a committed batch did, for metrics and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Events new to the audit ledger.
    pub new_events: usize,
    /// Events already applied before (redeliveries, replays, retries).
    pub duplicates: usize,
    /// Duplicates whose request fingerprint differs from the applied
    /// event's: an `Idempotency-Key` reused for another report.
    pub conflicts: usize,
}

/// (workspace, environment, repository): one row of `current_deployments`.
type CurrentKey = (Uuid, Uuid, String);

/// Writes `events` and the checkpoints in one transaction.
pub async fn write_batch(
    pool: &PgPool,
    group: &str,
    events: &[Located],
    next_offsets: &BTreeMap<(String, i32), Position>,
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
    next_offsets: &BTreeMap<(String, i32), Position>,
    writers: usize,
) -> Result<Applied, sqlx::Error> {
    let writers = writers.max(1);
    let slot = |partition: i32| partition.rem_euclid(writers as i32) as usize;
    // Per writer: its events and its partitions' next offsets.
    type Share<'a> = (Vec<&'a Located>, BTreeMap<(String, i32), Position>);
    let mut groups: Vec<Share> = (0..writers).map(|_| Default::default()).collect();
    for l in events {
        groups[slot(l.partition)].0.push(l);
    }
    for ((topic, partition), position) in next_offsets {
        groups[slot(*partition)]
            .1
            .insert((topic.clone(), *partition), position.clone());
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
        applied.conflicts += a.conflicts;
    }
    Ok(applied)
}

/// One transaction, in a `transaction` span linked to every record's trace
/// and, when spans are exported, a `project` span per record in the
/// record's own trace that ends when the transaction does
/// ([`crate::tracing_spans`]).
async fn write_transaction(
    pool: &PgPool,
    group: &str,
    events: &[&Located],
    next_offsets: &BTreeMap<(String, i32), Position>,
) -> Result<Applied, sqlx::Error> {
    let spans = tracing_spans::Transaction::start(events);
    let result = async {
        let mut tx = pool.begin().await?;
        let applied = apply(&mut tx, events).await?;
        checkpoints::save(&mut tx, group, next_offsets).await?;
        tx.commit().await?;
        Ok(applied)
    }
    .instrument(spans.span())
    .await;
    spans.end(&result);
    result
}

/// Writes the rows of `events` (not the checkpoints) in `tx`.
///
/// Two paths give the same rows. The common case, a batch of events none of
/// which is in the ledger yet (live traffic, a replay into an empty
/// database), is appended with `COPY` straight into the ledger and, where
/// every event is a new deployment, into the history: no staging and no
/// `ON CONFLICT` checks. Each `COPY` runs under a savepoint, and a unique
/// violation (an event already applied, a deployment already known) rolls
/// it back and takes the general path: the batch staged, then merged with
/// `ON CONFLICT`.
async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&Located],
) -> Result<Applied, sqlx::Error> {
    if events.is_empty() {
        return Ok(Applied::default());
    }
    lock_environments(tx, events).await?;
    // The first copy of each event id is a candidate; later copies within
    // the batch are duplicates whatever the ledger holds.
    let mut seen = HashSet::new();
    let (mut fresh, mut again) = (Vec::new(), Vec::new());
    for &l in events {
        if seen.insert(l.event.event_id) {
            fresh.push(l);
        } else {
            again.push(l);
        }
    }
    // Staging positions of `again`, when the whole batch is staged.
    let mut staged_again = None;
    if !try_copy(tx, "ledger", copy_ledger(&fresh)).await? {
        // Some event was applied before: merge the whole batch.
        stage(tx, events).await?;
        let new_ids = insert_audit(tx).await?;
        let seqs;
        (fresh, again, seqs) = split_fresh(events, &new_ids);
        staged_again = Some(seqs);
    }
    let conflicts = record_conflicts(tx, &again).await?;
    let before = what_changed::before(tx, &fresh).await?;
    // A deployment that moves to another repository (possible in events
    // written before external ids included the repository) leaves its old
    // key's current state to recompute too.
    let moved: Vec<CurrentKey> = before
        .iter()
        .map(|b| (b.workspace_id, b.environment_id, b.repo_full_name.clone()))
        .collect();
    if !fresh.is_empty() {
        if let Some(again_seqs) = staged_again {
            upsert_deployments(tx, again_seqs).await?;
        } else if !history_copied(tx, &fresh).await? {
            stage(tx, &fresh).await?;
            upsert_deployments(tx, Vec::new()).await?;
        }
    }
    refresh_current(tx, &fresh, moved).await?;
    what_changed::refresh(tx, &fresh, &before).await?;
    Ok(Applied {
        new_events: fresh.len(),
        duplicates: again.len(),
        conflicts,
    })
}

/// Splits a batch by the ledger's answer: the first copy of each event new
/// to it is applied; every other copy is a duplicate, also returned by its
/// position in the batch (its staging `seq`).
fn split_fresh<'a>(
    events: &[&'a Located],
    new_ids: &HashSet<Uuid>,
) -> (Vec<&'a Located>, Vec<&'a Located>, Vec<i32>) {
    let mut seen = HashSet::new();
    let (mut fresh, mut again, mut again_seqs) = (Vec::new(), Vec::new(), Vec::new());
    for (seq, &l) in events.iter().enumerate() {
        if new_ids.contains(&l.event.event_id) && seen.insert(l.event.event_id) {
            fresh.push(l);
        } else {
            again.push(l);
            again_seqs.push(seq as i32);
        }
    }
    (fresh, again, again_seqs)
}

/// Writes a history row per event with one `COPY` when every event of
/// `fresh` is a deployment of its own that the history does not hold yet;
/// false (nothing written) otherwise, for the merging upsert to do it.
async fn history_copied(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
) -> Result<bool, sqlx::Error> {
    let mut ids = HashSet::with_capacity(fresh.len());
    if !fresh.iter().all(|l| ids.insert(l.event.deployment_id)) {
        return Ok(false);
    }
    // A deployment named by an external id may have had reports before; an
    // event without one is its own deployment. A collision this misses is
    // caught by the savepoint.
    let reported: Vec<Uuid> = fresh
        .iter()
        .filter(|l| l.event.external_id.is_some())
        .map(|l| l.event.deployment_id)
        .collect();
    if !reported.is_empty() {
        let known: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM deployments WHERE id = ANY($1) LIMIT 1")
                .bind(reported)
                .fetch_optional(&mut **tx)
                .await?;
        if known.is_some() {
            return Ok(false);
        }
    }
    try_copy(tx, "history", copy_history(fresh)).await
}

/// Runs one `COPY` under a savepoint. A unique violation rolls back just the
/// `COPY` and answers false; any other error fails the transaction.
async fn try_copy(
    tx: &mut Transaction<'_, Postgres>,
    name: &str,
    (sql, rows): (&str, BinaryCopy),
) -> Result<bool, sqlx::Error> {
    sqlx::raw_sql(&format!("SAVEPOINT {name}"))
        .execute(&mut **tx)
        .await?;
    let result = async {
        let mut copy = tx.copy_in_raw(sql).await?;
        copy.send(rows.finish()).await?;
        copy.finish().await
    }
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
            sqlx::raw_sql(&format!("ROLLBACK TO SAVEPOINT {name}"))
                .execute(&mut **tx)
                .await?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The ledger rows of `events` and the `COPY` statement that takes them
/// (also the benchmark's same-shape ceiling).
pub fn copy_ledger(events: &[&Located]) -> (&'static str, BinaryCopy) {
    let mut rows = BinaryCopy::new();
    for l in events {
        let e = &l.event;
        rows.row(15)
            .field(&e.event_id)
            .field(&e.deployment_id)
            .field(&e.workspace_id)
            .field(&e.environment_id)
            .field(&e.api_key_id)
            .field(&e.api_key_name.as_str())
            .field(&e.source.as_str())
            .field(&e.status.as_str())
            .field(&e.received_at)
            .raw_text(&e.encode())
            .field(&l.topic.as_str())
            .field(&l.partition)
            .field(&l.offset)
            .field(&l.fingerprint.as_deref())
            .field(&traceparent_text(l).as_deref());
    }
    (
        "COPY deployment_audit (event_id, deployment_id, workspace_id, environment_id, api_key_id,
             api_key_name, source, status, received_at, payload, kafka_topic, kafka_partition, kafka_offset,
             request_fingerprint, traceparent) FROM STDIN (FORMAT binary)",
        rows,
    )
}

/// The audit row's `traceparent`: the record's, as W3C text.
fn traceparent_text(l: &Located) -> Option<String> {
    l.traceparent.map(|t| t.to_string())
}

/// The columns a report sets on its deployment, from `workspace_id` to
/// `external_id` in table order: shared by the history rows and the staging
/// rows, so both encode them the same way.
fn deployment_fields<'r>(rows: &'r mut BinaryCopy, e: &DeploymentReported) -> &'r mut BinaryCopy {
    rows.field(&e.workspace_id)
        .field(&e.environment_id)
        .field(&e.environment.as_str())
        .field(&e.repository.as_str())
        .field(&e.branch.as_ref().map(|b| b.as_str()))
        .field(&e.commit_sha.as_ref().map(|c| c.as_str()))
        .field(&e.status.as_str())
        .field(&e.source.as_str())
        .field(&e.deployed_at)
        .field(&sqlx::types::Json(e.extra_data.as_map()))
        .field(&e.external_id.as_ref().map(|x| x.as_str()))
}

/// A first history row per event (each its own deployment) and the `COPY`
/// statement that takes them.
pub fn copy_history(events: &[&Located]) -> (&'static str, BinaryCopy) {
    let mut rows = BinaryCopy::new();
    for l in events {
        let e = &l.event;
        rows.row(17).field(&e.deployment_id);
        deployment_fields(&mut rows, e)
            .field(&e.received_at)
            .field(&e.received_at)
            .field(&e.status.rank())
            .field(&e.event_id)
            .field(&1i32);
    }
    (
        "COPY deployments (id, workspace_id, environment_id, environment, repo_full_name, branch,
             commit_sha, status, source, deployed_at, extra_data, external_id, created_at, updated_at,
             status_rank, last_event_id, reports) FROM STDIN (FORMAT binary)",
        rows,
    )
}

/// Takes a transaction-scoped lock per (workspace, environment) the batch
/// touches, in one order, before any row is written.
///
/// `current_deployments` is recomputed from `deployments` as this
/// transaction sees it. Two transactions writing one environment at once
/// (two projectors during a rebalance, a replay over the live database, a
/// consumer that lost its assignment) would each miss the other's
/// uncommitted rows, and the later commit could overwrite a newer current
/// row with a stale one. Under the lock, the last transaction to write an
/// environment sees every deployment committed before it. A deployment never
/// changes environment (its id is derived from it), so the lock covers every
/// key a batch can touch. Within one projector the writers own disjoint
/// partitions, hence disjoint environments, and never wait on each other.
/// This relies on READ COMMITTED (Postgres's default, and what the pool
/// uses): each statement after the lock sees what committed before it.
/// Under REPEATABLE READ the snapshot would predate the lock wait.
async fn lock_environments(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&Located],
) -> Result<(), sqlx::Error> {
    let keys: BTreeSet<(Uuid, Uuid)> = events
        .iter()
        .map(|l| (l.event.workspace_id, l.event.environment_id))
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let (ws, env): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
    // Volatile functions in the select list run after the sort, so the locks
    // are taken in key order and two writers cannot deadlock on them.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM (
             SELECT DISTINCT hashtextextended(w::text || ':' || e::text, 0) AS k
             FROM UNNEST($1::uuid[], $2::uuid[]) AS t(w, e)
         ) keys ORDER BY k",
    )
    .bind(ws)
    .bind(env)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Compares each event the ledger already held with the one it holds: the
/// same id with another request fingerprint is an `Idempotency-Key` reused
/// for a different report. The first stays applied; the reuse is recorded
/// (once per Kafka position, so replays add nothing) and counted.
async fn record_conflicts(
    tx: &mut Transaction<'_, Postgres>,
    again: &[&Located],
) -> Result<usize, sqlx::Error> {
    let conflicting = find_conflicts(tx, again).await?;
    if conflicting.is_empty() {
        return Ok(0);
    }
    let mut rows = ConflictRows::default();
    for (l, kept) in &conflicting {
        tracing::warn!(
            event_id = %l.event.event_id,
            topic = %l.topic,
            partition = l.partition,
            offset = l.offset,
            kept = %kept,
            rejected = l.fingerprint.as_deref().unwrap_or(""),
            "Idempotency-Key reused for a different request body: the first report stays, this one is recorded in idempotency_conflicts"
        );
        rows.push(l, kept);
    }
    rows.insert(tx).await
}

/// The events of `again` with a request fingerprint other than the one the
/// ledger holds for their id, each with the ledger's.
async fn find_conflicts<'a>(
    tx: &mut Transaction<'_, Postgres>,
    again: &[&'a Located],
) -> Result<Vec<(&'a Located, String)>, sqlx::Error> {
    let candidates: Vec<&Located> = again
        .iter()
        .copied()
        .filter(|l| l.fingerprint.is_some())
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = candidates.iter().map(|l| l.event.event_id).collect();
    let kept: HashMap<Uuid, Option<String>> = sqlx::query_as::<_, (Uuid, Option<String>)>(
        "SELECT event_id, request_fingerprint FROM deployment_audit WHERE event_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    Ok(candidates
        .into_iter()
        .filter_map(|l| {
            let kept = kept.get(&l.event.event_id)?.as_ref()?;
            (Some(kept) != l.fingerprint.as_ref()).then(|| (l, kept.clone()))
        })
        .collect())
}

/// Column arrays for `idempotency_conflicts`.
#[derive(Default)]
struct ConflictRows {
    event_id: Vec<Uuid>,
    kept: Vec<String>,
    rejected: Vec<Option<String>>,
    payload: Vec<serde_json::Value>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
}

impl ConflictRows {
    fn push(&mut self, l: &Located, kept: &str) {
        self.event_id.push(l.event.event_id);
        self.kept.push(kept.to_owned());
        self.rejected.push(l.fingerprint.clone());
        self.payload
            .push(serde_json::to_value(&l.event).expect("events serialize"));
        self.topic.push(l.topic.clone());
        self.partition.push(l.partition);
        self.offset.push(l.offset);
    }

    /// Inserts the rows; returns how many were new.
    async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> Result<usize, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_conflicts (event_id, kept_fingerprint, rejected_fingerprint,
                 rejected_payload, kafka_topic, kafka_partition, kafka_offset)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::int4[], $7::int8[])
             ON CONFLICT DO NOTHING",
        )
        .bind(self.event_id)
        .bind(self.kept)
        .bind(self.rejected)
        .bind(self.payload)
        .bind(self.topic)
        .bind(self.partition)
        .bind(self.offset)
        .execute(&mut **tx)
        .await?;
        Ok(inserted.rows_affected() as usize)
    }
}

/// The staging table's columns, in `COPY` order: one row per event of the
/// batch, `seq` its index in the batch.
const STAGED: &str = "seq, event_id, deployment_id, workspace_id, environment_id, environment, repo_full_name, \
    branch, commit_sha, status, source, deployed_at, extra_data, external_id, status_rank, received_at, \
    api_key_id, api_key_name, payload, kafka_topic, kafka_partition, kafka_offset, request_fingerprint, \
    traceparent";

/// Creates the connection's staging table on its first batch. It lives as
/// long as the session, and `ON COMMIT DELETE ROWS` empties it at each
/// commit (a rollback discards its rows too), so it never holds more than
/// one batch and costs no catalog churn per batch. Temporary tables are
/// not WAL-logged. `temp_buffers` can only be raised before a session's
/// first temporary table, so a failure to raise it (a connection that
/// staged before, in a transaction rolled back) is ignored.
const ENSURE_STAGING: &str = "DO $$ BEGIN
    IF to_regclass('pg_temp.projector_staging') IS NULL THEN
        BEGIN
            PERFORM set_config('temp_buffers', '64MB', false);
        EXCEPTION WHEN others THEN NULL;
        END;
        CREATE TEMPORARY TABLE projector_staging (
            seq integer NOT NULL,
            event_id uuid NOT NULL,
            deployment_id uuid NOT NULL,
            workspace_id uuid NOT NULL,
            environment_id uuid NOT NULL,
            environment text NOT NULL,
            repo_full_name text NOT NULL,
            branch text,
            commit_sha text,
            status text NOT NULL,
            source text NOT NULL,
            deployed_at timestamptz NOT NULL,
            extra_data jsonb NOT NULL,
            external_id text,
            status_rank smallint NOT NULL,
            received_at timestamptz NOT NULL,
            api_key_id uuid NOT NULL,
            api_key_name text NOT NULL,
            payload json NOT NULL,
            kafka_topic text NOT NULL,
            kafka_partition integer NOT NULL,
            kafka_offset bigint NOT NULL,
            request_fingerprint text,
            traceparent text
        ) ON COMMIT DELETE ROWS;
    END IF;
END $$";

/// Streams the batch into the staging table with one binary `COPY`.
async fn stage(tx: &mut Transaction<'_, Postgres>, events: &[&Located]) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(ENSURE_STAGING).execute(&mut **tx).await?;
    let mut rows = BinaryCopy::new();
    for (seq, l) in events.iter().enumerate() {
        let e = &l.event;
        rows.row(24)
            .field(&(seq as i32))
            .field(&e.event_id)
            .field(&e.deployment_id);
        deployment_fields(&mut rows, e)
            .field(&e.status.rank())
            .field(&e.received_at)
            .field(&e.api_key_id)
            .field(&e.api_key_name.as_str())
            .raw_text(&e.encode())
            .field(&l.topic.as_str())
            .field(&l.partition)
            .field(&l.offset)
            .field(&l.fingerprint.as_deref())
            .field(&traceparent_text(l).as_deref());
    }
    let mut copy = tx
        .copy_in_raw(&format!(
            "COPY projector_staging ({STAGED}) FROM STDIN (FORMAT binary)"
        ))
        .await?;
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

/// Appends the staged events to the audit ledger; returns the ids it did not
/// hold yet. Within the batch the first copy of an id wins, as it would
/// have one event at a time.
async fn insert_audit(tx: &mut Transaction<'_, Postgres>) -> Result<HashSet<Uuid>, sqlx::Error> {
    let rows: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO deployment_audit (event_id, deployment_id, workspace_id, environment_id, api_key_id,
             api_key_name, source, status, received_at, payload, kafka_topic, kafka_partition, kafka_offset,
             request_fingerprint, traceparent)
         SELECT event_id, deployment_id, workspace_id, environment_id, api_key_id, api_key_name, source,
             status, received_at, payload, kafka_topic, kafka_partition, kafka_offset, request_fingerprint,
             traceparent
         FROM projector_staging ORDER BY seq
         ON CONFLICT (event_id) DO NOTHING
         RETURNING event_id",
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
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

/// Upserts one history row per deployment of the staged events, leaving out
/// the duplicates (`again`, by `seq`). The batch is reduced first, in SQL:
/// per deployment, the winning report (status only moves forward, then the
/// later `deployed_at`, then the later receipt, then the event id as a
/// deterministic tie-break), the first receipt and the count. The same order
/// decides against the stored row, so the result does not depend on how
/// reports were split into batches.
async fn upsert_deployments(
    tx: &mut Transaction<'_, Postgres>,
    again: Vec<i32>,
) -> Result<(), sqlx::Error> {
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
         SELECT DISTINCT ON (deployment_id) deployment_id, workspace_id, environment_id, environment,
             repo_full_name, branch, commit_sha, status, source, deployed_at, extra_data, external_id,
             first_received, received_at, status_rank, event_id, reports
         FROM (
             SELECT s.*, min(received_at) OVER w AS first_received, (count(*) OVER w)::integer AS reports
             FROM projector_staging s
             WHERE NOT (seq = ANY($1))
             WINDOW w AS (PARTITION BY deployment_id)
         ) s
         ORDER BY deployment_id, status_rank DESC, deployed_at DESC, received_at DESC, event_id DESC
         ON CONFLICT (id) DO UPDATE SET
             {},
             created_at = LEAST(d.created_at, excluded.created_at),
             reports = d.reports + excluded.reports,
             projected_at = now()",
        replaced.join(",\n             ")
    );
    sqlx::query(&sql).bind(again).execute(&mut **tx).await?;
    Ok(())
}

/// Recomputes `current_deployments` for every (workspace, environment,
/// repository) the batch touched, from `deployments` itself: the latest
/// success by (deployed_at, id). A late, older success therefore never
/// replaces a newer one, and the result does not depend on arrival order.
/// The keys are those the batch added deployments to and those it took
/// deployments away from (`moved`).
async fn refresh_current(
    tx: &mut Transaction<'_, Postgres>,
    fresh: &[&Located],
    moved: Vec<CurrentKey>,
) -> Result<(), sqlx::Error> {
    let keys: HashSet<CurrentKey> = fresh
        .iter()
        .map(|l| {
            (
                l.event.workspace_id,
                l.event.environment_id,
                l.event.repository.to_string(),
            )
        })
        .chain(moved)
        .collect();
    if keys.is_empty() {
        return Ok(());
    }
    let mut columns = KeyColumns::default();
    for key in keys {
        columns.push(key);
    }
    sqlx::query(REFRESH_CURRENT)
        .bind(columns.workspace)
        .bind(columns.environment)
        .bind(columns.repository)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Column arrays of `CurrentKey`s, for `UNNEST`.
#[derive(Default)]
struct KeyColumns {
    workspace: Vec<Uuid>,
    environment: Vec<Uuid>,
    repository: Vec<String>,
}

impl KeyColumns {
    fn push(&mut self, (workspace, environment, repository): CurrentKey) {
        self.workspace.push(workspace);
        self.environment.push(environment);
        self.repository.push(repository);
    }
}

/// Per (workspace, environment, repository) of `$1`, `$2`, `$3`: the latest
/// success becomes the current row, or the row goes when there is none.
/// A row that would not change is not rewritten.
const REFRESH_CURRENT: &str = "WITH keys AS (
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
           IS DISTINCT FROM (excluded.deployment_id, excluded.commit_sha, excluded.branch, excluded.deployed_at)";

/// Whether Postgres refused a write because of the data itself, so that
/// retrying the same rows can never succeed: a data exception (class 22,
/// e.g. a NUL in text or a value out of range), an integrity violation
/// (23), a value over a limit (54), or a value the driver cannot encode.
/// Anything else (connections, deadlocks, a server restarting) is worth
/// retrying.
pub fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// Finds the events of a batch that Postgres refuses on their own, by
/// bisection: each probe writes a part of the batch in a transaction that is
/// always rolled back, and a part that fails is halved until single events
/// remain. Returns their indexes with Postgres's reason. A transient error
/// ends the search with that error, for the caller to retry.
///
/// This is exact because the writes are order-independent: applying a batch
/// in parts gives the same rows as applying it whole.
pub async fn find_rejected(
    pool: &PgPool,
    events: &[Located],
) -> Result<Vec<(usize, String)>, sqlx::Error> {
    let mut rejected = Vec::new();
    // A stack of parts still to probe, the whole batch first.
    #[allow(clippy::single_range_in_vec_init)]
    let mut parts = vec![0..events.len()];
    while let Some(part) = parts.pop() {
        if part.is_empty() {
            continue;
        }
        let slice: Vec<&Located> = events[part.clone()].iter().collect();
        let mut tx = pool.begin().await?;
        let result = apply(&mut tx, &slice).await;
        tx.rollback().await?;
        match result {
            Ok(_) => {}
            Err(e) if !is_permanent(&e) => return Err(e),
            Err(e) if part.len() == 1 => rejected.push((part.start, e.to_string())),
            Err(_) => {
                let mid = part.start + part.len() / 2;
                parts.push(mid..part.end);
                parts.push(part.start..mid);
            }
        }
    }
    rejected.sort_unstable();
    Ok(rejected)
}
