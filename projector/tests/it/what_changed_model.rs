//! The "what changed" tables (`deployment_commits`, `deployment_lineage`,
//! `shipped_commits`) and `deployments`, checked against a naive model, with
//! no Kafka: proptest generates small histories where rollbacks (A, B, A),
//! ties in `deployed_at`, late and regressing reports, duplicates and
//! deployments that move between repositories are common, and
//! `writer::write_batch` applies them into two fresh databases, each in a
//! random order split into random batches. Each database must equal the
//! model of the events it applied, whatever the order and the split.
//!
//! The suite runs 64 cases; run more with
//! `VIBEMON_WHAT_CHANGED_CASES=1000 cargo test -p vibemon-projector --test it what_changed_model::`.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use sqlx::PgPool;
use uuid::Uuid;
use vibemon_projector::batch::Located;
use vibemon_projector::writer::write_batch;
use vibemon_schemas::commit::Commit;
use vibemon_schemas::{
    CommitSha, CommitSubject, DeploymentReported, DeploymentStatus, ExternalId,
    LATEST_SCHEMA_VERSION,
};
use vibemon_testkit::TestDb;

use crate::helpers::{at, World};

const REPOS: [&str; 2] = ["acme/api", "acme/web"];

/// The commit a deployment reports (`commit_sha`): few, so a commit is often
/// deployed again (a redeploy, or a rollback when another came between).
const DEPLOYED: [char; 3] = ['a', 'b', 'c'];

/// The commits a report may list: `1` to `6`.
const LISTED: usize = 6;

/// How a report names its deployment.
#[derive(Debug, Clone)]
enum Identity {
    /// No external id: every report is its own deployment.
    Own,
    /// An external id; `legacy` names the deployment without its repository,
    /// as events written before the repository joined the identity did, so
    /// its reports can move it between repositories.
    External { ext: u8, legacy: bool },
    /// An `Idempotency-Key` (its event id is derived from the key): a second
    /// report under one key is a duplicate however it differs.
    Keyed { key: u8 },
}

/// One report.
#[derive(Debug, Clone)]
struct Op {
    env: usize,
    repo: usize,
    identity: Identity,
    status: DeploymentStatus,
    minute: i64,
    /// Seconds after the base hour: small, so receipts tie too.
    received: i64,
    /// An index into `DEPLOYED`, or no commit.
    sha: Option<usize>,
    /// (index into the listed commits, minutes before the base, subject
    /// variant) of each listed commit.
    commits: Vec<(usize, i64, u8)>,
    /// High bits of the event id, so ids do not follow the list order.
    id_bits: u8,
    /// Also applied a second time, as a redelivery would.
    redeliver: bool,
}

fn status() -> impl Strategy<Value = DeploymentStatus> {
    prop_oneof![
        6 => Just(DeploymentStatus::Success),
        2 => Just(DeploymentStatus::Failed),
        1 => Just(DeploymentStatus::InProgress),
        1 => Just(DeploymentStatus::Pending),
        1 => Just(DeploymentStatus::Cancelled),
    ]
}

fn commits() -> impl Strategy<Value = Vec<(usize, i64, u8)>> {
    let list = prop::collection::btree_map(0..LISTED, (0i64..3, 0u8..2), 1..4)
        .prop_map(|m| m.into_iter().map(|(i, (m, s))| (i, m, s)).collect());
    prop_oneof![1 => Just(Vec::new()), 1 => list]
}

fn op(envs: usize, repos: usize) -> impl Strategy<Value = Op> {
    let identity = prop_oneof![
        4 => Just(Identity::Own),
        4 => (0u8..4, any::<bool>()).prop_map(|(ext, legacy)| Identity::External { ext, legacy }),
        1 => (0u8..2).prop_map(|key| Identity::Keyed { key }),
    ];
    let sha = prop_oneof![1 => Just(None), 8 => (0..DEPLOYED.len()).prop_map(Some)];
    (
        (0..envs, 0..repos, identity, status()),
        (0i64..6, 0i64..4, sha, commits()),
        (any::<u8>(), prop::bool::weighted(0.15)),
    )
        .prop_map(
            |(
                (env, repo, identity, status),
                (minute, received, sha, commits),
                (id_bits, redeliver),
            )| Op {
                env,
                repo,
                identity,
                status,
                minute,
                received,
                sha,
                commits,
                id_bits,
                redeliver,
            },
        )
}

/// An order to apply the events in and the batch sizes to split it into.
#[derive(Debug, Clone)]
struct Plan {
    order: Vec<usize>,
    batches: Vec<usize>,
}

fn plan(n: usize) -> impl Strategy<Value = Plan> {
    let sizes = prop_oneof![1usize..=2, 1usize..=6, Just(n.max(1))];
    (
        Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
        prop::collection::vec(sizes, n.max(1)),
    )
        .prop_map(|(order, batches)| Plan { order, batches })
}

fn history() -> impl Strategy<Value = (Vec<Op>, Plan, Plan)> {
    (1usize..=2, 1usize..=2)
        .prop_flat_map(|(envs, repos)| prop::collection::vec(op(envs, repos), 1..32))
        .prop_flat_map(|ops| {
            let n = ops.len() + ops.iter().filter(|o| o.redeliver).count();
            (Just(ops), plan(n), plan(n))
        })
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn deployed_sha(i: usize) -> CommitSha {
    CommitSha::parse(DEPLOYED[i].to_string().repeat(40)).unwrap()
}

fn listed_sha(i: usize) -> CommitSha {
    CommitSha::parse(format!("{}", i + 1).repeat(40)).unwrap()
}

/// The events of `ops`, redeliveries included, with small readable ids:
/// workspace `…a`, environments `…e0`/`…e1`, deployments `…d…`.
fn build(ops: &[Op]) -> Vec<DeploymentReported> {
    let world = World {
        workspace_id: id(0xa),
        environment_id: id(0xe0),
        key_id: id(0xf),
    };
    let base = at("2024-01-15T10:00:00Z");
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let world = World {
            environment_id: id(0xe0 + op.env as u128),
            ..world
        };
        let mut e = world.report(REPOS[op.repo], base + Duration::minutes(op.minute));
        e.event_id = id((u128::from(op.id_bits) << 16) | i as u128);
        e.deployment_id = e.event_id;
        e.status = op.status;
        e.received_at = base + Duration::hours(1) + Duration::seconds(op.received);
        e.commit_sha = op.sha.map(deployed_sha);
        match op.identity {
            Identity::Own => {}
            Identity::External { ext, legacy } => {
                e.external_id = Some(ExternalId::parse(format!("run-{ext}")).unwrap());
                let repo = if legacy { 0xf } else { op.repo as u128 };
                e.deployment_id =
                    id(0xd0000 | (op.env as u128) << 12 | repo << 8 | u128::from(ext));
            }
            Identity::Keyed { key } => {
                e.event_id = id(0x70000 | (op.env as u128) << 8 | u128::from(key));
                e.deployment_id = e.event_id;
            }
        }
        e.commits = op
            .commits
            .iter()
            .map(|&(c, minutes, subject)| Commit {
                sha: listed_sha(c),
                committed_at: base - Duration::minutes(minutes),
                authored_at: (subject == 1).then(|| base - Duration::hours(1)),
                author: None,
                subject: Some(
                    CommitSubject::parse(format!("report {i} variant {subject}")).unwrap(),
                ),
            })
            .collect();
        if !e.commits.is_empty() {
            e.schema_version = LATEST_SCHEMA_VERSION;
        }
        if op.redeliver {
            out.push(e.clone());
        }
        out.push(e);
    }
    out
}

/// What the tables must hold (or hold): each a sorted set of plain rows.
#[derive(Debug, PartialEq, Eq)]
struct Tables {
    deployments: BTreeSet<DeploymentRow>,
    commits: BTreeSet<CommitRow>,
    lineage: BTreeSet<LineageRow>,
    shipped: BTreeSet<ShippedRow>,
}

/// id, repository, status, deployed_at, commit_sha, reports, last event.
type DeploymentRow = (
    Uuid,
    String,
    String,
    DateTime<Utc>,
    Option<String>,
    i32,
    Uuid,
);
/// deployment, sha, committed_at, authored_at, subject, event.
type CommitRow = (
    Uuid,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Uuid,
);
/// deployment, environment, repository, deployed_at, commit_sha,
/// predecessor, predecessor's commit, rollback_to, rolled_back_by.
pub type LineageRow = (
    Uuid,
    Uuid,
    String,
    DateTime<Utc>,
    Option<String>,
    Option<Uuid>,
    Option<String>,
    Option<Uuid>,
    Option<Uuid>,
);
/// environment, repository, sha, deployment, deployed_at, committed_at.
pub type ShippedRow = (Uuid, String, String, Uuid, DateTime<Utc>, DateTime<Utc>);

/// The model, from the events in the order they were applied: the first
/// copy of each event id counts, every later one is a duplicate.
fn model(in_order: &[&DeploymentReported]) -> Tables {
    let mut seen = HashSet::new();
    let applied: Vec<&DeploymentReported> = in_order
        .iter()
        .copied()
        .filter(|e| seen.insert(e.event_id))
        .collect();

    // deployments: the greatest report of each.
    let mut by_deployment: BTreeMap<Uuid, Vec<&DeploymentReported>> = BTreeMap::new();
    for e in &applied {
        by_deployment.entry(e.deployment_id).or_default().push(e);
    }
    let finals: Vec<&DeploymentReported> = by_deployment
        .values()
        .map(|reports| {
            *reports
                .iter()
                .max_by_key(|e| (e.status.rank(), e.deployed_at, e.received_at, e.event_id))
                .unwrap()
        })
        .collect();
    let deployments = finals
        .iter()
        .map(|w| {
            (
                w.deployment_id,
                w.repository.to_string(),
                w.status.as_str().to_owned(),
                w.deployed_at,
                w.commit_sha.as_ref().map(|s| s.to_string()),
                by_deployment[&w.deployment_id].len() as i32,
                w.event_id,
            )
        })
        .collect();

    let listed = listed_commits(&applied);
    let commits = listed
        .iter()
        .map(|((d, sha), (event, c))| {
            (
                *d,
                sha.clone(),
                c.committed_at,
                c.authored_at,
                c.subject.as_ref().map(|s| s.to_string()),
                *event,
            )
        })
        .collect();
    let (lineage, shipped) = lineage_and_shipped(&finals, &listed);
    Tables {
        deployments,
        commits,
        lineage,
        shipped,
    }
}

/// Per (deployment, sha) listed by an applied report: the greatest event
/// id listing it and the commit as that report gave it.
pub type Listed<'e> = BTreeMap<(Uuid, String), (Uuid, &'e Commit)>;

/// `deployment_commits` from the applied reports (each event id once).
pub fn listed_commits<'e>(applied: &[&'e DeploymentReported]) -> Listed<'e> {
    let mut listed: Listed = BTreeMap::new();
    for e in applied {
        for c in &e.commits {
            let key = (e.deployment_id, c.sha.to_string());
            if listed.get(&key).is_none_or(|(best, _)| e.event_id > *best) {
                listed.insert(key, (e.event_id, c));
            }
        }
    }
    listed
}

/// `deployment_lineage` and `shipped_commits` from each deployment's
/// winning report (`finals`) and the commits listed, the obvious way: sort
/// each key's successes, then scan.
pub fn lineage_and_shipped(
    finals: &[&DeploymentReported],
    listed: &Listed,
) -> (BTreeSet<LineageRow>, BTreeSet<ShippedRow>) {
    // The successes of each (environment, repository), in order.
    let mut keys: BTreeMap<(Uuid, String), Vec<&DeploymentReported>> = BTreeMap::new();
    for w in finals {
        if w.status == DeploymentStatus::Success {
            keys.entry((w.environment_id, w.repository.to_string()))
                .or_default()
                .push(w);
        }
    }
    for successes in keys.values_mut() {
        successes.sort_by_key(|w| (w.deployed_at, w.deployment_id));
    }

    let mut lineage = BTreeSet::new();
    for successes in keys.values() {
        let sha = |i: usize| successes[i].commit_sha.as_ref().map(|s| s.to_string());
        let anchor = |i: usize| -> Option<usize> {
            let s = sha(i)?;
            (0..i)
                .rev()
                .find(|&j| sha(j).as_deref() == Some(s.as_str()))
        };
        // The latest earlier success whose commit is known: a deployment
        // of unknown commit neither differs from nor matches anything.
        let known_before = |i: usize| (0..i).rev().find(|&j| sha(j).is_some());
        let rollback_to: Vec<Option<usize>> = (0..successes.len())
            .map(|i| anchor(i).filter(|&a| Some(a) != known_before(i)))
            .collect();
        for (i, w) in successes.iter().enumerate() {
            let rolled_back_by =
                (i + 1..successes.len()).find(|&r| rollback_to[r].is_some_and(|a| a < i));
            lineage.insert((
                w.deployment_id,
                w.environment_id,
                w.repository.to_string(),
                w.deployed_at,
                sha(i),
                i.checked_sub(1).map(|p| successes[p].deployment_id),
                i.checked_sub(1).and_then(sha),
                rollback_to[i].map(|a| successes[a].deployment_id),
                rolled_back_by.map(|r| successes[r].deployment_id),
            ));
        }
    }

    // shipped_commits: per key and sha, the first success listing it.
    let mut shipped = BTreeSet::new();
    for ((env, repo), successes) in &keys {
        let mut first = BTreeSet::new();
        for w in successes {
            for ((d, sha), (_, c)) in listed.range((w.deployment_id, String::new())..) {
                if *d != w.deployment_id {
                    break;
                }
                if first.insert(sha.clone()) {
                    shipped.insert((
                        *env,
                        repo.clone(),
                        sha.clone(),
                        w.deployment_id,
                        w.deployed_at,
                        c.committed_at,
                    ));
                }
            }
        }
    }
    (lineage, shipped)
}

/// What `deployment_lineage` holds.
pub async fn actual_lineage(pool: &PgPool) -> BTreeSet<LineageRow> {
    let rows: Vec<LineageRow> = sqlx::query_as(
        "SELECT deployment_id, environment_id, repo_full_name, deployed_at, commit_sha,
             predecessor_id, predecessor_commit_sha, rollback_to, rolled_back_by
         FROM deployment_lineage",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// What `shipped_commits` holds.
pub async fn actual_shipped(pool: &PgPool) -> BTreeSet<ShippedRow> {
    let rows: Vec<ShippedRow> = sqlx::query_as(
        "SELECT environment_id, repo_full_name, sha, deployment_id, deployed_at, committed_at
         FROM shipped_commits",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

async fn actual(pool: &PgPool) -> Tables {
    let deployments: Vec<DeploymentRow> = sqlx::query_as(
        "SELECT id, repo_full_name, status, deployed_at, commit_sha, reports, last_event_id
         FROM deployments",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let commits: Vec<CommitRow> = sqlx::query_as(
        "SELECT deployment_id, sha, committed_at, authored_at, subject, event_id
         FROM deployment_commits",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    Tables {
        deployments: deployments.into_iter().collect(),
        commits: commits.into_iter().collect(),
        lineage: actual_lineage(pool).await,
        shipped: actual_shipped(pool).await,
    }
}

/// Empties every table of `db` but the migrations': as fresh as a new
/// database, for a fraction of the cost of migrating one per case.
async fn empty(db: &TestDb) {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(tablename) FROM pg_tables
         WHERE schemaname = 'public' AND tablename NOT LIKE '\\_sqlx%'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    sqlx::raw_sql(&format!("TRUNCATE {}", tables.join(", ")))
        .execute(&db.pool)
        .await
        .unwrap();
}

/// Applies `events` in `plan`'s order and batches into `db`, emptied
/// first; returns what it holds and the model of the same order.
async fn apply(db: &TestDb, events: &[DeploymentReported], plan: &Plan) -> (Tables, Tables) {
    empty(db).await;
    let ordered: Vec<&DeploymentReported> = plan.order.iter().map(|&i| &events[i]).collect();
    let located: Vec<Located> = ordered
        .iter()
        .enumerate()
        .map(|(offset, e)| Located::new((*e).clone(), "t", 0, offset as i64))
        .collect();
    let mut rest = &located[..];
    for &size in plan.batches.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, after) = rest.split_at(size.min(rest.len()));
        write_batch(&db.pool, "g", batch, &BTreeMap::new())
            .await
            .expect("the batch is written");
        rest = after;
    }
    (actual(&db.pool).await, model(&ordered))
}

/// Whether no event id is carried by two different events: then the
/// applied set, and so every table, is the same in any order.
fn unambiguous(events: &[DeploymentReported]) -> bool {
    let mut by_id: BTreeMap<Uuid, &DeploymentReported> = BTreeMap::new();
    events
        .iter()
        .all(|e| by_id.insert(e.event_id, e).is_none_or(|other| other == e))
}

async fn check(
    dbs: &(TestDb, TestDb),
    (ops, first, second): (Vec<Op>, Plan, Plan),
) -> Result<(), TestCaseError> {
    let events = build(&ops);
    let (got, expected) = apply(&dbs.0, &events, &first).await;
    prop_assert_eq!(&got.deployments, &expected.deployments);
    prop_assert_eq!(&got.commits, &expected.commits);
    prop_assert_eq!(&got.lineage, &expected.lineage);
    prop_assert_eq!(&got.shipped, &expected.shipped);
    let (again, expected_again) = apply(&dbs.1, &events, &second).await;
    prop_assert_eq!(&again, &expected_again);
    if unambiguous(&events) {
        prop_assert_eq!(&again, &got, "another order or split gave other rows");
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("VIBEMON_WHAT_CHANGED_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Runs the cases by hand rather than with `proptest!`, so that the two
/// databases (and the runtime their pools live on) outlive every case.
#[test]
fn the_what_changed_tables_equal_the_model_in_any_order_and_batching() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dbs = rt.block_on(async { (TestDb::new().await, TestDb::new().await) });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 256,
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&history(), |h| rt.block_on(check(&dbs, h)));
    if let Err(e) = result {
        panic!("{e}");
    }
}
