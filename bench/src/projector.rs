//! Part 5: the projector from empty to caught up on a preloaded topic, and
//! the Postgres-side baselines it is compared with in the same run:
//! - binary `COPY` of the same rows into the same three tables, with the
//!   same indexes (the same-shape ceiling);
//! - `COPY` of the history rows into an unindexed table (context);
//! - a naive projector's row-at-a-time `INSERT … ON CONFLICT`, one
//!   autocommitted statement per event into the real `deployments` table.
//!
//! Both baselines are fed from memory, so they pay nothing for Kafka or
//! decoding: they are generous to the alternative.

use std::time::{Duration, Instant};

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use sqlx::PgPool;
use vibemon_schemas::{BranchName, DeploymentReported, DeploymentSource};
use vibemon_testkit::events::{at, World};
use vibemon_testkit::{TestDb, TestTopic};

use crate::history;
use crate::process::{free_port, sibling_binary, Service};
use crate::report::{Report, Row};
use crate::Options;

/// `n` events shaped like the seed's GitHub Actions report, spread over 20
/// workspaces and 5 repositories.
pub fn events(n: usize) -> Vec<DeploymentReported> {
    let worlds: Vec<World> = (0..20).map(|_| World::new()).collect();
    let repos = [
        "acme/api",
        "acme/web",
        "acme/worker",
        "acme/billing",
        "acme/auth",
    ];
    let main = BranchName::parse("main").expect("a valid branch");
    (0..n)
        .map(|i| {
            let w = &worlds[i % worlds.len()];
            let mut e = w.report(
                repos[i % repos.len()],
                at("2026-01-01T00:00:00Z") + chrono::Duration::seconds(i as i64),
            );
            e.branch = Some(main.clone());
            e.source = DeploymentSource::GithubActions;
            let mut extra = serde_json::Map::new();
            extra.insert(
                "workflow_run_id".into(),
                (9_000_000_000u64 + i as u64).to_string().into(),
            );
            extra.insert("actor".into(), "octocat".into());
            e.extra_data = vibemon_schemas::ExtraData::parse(extra).expect("valid extra_data");
            e
        })
        .collect()
}

/// Publishes one record per event, keyed as ingest keys them, with
/// `payload` making the value; waits for every acknowledgement.
pub async fn preload(
    topic: &TestTopic,
    events: &[DeploymentReported],
    payload: impl Fn(&DeploymentReported) -> Vec<u8>,
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &topic.brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut pending = Vec::with_capacity(10_000);
    for e in events {
        let (key, value) = (e.partition_key(), payload(e));
        pending.push(
            producer
                .send_result(FutureRecord::to(&topic.name).key(&key).payload(&value))
                .map_err(|(e, _)| e)?,
        );
        if pending.len() == 10_000 {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending.drain(..) {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Counts rows of `table` (a trusted, fixed name).
pub async fn count(pool: &PgPool, table: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await?)
}

/// What the projector part hands to the Connect part.
pub struct Projected {
    pub events: Vec<DeploymentReported>,
}

pub async fn run(opts: &Options, report: &mut Report) -> anyhow::Result<Projected> {
    let n = opts.events;
    eprintln!("projector: generating and preloading {n} events");
    let events = events(n);
    let topic = TestTopic::new(6).await;
    let started = Instant::now();
    preload(&topic, &events, DeploymentReported::encode).await?;
    eprintln!(
        "projector: preloaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The projector binary, defaults but for exiting once caught up.
    let db = TestDb::new().await;
    let mut projector = Service::start(
        "projector",
        &sibling_binary("projector")?,
        &["--until-caught-up".to_owned()],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("KAFKA_BROKERS", topic.brokers.clone()),
            ("KAFKA_TOPIC", topic.name.clone()),
            ("KAFKA_GROUP", "bench".to_owned()),
            ("PROJECTOR_ADDR", format!("127.0.0.1:{}", free_port())),
        ],
        &opts.out.join("projector.log"),
    )?;
    let started = Instant::now();
    projector.wait(Duration::from_secs(1800)).await?;
    let secs = started.elapsed().as_secs_f64();
    let rss = projector.peak_rss_mib();
    let audited = count(&db.pool, "deployment_audit").await?;
    let history = count(&db.pool, "deployments").await?;
    anyhow::ensure!(
        audited as usize == n && history as usize == n,
        "projector wrote {audited} audit and {history} history rows for {n} events"
    );
    let rate = n as f64 / secs;
    eprintln!("projector: {n} events in {secs:.1} s = {rate:.0}/s, peak RSS {rss:.1} MiB");
    report.rows.push(
        Row::throughput(
            "projector",
            format!("projector binary, {n} events, empty to caught up"),
            rate,
            "events/s",
        )
        .with_rss(rss)
        .with_note("audit + history + current state + checkpoints, one transaction per batch"),
    );
    report.figures.projector_rate = Some(rate);
    report.figures.replay = Some((n, secs));
    report.figures.projector_rss_mib = Some(rss);
    drop(db);
    drop(topic);

    let shaped = TestDb::new().await;
    let indexed_rate = indexed_copy_ceiling(&shaped.pool, &events).await?;
    report.rows.push(
        Row::throughput(
            "projector",
            format!("binary COPY of the same {n} events into the same three tables, same indexes"),
            indexed_rate,
            "events/s",
        )
        .with_note("same-shape ceiling: audit rows (payload verbatim), history rows, current state; rows pre-encoded in memory, one transaction"),
    );
    report.figures.indexed_copy_rate = Some(indexed_rate);
    drop(shaped);

    let baseline = TestDb::new().await;
    let copy_rate = copy_ceiling(&baseline.pool, &events).await?;
    report.rows.push(
        Row::throughput(
            "projector",
            format!("COPY of the same {n} rows into an unindexed table"),
            copy_rate,
            "events/s",
        )
        .with_note("Postgres ceiling: rows pre-formatted in memory, one COPY"),
    );
    report.figures.copy_rate = Some(copy_rate);

    let sample = opts.insert_sample.min(n);
    let insert_rate = row_at_a_time(&baseline.pool, &events[..sample]).await?;
    report.rows.push(
        Row::throughput(
            "projector",
            format!("row-at-a-time INSERT … ON CONFLICT, first {sample} events"),
            insert_rate,
            "events/s",
        )
        .with_note("one autocommitted statement per event into deployments (history only)"),
    );
    report.figures.insert_rate = Some(insert_rate);
    Ok(Projected { events })
}

/// Events/s of binary `COPY`s of every event's rows into the migrated
/// tables, indexes and all: its audit row (the topic's bytes, as the
/// projector stores them), its history row, and the current-state rows the
/// events leave. A lower bound on what writing these rows costs Postgres.
async fn indexed_copy_ceiling(pool: &PgPool, events: &[DeploymentReported]) -> anyhow::Result<f64> {
    use std::collections::HashMap;
    use vibemon_projector::batch::Located;
    use vibemon_projector::writer;
    use vibemon_store::copy::BinaryCopy;
    let located: Vec<Located> = events
        .iter()
        .enumerate()
        .map(|(offset, e)| Located::new(e.clone(), "bench", (offset % 6) as i32, offset as i64))
        .collect();
    let located: Vec<&Located> = located.iter().collect();
    let (audit_sql, audit) = writer::copy_ledger(&located);
    let (history_sql, history) = writer::copy_history(&located);
    let mut current = BinaryCopy::new();
    let mut latest: HashMap<(uuid::Uuid, uuid::Uuid, &str), &DeploymentReported> = HashMap::new();
    for e in events {
        let key = (e.workspace_id, e.environment_id, e.repository.as_str());
        let slot = latest.entry(key).or_insert(e);
        if (e.deployed_at, e.deployment_id) > (slot.deployed_at, slot.deployment_id) {
            *slot = e;
        }
    }
    for e in latest.values() {
        current
            .row(7)
            .field(&e.workspace_id)
            .field(&e.environment_id)
            .field(&e.repository.as_str())
            .field(&e.deployment_id)
            .field(&e.commit_sha.as_ref().map(|c| c.as_str()))
            .field(&e.branch.as_ref().map(|b| b.as_str()))
            .field(&e.deployed_at);
    }
    let streams = [
        (audit_sql.to_owned(), audit.finish()),
        (history_sql.to_owned(), history.finish()),
        (
            "COPY current_deployments (workspace_id, environment_id, repo_full_name, deployment_id, \
             commit_sha, branch, deployed_at) FROM STDIN (FORMAT binary)"
                .to_owned(),
            current.finish(),
        ),
    ];
    eprintln!(
        "projector: binary COPY of {} events into the indexed tables ({} MiB)",
        events.len(),
        streams.iter().map(|(_, b)| b.len()).sum::<usize>() >> 20
    );
    let mut tx = pool.begin().await?;
    let started = Instant::now();
    for (sql, bytes) in &streams {
        let mut copy = tx.copy_in_raw(sql).await?;
        for chunk in bytes.chunks(1 << 20) {
            copy.send(chunk).await?;
        }
        copy.finish().await?;
    }
    tx.commit().await?;
    let secs = started.elapsed().as_secs_f64();
    let rows = count(pool, "deployments").await?;
    anyhow::ensure!(
        rows as usize == events.len(),
        "COPY wrote {rows} history rows"
    );
    Ok(events.len() as f64 / secs)
}

/// Rows/s of one COPY of every event's row into an unindexed copy of the
/// `deployments` table.
async fn copy_ceiling(pool: &PgPool, events: &[DeploymentReported]) -> anyhow::Result<f64> {
    sqlx::query("CREATE TABLE deployments_copy (LIKE deployments INCLUDING DEFAULTS)")
        .execute(pool)
        .await?;
    let mut text = String::with_capacity(events.len() * 400);
    for e in events {
        history::copy_line(e, &mut text);
    }
    eprintln!(
        "projector: COPY of {} rows ({} MiB)",
        events.len(),
        text.len() >> 20
    );
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY deployments_copy ({}) FROM STDIN",
            history::column_list()
        ))
        .await?;
    for chunk in text.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    let rows = copy.finish().await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(rows as usize == events.len(), "COPY wrote {rows} rows");
    Ok(events.len() as f64 / secs)
}

/// Events/s of a naive projector: one `INSERT … ON CONFLICT` per event.
async fn row_at_a_time(pool: &PgPool, events: &[DeploymentReported]) -> anyhow::Result<f64> {
    eprintln!("projector: row-at-a-time INSERT of {} events", events.len());
    let placeholders: Vec<String> = history::COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.sql_type))
        .collect();
    let sql = format!(
        "INSERT INTO deployments ({}) VALUES ({}) \
         ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, \
           status_rank = EXCLUDED.status_rank, updated_at = EXCLUDED.updated_at, \
           last_event_id = EXCLUDED.last_event_id, reports = deployments.reports + 1 \
         WHERE (deployments.status_rank, deployments.updated_at) \
             < (EXCLUDED.status_rank, EXCLUDED.updated_at)",
        history::column_list(),
        placeholders.join(", ")
    );
    let mut conn = pool.acquire().await?;
    let started = Instant::now();
    for e in events {
        let mut query = sqlx::query(&sql);
        for value in history::values(e) {
            query = query.bind(value);
        }
        query.execute(&mut *conn).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let rows = count(pool, "deployments").await?;
    anyhow::ensure!(rows as usize == events.len(), "INSERT wrote {rows} rows");
    Ok(events.len() as f64 / secs)
}
