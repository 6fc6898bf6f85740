//! `vibemon replay`: rebuild the read model from the topic with the
//! projector's own machinery, showing progress.
//!
//! Progress lives in the target database as the replay group's checkpoints,
//! so an interrupted replay resumes where it stopped, and re-applying what
//! was already applied changes nothing.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use sqlx::PgPool;
use vibemon_projector::config::Config;
use vibemon_projector::consumer::LoopConfig;
use vibemon_projector::metrics::Metrics;
use vibemon_runtime::watermarks::{watermarks, PartitionRange};
use vibemon_store::checkpoints::{self, Position};

use crate::cli::{Db, ReplayArgs};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::reference::connect;

/// The target database, created and migrated when it is missing.
async fn target(args: &ReplayArgs) -> CliResult<String> {
    let Some(name) = &args.into else {
        return Ok(args.db.database_url.clone());
    };
    if !vibemon_store::is_plain_identifier(name) {
        return Err(CliError::Invalid(format!(
            "--into {name:?}: use a database name of lower-case letters, digits and '_'"
        )));
    }
    let admin = connect(&args.db).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&admin)
            .await
            .map_err(|e| CliError::db("checking the target database", e))?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .map_err(|e| CliError::db(&format!("creating database {name}"), e))?;
        eprintln!("replay: created database {name}");
    }
    Ok(vibemon_store::url_with_database(
        &args.db.database_url,
        name,
    ))
}

fn consumer(args: &ReplayArgs) -> CliResult<BaseConsumer> {
    args.kafka
        .client_config("vibemon-replay-planner")
        .set("group.id", format!("{}-planner", args.group))
        .create()
        .map_err(|e| CliError::Unavailable(format!("creating a Kafka consumer: {e}")))
}

/// What replay needs of Kafka before it starts: the partitions' ranges and,
/// with `--since`, the first offset at or after that time in each. Asked on
/// a blocking thread, before any Postgres transaction is open.
struct Plan {
    ranges: Vec<PartitionRange>,
    /// Per partition, where `--since` starts it.
    since: Option<BTreeMap<i32, i64>>,
}

fn plan(c: &BaseConsumer, topic: &str, since: Option<i64>) -> CliResult<Plan> {
    let ranges = watermarks(c.client(), topic, Duration::from_secs(10))?;
    let Some(millis) = since else {
        return Ok(Plan {
            ranges,
            since: None,
        });
    };
    let mut tpl = TopicPartitionList::new();
    for r in &ranges {
        tpl.add_partition_offset(topic, r.partition, Offset::Offset(millis))
            .map_err(|e| CliError::Other(e.into()))?;
    }
    let found = c
        .offsets_for_times(tpl, Duration::from_secs(10))
        .map_err(|e| CliError::Unavailable(format!("offsets for --since: {e}")))?;
    let starts = found
        .elements()
        .iter()
        .map(|elem| {
            let offset = match elem.offset() {
                Offset::Offset(o) => o,
                // No record at or after the time: start at the end.
                _ => ranges
                    .iter()
                    .find(|r| r.partition == elem.partition())
                    .map_or(0, |r| r.high),
            };
            (elem.partition(), offset)
        })
        .collect();
    Ok(Plan {
        ranges,
        since: Some(starts),
    })
}

/// Whether the group already has progress in the target: a resumed replay,
/// which `--since` does not move.
async fn resuming(pool: &PgPool, args: &ReplayArgs) -> CliResult<bool> {
    let existing = checkpoints::load(pool, &args.group, &args.kafka.topic)
        .await
        .map_err(|e| CliError::db("reading checkpoints", e))?;
    if !existing.is_empty() {
        eprintln!("replay: resuming group {} from its checkpoints", args.group);
    }
    Ok(!existing.is_empty())
}

/// Seeds the group's checkpoints with the offsets of `--since`.
async fn seed_since(
    pool: &PgPool,
    args: &ReplayArgs,
    starts: &BTreeMap<i32, i64>,
) -> CliResult<()> {
    let positions: BTreeMap<(String, i32), Position> = starts
        .iter()
        .map(|(p, offset)| ((args.kafka.topic.clone(), *p), Position::at(*offset)))
        .collect();
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| CliError::db("seeding checkpoints", e))?;
    checkpoints::save(&mut conn, &args.group, &positions)
        .await
        .map_err(|e| CliError::db("seeding checkpoints", e))
}

/// `--since` as milliseconds since the epoch.
fn since_millis(since: &str) -> CliResult<i64> {
    chrono::DateTime::parse_from_rfc3339(since)
        .map(|at| at.timestamp_millis())
        .map_err(|e| {
            CliError::Invalid(format!(
                "--since {since:?} is not an RFC 3339 timestamp: {e}"
            ))
        })
}

pub async fn run(args: ReplayArgs, json: bool) -> CliResult<()> {
    let url = target(&args).await?;
    let pool = prepare(&url, &args).await?;
    let mut since = args.since.as_deref().map(since_millis).transpose()?;
    if since.is_some() && resuming(&pool, &args).await? {
        since = None;
    }
    let plan = ask_kafka(&args, since).await?;
    if let Some(starts) = &plan.since {
        seed_since(&pool, &args, starts).await?;
    }
    let total = remaining(&pool, &args, &plan.ranges).await?;
    let (metrics, started) = project(&url, &args, total).await?;
    let digest = checkpoints::digest(&pool)
        .await
        .map_err(|e| CliError::db("computing the digest", e))?;
    summary(&metrics, started, &digest, json);
    Ok(())
}

/// Connects to the target, migrates it, and with `--restart` forgets the
/// group's checkpoints.
async fn prepare(url: &str, args: &ReplayArgs) -> CliResult<PgPool> {
    let pool = connect(&Db {
        database_url: url.to_owned(),
    })
    .await?;
    vibemon_store::migrate(&pool)
        .await
        .map_err(|e| CliError::Other(anyhow::anyhow!("migrating the target: {e}")))?;
    if args.restart {
        checkpoints::forget(&pool, &args.group)
            .await
            .map_err(|e| CliError::db("forgetting checkpoints", e))?;
    }
    Ok(pool)
}

/// The [`Plan`], asked of Kafka on a blocking thread.
async fn ask_kafka(args: &ReplayArgs, since: Option<i64>) -> CliResult<Plan> {
    let c = consumer(args)?;
    let topic = args.kafka.topic.clone();
    tokio::task::spawn_blocking(move || plan(&c, &topic, since))
        .await
        .map_err(|e| CliError::Other(e.into()))?
}

/// Records still to replay: per partition, from the group's checkpoint (or
/// the low watermark) to the high watermark.
async fn remaining(pool: &PgPool, args: &ReplayArgs, ranges: &[PartitionRange]) -> CliResult<i64> {
    let checkpoints = checkpoints::load(pool, &args.group, &args.kafka.topic)
        .await
        .map_err(|e| CliError::db("reading checkpoints", e))?;
    Ok(ranges
        .iter()
        .map(|r| {
            r.high
                - checkpoints
                    .get(&r.partition)
                    .map_or(r.low, |c| c.next)
                    .max(r.low)
        })
        .sum())
}

/// The projector's configuration for this replay.
/// Settings not named here come from the `PROJECTOR_*` environment variables,
/// as for the projector binary.
fn projector_config(url: &str, args: &ReplayArgs) -> CliResult<(Config, LoopConfig)> {
    // Checkpoints are kept under the stable --group name; the Kafka group id
    // is unique per run so that concurrent replays never share partitions.
    let kafka_group = format!("{}-{}", args.group, uuid::Uuid::new_v4().simple());
    let mut config = Config::try_new(url, args.kafka.clone(), &kafka_group).map_err(|e| {
        CliError::Invalid(format!(
            "a PROJECTOR_* environment variable is invalid: {e}"
        ))
    })?;
    config.batch_max = args.batch_max;
    config.batch_linger_ms = 200;
    config.until_caught_up = true;
    let mut loop_config = config.loop_config();
    loop_config.group = args.group.clone();
    loop_config.only_workspace = args.workspace;
    Ok((config, loop_config))
}

/// Runs the projector until it has caught up, showing progress towards
/// `total`; returns its metrics and when it started.
async fn project(url: &str, args: &ReplayArgs, total: i64) -> CliResult<(Metrics, Instant)> {
    let (config, loop_config) = projector_config(url, args)?;
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| CliError::Other(e.into()))?;
    let started = Instant::now();
    let mut projector = tokio::spawn(vibemon_projector::serve_with(
        config,
        loop_config,
        listener,
        vibemon_runtime::shutdown_signal(),
        metrics.clone(),
    ));
    let progress = Progress::new(total.max(0) as u64);
    let result = loop {
        tokio::select! {
            r = &mut projector => break r,
            _ = tokio::time::sleep(Duration::from_millis(500)) => progress.show(metrics.records.get(), started),
        }
    };
    progress.finish(metrics.records.get(), started);
    result
        .map_err(|e| CliError::Other(e.into()))?
        .map_err(|e| {
            CliError::Other(e.context("replay stopped; run the same command again to resume"))
        })?;
    Ok((metrics, started))
}

/// What was replayed, and the read model's digest.
fn summary(metrics: &Metrics, started: Instant, digest: &str, json: bool) {
    let done = metrics.records.get();
    if json {
        output::json(&serde_json::json!({
            "records": done, "applied": metrics.events_projected.get(),
            "seconds": started.elapsed().as_secs_f64(), "digest": digest,
        }));
    } else {
        eprintln!(
            "replay: {done} records ({} applied) in {:.1}s; read model digest {digest}",
            metrics.events_projected.get(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// A progress bar on a terminal, plain periodic lines otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines {
        total: u64,
        last: std::sync::Mutex<Instant>,
    },
}

impl Progress {
    fn new(total: u64) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} events  {per_sec}  ETA {eta}",
                )
                .expect("valid template"),
            );
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                total,
                last: std::sync::Mutex::new(Instant::now()),
            }
        }
    }

    fn show(&self, done: u64, started: Instant) {
        match self {
            Progress::Bar(bar) => bar.set_position(done),
            Progress::Lines { total, last } => {
                let mut last = last.lock().expect("not poisoned");
                if last.elapsed() >= Duration::from_secs(2) {
                    *last = Instant::now();
                    eprintln!("{}", line(done, *total, started));
                }
            }
        }
    }

    fn finish(&self, done: u64, started: Instant) {
        match self {
            Progress::Bar(bar) => bar.finish_and_clear(),
            Progress::Lines { total, .. } => eprintln!("{}", line(done, *total, started)),
        }
    }
}

fn line(done: u64, total: u64, started: Instant) -> String {
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let eta = if rate > 0.0 {
        (total.saturating_sub(done)) as f64 / rate
    } else {
        f64::INFINITY
    };
    let pct = if total == 0 {
        100.0
    } else {
        100.0 * done as f64 / total as f64
    };
    format!("replay: {done}/{total} events ({pct:.1}%), {rate:.0}/s, ETA {eta:.0}s")
}
