//! Crashes: a projector process SIGKILLed at random points while events
//! stream in, and two instances sharing partitions with one killed. Every
//! kill hits a process that was assigned and writing (its own metrics say
//! so), and afterwards the tables match the topic exactly: nothing lost,
//! nothing doubled.

use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use vibemon_store::checkpoints::digest;
use vibemon_testkit::{TestDb, TestTopic};

use crate::helpers::*;

/// A projector binary of its own, and the URL of its /metrics.
struct Process {
    child: Child,
    metrics: String,
}

fn projector_process(db_url: &str, topic: &TestTopic, group: &str) -> Process {
    // A port of our own, so the test can read this process's metrics.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = projector_command(db_url, topic, group)
        .env("PROJECTOR_ADDR", format!("127.0.0.1:{port}"))
        .spawn()
        .expect("start the projector binary");
    Process {
        child,
        metrics: format!("http://127.0.0.1:{port}/metrics"),
    }
}

impl Process {
    /// Records this process checkpointed since it started (its
    /// `vibemon_projector_records_total`), or None while it does not answer.
    async fn records_written(&self) -> Option<u64> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("vibemon_projector_records_total "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits until this process has been assigned partitions and written a
    /// batch: its own records counter, which starts at zero, is above zero.
    async fn wait_writing(&self, secs: u64) -> Option<u64> {
        vibemon_testkit::eventually(Duration::from_secs(secs), || async {
            self.records_written().await.filter(|n| *n > 0)
        })
        .await
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }
}

/// Streams events one at a time (about 50 a second) until `stop` is set, so
/// every kill of the test happens while records are still arriving. Events
/// of 16 workspaces, because the partition key is (workspace, environment):
/// one workspace's events all land on one partition, and a projector holding
/// only the others would have nothing to write.
fn stream_until(
    topic: &TestTopic,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<uuid::Uuid>> {
    let worlds: Vec<World> = (0..16).map(|_| World::new()).collect();
    let (brokers, name) = (topic.brokers.clone(), topic.name.clone());
    tokio::spawn(async move {
        let p = producer(&brokers);
        let mut ids = Vec::new();
        let repos = ["acme/api", "acme/web", "acme/worker", "acme/db"];
        while !stop.load(Ordering::Relaxed) {
            let i = ids.len();
            let e = worlds[i % worlds.len()].report(
                repos[i % repos.len()],
                at("2024-01-15T10:00:00Z") + chrono::Duration::seconds(i as i64),
            );
            ids.push(e.event_id);
            publish(&p, &name, &[e]).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ids
    })
}

/// Streams `n` events in the background, a few at a time.
fn stream_events(
    topic: &TestTopic,
    world: World,
    n: usize,
) -> tokio::task::JoinHandle<Vec<uuid::Uuid>> {
    let (brokers, name) = (topic.brokers.clone(), topic.name.clone());
    tokio::spawn(async move {
        let p = producer(&brokers);
        let mut ids = Vec::new();
        let repos = ["acme/api", "acme/web", "acme/worker", "acme/db"];
        for i in 0..n {
            let e = world.report(
                repos[i % repos.len()],
                at("2024-01-15T10:00:00Z") + chrono::Duration::seconds(i as i64),
            );
            ids.push(e.event_id);
            publish(&p, &name, &[e]).await;
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        ids
    })
}

/// Asserts the live tables hold exactly `events` once each, and equal a
/// rebuild from the topic.
async fn assert_exact(live: &sqlx::PgPool, topic: &TestTopic, events: usize) {
    assert_eq!(
        count(live, "deployment_audit").await,
        events as i64,
        "audit rows"
    );
    assert_eq!(
        count(live, "deployments").await,
        events as i64,
        "deployment rows"
    );
    // Each event is its own deployment, so one report each; an event applied
    // twice would add a report without an audit row (the audit insert
    // ignores a duplicate id).
    assert_eq!(
        vibemon_testkit::ledger::reports_beyond_audit(live).await,
        0,
        "reports counted beyond the audit rows"
    );
    let rebuilt = TestDb::new().await;
    let mut cfg = config(&rebuilt.url, topic, &group());
    cfg.until_caught_up = true;
    spawn(cfg).await.finished().await.unwrap();
    assert_eq!(
        digest(&rebuilt.pool).await.unwrap(),
        digest(live).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_sigkilled_ten_times_while_writing_loses_and_doubles_nothing() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(3).await);
    let group = group();
    let stop = Arc::new(AtomicBool::new(false));
    let producer_task = stream_until(&topic, stop.clone());

    let mut kills = Vec::new();
    for _ in 0..10 {
        let mut process = projector_process(&db.url, &topic, &group);
        // A restarted member waits out the killed one's session (10 s)
        // before it is assigned; kill only once it is writing, then at a
        // random point of its work.
        let writing = process.wait_writing(40).await;
        let extra_ms = rand::rng().random_range(0..1500);
        tokio::time::sleep(Duration::from_millis(extra_ms)).await;
        let before_kill = process.records_written().await;
        process.kill();
        kills.push((writing, before_kill));
    }
    stop.store(true, Ordering::Relaxed);
    let ids = producer_task.await.unwrap();
    let mut last = projector_process(&db.url, &topic, &group);
    wait_rows(&db.pool, "deployment_audit", ids.len() as i64, 90).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    last.kill();

    let hit_writing = kills
        .iter()
        .filter(|(writing, before)| writing.is_some() && before.is_some_and(|n| n > 0))
        .count();
    println!(
        "{} events; {hit_writing} of 10 kills hit a process that had written (records per process before its kill: {:?})",
        ids.len(),
        kills.iter().map(|k| k.1).collect::<Vec<_>>()
    );
    assert_eq!(
        hit_writing, 10,
        "every kill must hit a process that was assigned and writing: {kills:?}"
    );
    assert_exact(&db.pool, &topic, ids.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projectors_share_the_partitions_and_one_killed_while_writing_loses_nothing() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(4).await);
    let group = group();
    let stop = Arc::new(AtomicBool::new(false));
    let producer_task = stream_until(&topic, stop.clone());
    let mut a = projector_process(&db.url, &topic, &group);
    let mut b = projector_process(&db.url, &topic, &group);

    // Both hold partitions and write before one dies.
    let a_writing = a.wait_writing(40).await;
    let b_writing = b.wait_writing(40).await;
    a.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let ids = producer_task.await.unwrap();
    wait_rows(&db.pool, "deployment_audit", ids.len() as i64, 90).await;
    let b_total = b.records_written().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill();

    println!(
        "{} events; before the kill a had written {a_writing:?} records and b {b_writing:?}; b wrote {b_total:?} in all",
        ids.len()
    );
    assert!(a_writing.is_some(), "the killed projector never wrote");
    assert!(b_writing.is_some(), "the partitions were not shared");
    assert_exact(&db.pool, &topic, ids.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_stream_is_waited_out_and_nothing_is_lost() {
    let pg = vibemon_testkit::PrivatePostgres::start();
    let pool = vibemon_store::connect(&pg.url(), 2).await.unwrap();
    vibemon_store::migrate(&pool).await.unwrap();
    let (topic, world) = (TestTopic::new(2).await, World::new());
    let producer_task = stream_events(&topic, world, 800);
    let projector = spawn(config(&pg.url(), &topic, &group())).await;
    let readyz = format!("http://{}/readyz", projector.addr);
    wait_rows(&pool, "deployment_audit", 1, 30).await;

    pg.stop();
    let unready = vibemon_testkit::eventually(Duration::from_secs(20), || async {
        let s = reqwest::get(&readyz).await.ok()?.status();
        (s == 503).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.up();
    let ids = producer_task.await.unwrap();
    let pool = vibemon_store::connect(&pg.url(), 2).await.unwrap();
    wait_rows(&pool, "deployment_audit", ids.len() as i64, 90).await;
    let ready_again = vibemon_testkit::eventually(Duration::from_secs(20), || async {
        let s = reqwest::get(&readyz).await.ok()?.status();
        (s == 200).then_some(())
    })
    .await;
    projector.stop().await.unwrap();

    assert!(unready.is_some(), "/readyz never reported the outage");
    assert!(ready_again.is_some(), "/readyz did not recover by itself");
    assert_exact(&pool, &topic, ids.len()).await;
}

#[tokio::test]
async fn a_batch_write_stuck_behind_a_lock_is_cancelled_by_postgres_after_the_write_timeout_and_retried(
) {
    // Arrange: another session holds the environment's write lock, as a
    // stuck writer would (the key is writer::lock_environments's).
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(1).await, World::new());
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || $2::text, 0))")
        .bind(world.workspace_id)
        .bind(world.environment_id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut cfg = config(&db.url, &topic, &group());
    cfg.write_timeout_secs = 1;
    let projector = spawn(cfg).await;
    let metrics = format!("http://{}/metrics", projector.addr);

    // Act: the write waits on the lock, times out and is retried; then the
    // lock goes away.
    publish(
        &producer(&topic.brokers),
        &topic.name,
        &[world.report("acme/api", at("2024-01-15T10:00:00Z"))],
    )
    .await;
    let retried = vibemon_testkit::eventually(Duration::from_secs(20), || async {
        let text = reqwest::get(&metrics).await.ok()?.text().await.ok()?;
        text.lines()
            .find(|l| l.starts_with("vibemon_projector_pg_retries_total "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .filter(|n| *n >= 1.0)
    })
    .await;
    holder.rollback().await.unwrap();
    wait_rows(&db.pool, "deployment_audit", 1, 30).await;
    projector.stop().await.unwrap();

    // Assert
    assert!(
        retried.is_some(),
        "the stuck write was never cancelled and retried"
    );
    assert_eq!(count(&db.pool, "deployment_audit").await, 1);
}
