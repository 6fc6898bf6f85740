//! Projectors to run (in-process) and what to read back; events come from
//! `vibemon_testkit::events`.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;
use vibemon_projector::config::Config;
use vibemon_runtime::KafkaArgs;
pub use vibemon_testkit::events::{at, producer, publish, publish_raw, World};
use vibemon_testkit::spawned::Spawned;
use vibemon_testkit::{eventually, TestDb, TestTopic};

/// A projector running in this process: stop it, wait for it to stop by
/// itself, or let it finish. The consume loop runs on a thread of its own,
/// which the test's runtime does not wait for; a projector left running is
/// stopped when its `Running` is dropped.
pub type Running = Spawned;

pub fn config(db_url: &str, topic: &TestTopic, group: &str) -> Config {
    let mut c = Config::new(db_url, KafkaArgs::local(&topic.brokers, &topic.name), group);
    c.batch_linger_ms = 20;
    c
}

pub async fn spawn(config: Config) -> Running {
    Spawned::start(|listener, shutdown| vibemon_projector::serve(config, listener, shutdown)).await
}

/// Runs a projector with `config` until it has read everything on the
/// topic; fails the test if it does not finish in time (a stalled projector
/// never does).
pub async fn run_until_caught_up(mut config: Config) -> anyhow::Result<()> {
    config.until_caught_up = true;
    spawn(config)
        .await
        .stopped_by_itself(Duration::from_secs(60))
        .await
        .expect("the projector finishes instead of stalling")
}

/// Runs a projector that must stop by itself, and with an error, within
/// 30 s; returns the error.
pub async fn failure(config: Config) -> anyhow::Error {
    spawn(config)
        .await
        .stopped_by_itself(Duration::from_secs(30))
        .await
        .expect("the projector stops by itself")
        .expect_err("the projector must stop with an error")
}

/// Runs a projector until `table` holds `n` rows (30 s at most), then
/// stops it.
pub async fn project_until(db: &TestDb, topic: &TestTopic, group: &str, table: &str, n: i64) {
    let projector = spawn(config(&db.url, topic, group)).await;
    wait_rows(&db.pool, table, n, 30).await;
    projector.stop().await.unwrap();
}

/// The one current deployment's id; panics unless there is exactly one row.
pub async fn current_deployment(pool: &PgPool) -> Uuid {
    sqlx::query_scalar("SELECT deployment_id FROM current_deployments")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Every current deployment's id by repository, in repository order.
pub async fn current_by_repository(pool: &PgPool) -> Vec<(String, Uuid)> {
    sqlx::query_as(
        "SELECT repo_full_name, deployment_id FROM current_deployments ORDER BY repo_full_name",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The one checkpoint's next offset, if there is a checkpoint.
pub async fn next_offset(pool: &PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT next_offset FROM projector_checkpoints")
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// The projector binary, configured for `topic` and `group`, quiet, with
/// small batches; callers add or override settings before spawning it.
pub fn projector_command(db_url: &str, topic: &TestTopic, group: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_projector"));
    cmd.env("DATABASE_URL", db_url)
        .env("KAFKA_BROKERS", &topic.brokers)
        .env("KAFKA_TOPIC", &topic.name)
        .env("KAFKA_GROUP", group)
        .env("PROJECTOR_ADDR", "127.0.0.1:0")
        .env("PROJECTOR_BATCH_MAX", "50")
        .env("PROJECTOR_BATCH_LINGER_MS", "20")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

pub fn group() -> String {
    format!("test-group-{}", Uuid::new_v4().simple())
}

pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until `table` holds `n` rows; panics after `secs`.
pub async fn wait_rows(pool: &PgPool, table: &str, n: i64, secs: u64) {
    let got = eventually(Duration::from_secs(secs), || async {
        (count(pool, table).await >= n).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "{table} has {} rows, expected {n}",
        count(pool, table).await
    );
}
