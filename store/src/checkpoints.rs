//! The projector's progress, and the digest that compares two read models.
//!
//! `projector_checkpoints` holds, per (consumer group, topic, partition), the
//! next offset to read and the digest of the record before it. The projector
//! saves it in the same transaction as the rows those records produced;
//! `vibemon replay` seeds it (`--since`), forgets it (`--restart`) and reads it
//! to show progress. This module is the only code that touches the table.
//!
//! [`digest`] summarises the projected tables: a rebuild from the topic must
//! give the digest of the live database.

use std::collections::{BTreeMap, HashMap};

use sqlx::{PgConnection, PgPool};

/// Where a partition stands after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The next offset to read: every record below it is applied or
    /// dead-lettered.
    pub next: i64,
    /// `content_digest` of the value of the record at `next - 1`. A later
    /// assignment reads that record back: if it differs, the topic is not the
    /// one this database was projected from.
    pub last_record: Option<String>,
}

impl Position {
    /// A position without a record to check it by (seeded by time, or in tests).
    pub fn at(next: i64) -> Self {
        Self {
            next,
            last_record: None,
        }
    }
}

/// The stored position per partition of `topic` for `group`.
pub async fn load(
    pool: &PgPool,
    group: &str,
    topic: &str,
) -> Result<HashMap<i32, Position>, sqlx::Error> {
    let rows: Vec<(i32, i64, Option<String>)> = sqlx::query_as(
        "SELECT partition, next_offset, last_record_sha256 FROM projector_checkpoints
         WHERE consumer_group = $1 AND topic = $2",
    )
    .bind(group)
    .bind(topic)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(p, next, last_record)| (p, Position { next, last_record }))
        .collect())
}

/// Saves the next offset per (topic, partition), in the caller's
/// transaction. A checkpoint never moves backwards: a zombie writer that lost
/// its partitions, or a batch retried after another instance moved on,
/// cannot make the group re-read what it applied.
pub async fn save(
    conn: &mut PgConnection,
    group: &str,
    positions: &BTreeMap<(String, i32), Position>,
) -> Result<(), sqlx::Error> {
    if positions.is_empty() {
        return Ok(());
    }
    let (mut topics, mut partitions, mut offsets, mut last) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((t, p), position) in positions {
        topics.push(t.as_str());
        partitions.push(*p);
        offsets.push(position.next);
        last.push(position.last_record.as_deref());
    }
    sqlx::query(
        "INSERT INTO projector_checkpoints (consumer_group, topic, partition, next_offset, last_record_sha256)
         SELECT $1, * FROM UNNEST($2::text[], $3::int4[], $4::int8[], $5::text[])
         ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET
             next_offset = GREATEST(projector_checkpoints.next_offset, excluded.next_offset),
             last_record_sha256 = CASE WHEN excluded.next_offset >= projector_checkpoints.next_offset
                 THEN excluded.last_record_sha256 ELSE projector_checkpoints.last_record_sha256 END,
             updated_at = now()",
    )
    .bind(group)
    .bind(topics)
    .bind(partitions)
    .bind(offsets)
    .bind(last)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets every checkpoint of `group` (a replay started over).
pub async fn forget(pool: &PgPool, group: &str) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM projector_checkpoints WHERE consumer_group = $1")
        .bind(group)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// A digest of the projected tables, projection timestamps left out: two
/// databases with the same digest hold the same read model. Used to check
/// that a rebuild from the topic reproduces the live tables. Audit payloads
/// are compared as `jsonb`, so rows stored as `jsonb` text before the ledger
/// kept JSON text compare equal to the same events written since.
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
                       status, received_at, payload::jsonb, kafka_topic, kafka_partition, kafka_offset,
                       request_fingerprint, traceparent
                FROM deployment_audit) t)
            || '#' ||
            (SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM (
                SELECT event_id, kept_fingerprint, rejected_fingerprint, rejected_payload, kafka_topic,
                       kafka_partition, kafka_offset
                FROM idempotency_conflicts) t)
            || '#' ||
            (SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM (
                SELECT workspace_id, environment_id, repo_full_name, deployment_id, commit_sha, branch, deployed_at
                FROM current_deployments) t)
            || '#' ||
            (SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM (
                SELECT deployment_id, sha, committed_at, authored_at, author, subject, event_id
                FROM deployment_commits) t)
            || '#' ||
            (SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM (
                SELECT deployment_id, workspace_id, environment_id, repo_full_name, deployed_at, commit_sha,
                       predecessor_id, predecessor_commit_sha, rollback_to, rolled_back_by
                FROM deployment_lineage) t)
            || '#' ||
            (SELECT coalesce(string_agg(t::text, '|' ORDER BY t::text), '') FROM (
                SELECT workspace_id, environment_id, repo_full_name, sha, deployment_id, deployed_at, committed_at
                FROM shipped_commits) t))",
    )
    .fetch_one(pool)
    .await
}
