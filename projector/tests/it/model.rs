//! The read model checked against a model of it: proptest generates random
//! histories (duplicates, out-of-order and regressing reports, deployments
//! that move between repositories, reused idempotency keys), the real
//! projector binary projects them from real Kafka into real Postgres with
//! random batch sizes and writer counts and is SIGKILLed at a random point,
//! and the tables must equal what a few lines of obviously right code say.
//! Reports deploy commits from a small pool (so rollbacks are common) and
//! some list commits, so the lineage and the first-shipped commits are
//! checked too, against `what_changed_model`'s model of them.
//!
//! The suite runs a few cases; run many more with
//! `VIBEMON_MODEL_CASES=200 cargo test -p vibemon-projector --test it model::`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use uuid::Uuid;
use vibemon_schemas::event::{external_deployment_id, idempotent_event_id};
use vibemon_schemas::{DeploymentReported, DeploymentStatus, ExternalId};
use vibemon_testkit::events::publish_fingerprinted;
use vibemon_testkit::{TestDb, TestTopic};

use crate::helpers::*;
use crate::what_changed_model::{
    actual_lineage, actual_shipped, lineage_and_shipped, listed_commits, LineageRow, ShippedRow,
};

const REPOS: [&str; 2] = ["acme/api", "acme/web"];

/// How a report names its deployment.
#[derive(Debug, Clone)]
enum Identity {
    /// No external id: every report is its own deployment.
    Own,
    /// An external id; `legacy` derives the deployment id the way events
    /// written before the repository joined the identity did, so one
    /// deployment can move between repositories.
    External { ext: u8, legacy: bool },
    /// An `Idempotency-Key`, with the body variant it was sent with: the same
    /// key and variant is a retry, another variant a reuse of the key.
    Keyed { key: u8, variant: u8 },
}

#[derive(Debug, Clone)]
struct Op {
    env: usize,
    repo: usize,
    identity: Identity,
    status: usize,
    minute: i64,
    /// Published twice, as a producer retry or a redelivery would.
    redeliver: bool,
    /// The deployed commit: one of three, or none.
    sha: Option<u8>,
    /// (commit `1` to `4`, minutes before the base) of each listed commit.
    commits: Vec<(u8, i64)>,
}

/// How the projector runs the history.
#[derive(Debug, Clone)]
struct Run {
    partitions: i32,
    batch_max: usize,
    writers: u16,
    /// Kill the first projector once the audit holds this share (in
    /// percent) of the applied events; 0 kills it at once.
    kill_at_percent: u8,
    batch_max_after: usize,
    writers_after: u16,
}

fn op() -> impl Strategy<Value = Op> {
    let identity = prop_oneof![
        2 => Just(Identity::Own),
        4 => (0u8..2, any::<bool>()).prop_map(|(ext, legacy)| Identity::External { ext, legacy }),
        2 => (0u8..3, 0u8..2).prop_map(|(key, variant)| Identity::Keyed { key, variant }),
    ];
    // Half the reports are successes, so current state has much to track.
    let status = prop_oneof![1 => Just(2usize), 1 => 0usize..5];
    let sha = prop_oneof![1 => Just(None), 5 => (0u8..3).prop_map(Some)];
    let listed = prop::collection::btree_map(0u8..4, 0i64..3, 1..3)
        .prop_map(|m| m.into_iter().collect::<Vec<_>>());
    let commits = prop_oneof![2 => Just(Vec::new()), 1 => listed];
    (
        (0usize..2, 0usize..REPOS.len(), identity, status),
        (0i64..30, prop::bool::weighted(0.15), sha, commits),
    )
        .prop_map(
            |((env, repo, identity, status), (minute, redeliver, sha, commits))| Op {
                env,
                repo,
                identity,
                status,
                minute,
                redeliver,
                sha,
                commits,
            },
        )
}

fn run() -> impl Strategy<Value = Run> {
    // Tiny batches half the time: most bugs of a projector live at batch
    // boundaries.
    let batch = || prop_oneof![1usize..=3, 1usize..=50];
    (1i32..=3, batch(), 1u16..=3, 0u8..=100, batch(), 1u16..=3).prop_map(
        |(partitions, batch_max, writers, kill_at_percent, batch_max_after, writers_after)| Run {
            partitions,
            batch_max,
            writers,
            kill_at_percent,
            batch_max_after,
            writers_after,
        },
    )
}

/// One published record: the event and the fingerprint header it carried.
#[derive(Debug, Clone)]
struct Published {
    event: DeploymentReported,
    fingerprint: Option<String>,
}

fn build(ops: &[Op]) -> Vec<Published> {
    let workspace = World::new();
    let worlds: Vec<World> = (0..2)
        .map(|_| World {
            environment_id: Uuid::now_v7(),
            ..workspace
        })
        .collect();
    let base = at("2024-01-15T10:00:00Z");
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let world = &worlds[op.env];
        let mut e = world.report(REPOS[op.repo], base + chrono::Duration::minutes(op.minute));
        e.status = DeploymentStatus::ALL[op.status];
        // Reports arrive in list order, a second apart.
        e.received_at = base + chrono::Duration::seconds(3600 + i as i64);
        e.commit_sha = op.sha.map(|s| {
            vibemon_schemas::CommitSha::parse(["a", "b", "c"][s as usize].repeat(40)).unwrap()
        });
        e.commits = op
            .commits
            .iter()
            .map(|&(c, minutes)| vibemon_schemas::Commit {
                sha: vibemon_schemas::CommitSha::parse((c + 1).to_string().repeat(40)).unwrap(),
                committed_at: base - chrono::Duration::minutes(minutes),
                authored_at: None,
                author: None,
                subject: None,
            })
            .collect();
        if !e.commits.is_empty() {
            e.schema_version = vibemon_schemas::LATEST_SCHEMA_VERSION;
        }
        let mut fingerprint = None;
        match &op.identity {
            Identity::Own => {}
            Identity::External { ext, legacy } => {
                let ext_id = ExternalId::parse(format!("run-{ext}")).unwrap();
                e.deployment_id = if *legacy {
                    Uuid::new_v5(
                        &Uuid::NAMESPACE_OID,
                        format!(
                            "legacy:{}:{}:{ext_id}",
                            world.workspace_id, world.environment_id
                        )
                        .as_bytes(),
                    )
                } else {
                    external_deployment_id(
                        world.workspace_id,
                        world.environment_id,
                        &e.repository,
                        &ext_id,
                    )
                };
                e.external_id = Some(ext_id);
            }
            Identity::Keyed { key, variant } => {
                // Keys are per environment, so all reports under one key
                // share a partition and "the first" is the topic's order.
                let key = format!("env{}-key{key}", op.env);
                e.event_id = idempotent_event_id(world.workspace_id, &key);
                e.deployment_id = e.event_id;
                fingerprint = Some(format!("sha256:variant-{variant}"));
            }
        }
        let published = Published {
            event: e,
            fingerprint,
        };
        if op.redeliver {
            out.push(published.clone());
        }
        out.push(published);
    }
    out
}

/// What the tables must hold, computed from the records in topic order.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    audit: BTreeSet<Uuid>,
    deployments: BTreeSet<DeploymentRow>,
    current: BTreeSet<(Uuid, String, Uuid)>,
    conflicts: BTreeSet<(Uuid, String, String)>,
    lineage: BTreeSet<LineageRow>,
    shipped: BTreeSet<ShippedRow>,
}

/// id, repository, status, deployed_at, created_at, updated_at, reports, last event.
type DeploymentRow = (
    Uuid,
    String,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    i32,
    Uuid,
);

fn model(records: &[Published]) -> Expected {
    // The ledger: the first record of each event id is applied; a later one
    // with another fingerprint is a conflict.
    let mut kept: HashMap<Uuid, Option<String>> = HashMap::new();
    let mut applied = Vec::new();
    let mut conflicts = BTreeSet::new();
    for r in records {
        match kept.get(&r.event.event_id) {
            None => {
                kept.insert(r.event.event_id, r.fingerprint.clone());
                applied.push(&r.event);
            }
            Some(first) => {
                if let (Some(first), Some(now)) = (first, &r.fingerprint) {
                    if first != now {
                        conflicts.insert((r.event.event_id, first.clone(), now.clone()));
                    }
                }
            }
        }
    }
    // History: per deployment, the greatest report wins.
    let mut by_deployment: BTreeMap<Uuid, Vec<&DeploymentReported>> = BTreeMap::new();
    for e in &applied {
        by_deployment.entry(e.deployment_id).or_default().push(e);
    }
    let mut deployments = BTreeSet::new();
    let mut rows = Vec::new();
    for (id, reports) in &by_deployment {
        let w = reports
            .iter()
            .max_by_key(|e| (e.status.rank(), e.deployed_at, e.received_at, e.event_id))
            .unwrap();
        let created = reports.iter().map(|e| e.received_at).min().unwrap();
        deployments.insert((
            *id,
            w.repository.to_string(),
            w.status.as_str().to_owned(),
            w.deployed_at,
            created,
            w.received_at,
            reports.len() as i32,
            w.event_id,
        ));
        rows.push(*w);
    }
    let (lineage, shipped) = lineage_and_shipped(&rows, &listed_commits(&applied));
    // Current state: per (environment, repository), the newest success.
    let mut current: BTreeMap<(Uuid, String), (DateTime<Utc>, Uuid)> = BTreeMap::new();
    for w in rows {
        if w.status != DeploymentStatus::Success {
            continue;
        }
        let slot = current
            .entry((w.environment_id, w.repository.to_string()))
            .or_insert((w.deployed_at, w.deployment_id));
        *slot = (*slot).max((w.deployed_at, w.deployment_id));
    }
    Expected {
        audit: kept.keys().copied().collect(),
        deployments,
        current: current
            .into_iter()
            .map(|((env, repo), (_, id))| (env, repo, id))
            .collect(),
        conflicts,
        lineage,
        shipped,
    }
}

async fn actual(pool: &sqlx::PgPool) -> Expected {
    let audit: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM deployment_audit")
        .fetch_all(pool)
        .await
        .unwrap();
    let deployments: Vec<DeploymentRow> = sqlx::query_as(
        "SELECT id, repo_full_name, status, deployed_at, created_at, updated_at, reports, last_event_id
         FROM deployments",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let current: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
        "SELECT environment_id, repo_full_name, deployment_id FROM current_deployments",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let conflicts: Vec<(Uuid, String, String)> = sqlx::query_as(
        "SELECT event_id, kept_fingerprint, rejected_fingerprint FROM idempotency_conflicts",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let audit_len = audit.len();
    let expected = Expected {
        audit: audit.into_iter().collect(),
        deployments: deployments.into_iter().collect(),
        current: current.into_iter().collect(),
        conflicts: conflicts.into_iter().collect(),
        lineage: actual_lineage(pool).await,
        shipped: actual_shipped(pool).await,
    };
    assert_eq!(
        audit_len,
        expected.audit.len(),
        "an event id twice in the audit"
    );
    expected
}

fn projector(
    db: &TestDb,
    topic: &TestTopic,
    group: &str,
    batch_max: usize,
    writers: u16,
) -> Command {
    let mut cmd = projector_command(&db.url, topic, group);
    cmd.env("PROJECTOR_BATCH_MAX", batch_max.to_string())
        .env("PROJECTOR_BATCH_LINGER_MS", "5")
        .env("PROJECTOR_WRITERS", writers.to_string());
    cmd
}

async fn check(ops: Vec<Op>, run: Run) -> Result<(), TestCaseError> {
    let (db, topic) = (TestDb::new().await, TestTopic::new(run.partitions).await);
    let records = build(&ops);
    let expected = model(&records);
    let p = producer(&topic.brokers);
    for r in &records {
        match &r.fingerprint {
            Some(f) => publish_fingerprinted(&p, &topic.name, &r.event, f).await,
            None => publish(&p, &topic.name, std::slice::from_ref(&r.event)).await,
        }
    }
    let group = group();

    // A first projector, SIGKILLed once it applied part of the history.
    let mut first = projector(&db, &topic, &group, run.batch_max, run.writers)
        .spawn()
        .expect("start the projector binary");
    let target = expected.audit.len() as i64 * i64::from(run.kill_at_percent) / 100;
    vibemon_testkit::eventually(Duration::from_secs(20), || async {
        (count(&db.pool, "deployment_audit").await >= target).then_some(())
    })
    .await;
    first.kill().expect("SIGKILL");
    first.wait().unwrap();

    // A second one, with other batch settings, reads to the end.
    let status = projector(&db, &topic, &group, run.batch_max_after, run.writers_after)
        .env("PROJECTOR_UNTIL_CAUGHT_UP", "true")
        .status()
        .expect("run the projector binary");
    prop_assert!(status.success(), "the second projector failed: {status}");

    let got = actual(&db.pool).await;
    prop_assert_eq!(&got.audit, &expected.audit);
    prop_assert_eq!(&got.conflicts, &expected.conflicts);
    prop_assert_eq!(&got.deployments, &expected.deployments);
    prop_assert_eq!(&got.current, &expected.current);
    prop_assert_eq!(&got.lineage, &expected.lineage);
    prop_assert_eq!(&got.shipped, &expected.shipped);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("VIBEMON_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Each case runs Kafka, Postgres and two processes: shrink a little.
        max_shrink_iters: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_projected_tables_equal_the_model_whatever_the_history_batching_and_kill_point(
        ops in prop::collection::vec(op(), 1..20),
        run in run(),
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(check(ops, run))?;
    }
}
