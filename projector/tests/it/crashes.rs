//! Crashes: a projector process SIGKILLed at random points while events
//! stream in, and two instances sharing partitions with one killed. Afterwards
//! the tables match the topic exactly: nothing lost, nothing doubled.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::Rng;
use vibemon_projector::writer::digest;
use vibemon_testkit::{TestDb, TestTopic};

use crate::helpers::*;

fn projector_process(db_url: &str, topic: &TestTopic, group: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_projector"))
        .env("DATABASE_URL", db_url)
        .env("KAFKA_BROKERS", &topic.brokers)
        .env("KAFKA_TOPIC", &topic.name)
        .env("KAFKA_GROUP", group)
        .env("PROJECTOR_ADDR", "127.0.0.1:0")
        .env("PROJECTOR_BATCH_MAX", "50")
        .env("PROJECTOR_BATCH_LINGER_MS", "20")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the projector binary")
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
    let doubled: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments WHERE reports <> 1")
        .fetch_one(live)
        .await
        .unwrap();
    assert_eq!(doubled, 0);
    let rebuilt = TestDb::new().await;
    let mut cfg = config(&rebuilt.url, topic, &group());
    cfg.until_caught_up = true;
    spawn(cfg).await.handle.await.unwrap().unwrap();
    assert_eq!(
        digest(&rebuilt.pool).await.unwrap(),
        digest(live).await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_sigkilled_ten_times_at_random_points_loses_and_doubles_nothing() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(3).await, World::new());
    let group = group();
    let producer_task = stream_events(&topic, world, 2000);

    let sleeps: Vec<u64> = (0..10)
        .map(|_| rand::rng().random_range(800..2500))
        .collect();
    let mut seen_after_kill = Vec::new();
    for sleep_ms in sleeps {
        let mut child = projector_process(&db.url, &topic, &group);
        tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        seen_after_kill.push(count(&db.pool, "deployment_audit").await);
    }
    let ids = producer_task.await.unwrap();
    assert!(
        seen_after_kill
            .iter()
            .any(|n| *n > 0 && *n < ids.len() as i64),
        "no kill landed mid-stream: {seen_after_kill:?}"
    );
    let mut last = projector_process(&db.url, &topic, &group);
    wait_rows(&db.pool, "deployment_audit", ids.len() as i64, 90).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    last.kill().unwrap();
    last.wait().unwrap();

    assert_exact(&db.pool, &topic, ids.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projectors_share_the_partitions_and_one_killed_loses_nothing() {
    let (db, topic, world) = (TestDb::new().await, TestTopic::new(4).await, World::new());
    let group = group();
    let mut a = projector_process(&db.url, &topic, &group);
    let mut b = projector_process(&db.url, &topic, &group);
    let producer_task = stream_events(&topic, world, 400);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    a.kill().expect("SIGKILL one instance");
    a.wait().unwrap();
    let ids = producer_task.await.unwrap();
    wait_rows(&db.pool, "deployment_audit", ids.len() as i64, 90).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill().unwrap();
    b.wait().unwrap();

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
