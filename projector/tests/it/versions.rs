//! A topic that mixes event versions 1 and 2, as every topic does once a
//! producer writes version 2: the projector applies both, a replay into an
//! empty database gives the live run's digest, and the ledger keeps each
//! event's bytes, a version-2 event's commits included.

use vibemon_schemas::{Commit, CommitSha, CommitSubject, DeploymentReported};
use vibemon_store::checkpoints::digest;
use vibemon_testkit::{TestDb, TestTopic};

use crate::helpers::*;

/// `e` as ingest writes a report that lists commits and the SHA before:
/// version 2.
fn with_commits(mut e: DeploymentReported, previous: &DeploymentReported) -> DeploymentReported {
    let sha = e.commit_sha.clone().unwrap();
    e.previous_commit_sha = previous.commit_sha.clone();
    e.commits = vec![
        Commit {
            sha,
            committed_at: e.deployed_at - chrono::Duration::minutes(30),
            authored_at: Some(e.deployed_at - chrono::Duration::hours(5)),
            author: None,
            subject: Some(CommitSubject::parse("Retry card authorisations").unwrap()),
        },
        Commit {
            sha: CommitSha::parse(format!("{:040x}", e.event_id.as_u128() >> 8)).unwrap(),
            committed_at: e.deployed_at - chrono::Duration::hours(2),
            authored_at: None,
            author: None,
            subject: None,
        },
    ];
    e.schema_version = e.version_needed();
    e
}

/// Old and new events for two repositories, interleaved as two producers of
/// different builds would write them.
fn mixed_history(world: &World) -> Vec<DeploymentReported> {
    let mut events = Vec::new();
    for (i, repo) in ["acme/api", "acme/web"].iter().enumerate() {
        let t = |m: u32| at(&format!("2024-01-15T1{i}:{m:02}:00Z"));
        let first = world.report(repo, t(0));
        let second = with_commits(world.report(repo, t(10)), &first);
        let third = world.report(repo, t(20));
        let mut rollback = world.report(repo, t(30));
        rollback.commit_sha = first.commit_sha.clone();
        rollback.previous_commit_sha = third.commit_sha.clone();
        rollback.schema_version = rollback.version_needed();
        events.extend([first, second, third, rollback]);
    }
    events
}

#[tokio::test]
async fn a_topic_mixing_versions_1_and_2_projects_and_replays_to_the_same_digest() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(2).await, World::new());
    let events = mixed_history(&world);
    let versions: Vec<u32> = events.iter().map(|e| e.schema_version).collect();
    assert_eq!(versions, [1, 2, 1, 2, 1, 2, 1, 2]);
    let p = producer(&topic.brokers);

    // Live: the projector runs while old and new events arrive.
    let live = spawn(config(&db.url, &topic, &group())).await;
    publish(&p, &topic.name, &events[..4]).await;
    wait_rows(&db.pool, "deployment_audit", 4, 30).await;
    publish(&p, &topic.name, &events[4..]).await;
    wait_rows(&db.pool, "deployment_audit", 8, 30).await;
    live.stop().await.unwrap();
    let rebuilt = TestDb::new().await;
    run_until_caught_up(config(&rebuilt.url, &topic, &group()))
        .await
        .unwrap();

    assert_eq!(count(&db.pool, "deployments").await, 8);
    assert_eq!(
        digest(&rebuilt.pool).await.unwrap(),
        digest(&db.pool).await.unwrap(),
        "a replay of the mixed topic rebuilds the live read model"
    );
    for pool in [&db.pool, &rebuilt.pool] {
        for e in &events {
            let payload: String = sqlx::query_scalar(
                "SELECT payload::text FROM deployment_audit WHERE event_id = $1",
            )
            .bind(e.event_id)
            .fetch_one(pool)
            .await
            .unwrap();
            assert_eq!(
                payload.as_bytes(),
                e.encode(),
                "the ledger keeps the v{} event as written",
                e.schema_version
            );
        }
    }
}

#[tokio::test]
async fn the_newest_deployment_is_current_whichever_version_reported_it() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let events = mixed_history(&world);
    publish(&producer(&topic.brokers), &topic.name, &events).await;

    project_until(&db, &topic, &group(), "deployment_audit", 8).await;

    assert_eq!(
        current_by_repository(&db.pool).await,
        vec![
            ("acme/api".into(), events[3].deployment_id),
            ("acme/web".into(), events[7].deployment_id)
        ],
        "the v2 rollback reports are the latest"
    );
}
