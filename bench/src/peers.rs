//! Part `peers`: the two designs a team would otherwise build with the seed's
//! FastAPI service, under the same `wrk` load as durable ingest.
//!
//! `bench/peers/app.py` is one FastAPI app in two modes: `kafka` (aiokafka,
//! acks=all, idempotent, 201 after the broker's acknowledgement) and
//! `postgres` (asyncpg, one INSERT per webhook, 201 after the commit). Both
//! check the key as ingest does (argon2id once, then cached) and validate the
//! contract's body. They run under uvicorn with one worker per core, from the
//! venv bench/run installs from PyPI (`bench/peers/requirements.txt`); when
//! that venv is missing, the figures say why instead of holding a number.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use vibemon_testkit::ledger::records_on;
use vibemon_testkit::{Tenant, TestDb, TestTopic};

use crate::load::Target;
use crate::process::{free_port, wait_ready, Service};
use crate::report::{Report, Row};
use crate::wrk::{closed_round, Rounds, Wrk};
use crate::Options;

const APP: &str = include_str!("../peers/app.py");
const SCHEMA: &str = include_str!("../peers/schema.sql");

/// The two peers, by `PEER_MODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Kafka,
    Postgres,
}

impl Peer {
    fn mode(self) -> &'static str {
        match self {
            Peer::Kafka => "kafka",
            Peer::Postgres => "postgres",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Peer::Kafka => "FastAPI + aiokafka, acks=all, idempotent",
            Peer::Postgres => "FastAPI + asyncpg, one INSERT per webhook (the seed's design)",
        }
    }
}

/// The venv bench/run installs the peers into.
fn venv(opts: &Options) -> PathBuf {
    opts.cache().join("tools/peers-venv")
}

/// Why the peers cannot run: bench/run's pip output when it failed.
fn missing_reason(opts: &Options) -> String {
    let log = opts.out.join("peers-install.log");
    let last = std::fs::read_to_string(&log).ok().and_then(|s| {
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(str::to_owned)
    });
    match last {
        Some(line) => format!(
            "the peers' venv could not be installed from PyPI: {}",
            line.replace('|', "/")
        ),
        None => format!(
            "{} has no uvicorn: run bench/run, which installs bench/peers/requirements.txt",
            venv(opts).display()
        ),
    }
}

pub async fn run(opts: &Options, report: &mut Report) -> anyhow::Result<()> {
    let uvicorn = venv(opts).join("bin/uvicorn");
    if !uvicorn.exists() {
        let why = missing_reason(opts);
        for peer in [Peer::Kafka, Peer::Postgres] {
            set_missing(report, peer, why.clone());
        }
        return Ok(());
    }
    let dir = opts.out.join("peers");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("app.py"), APP)?;
    let db = TestDb::new().await;
    let tenant = Tenant::create(&db.pool, "bench peers").await;
    sqlx::raw_sql(SCHEMA)
        .execute(&db.pool)
        .await
        .context("creating peer_deployments")?;
    let wrk = Wrk::new(&opts.out, opts.wrk_threads, opts.connections)?;
    for peer in [Peer::Kafka, Peer::Postgres] {
        match run_one(opts, &wrk, &uvicorn, &dir, &db, &tenant.key, peer).await {
            Ok(row) => {
                let rate = row.rate;
                report.rows.push(row);
                match peer {
                    Peer::Kafka => report.figures.peer_kafka_rate = rate,
                    Peer::Postgres => report.figures.peer_postgres_rate = rate,
                }
            }
            Err(e) => set_missing(report, peer, format!("it failed: {e:#}")),
        }
    }
    Ok(())
}

fn set_missing(report: &mut Report, peer: Peer, why: String) {
    eprintln!("peers {}: not measured: {why}", peer.mode());
    report.rows.push(Row {
        part: "peers",
        what: peer.label().to_owned(),
        rate: None,
        unit: "",
        latency_ms: None,
        peak_rss_mib: None,
        note: format!("not measured: {why}")
            .replace('|', "/")
            .replace('\n', " "),
    });
    match peer {
        Peer::Kafka => report.figures.peer_kafka_missing = Some(why),
        Peer::Postgres => report.figures.peer_postgres_missing = Some(why),
    }
}

/// Starts one peer, runs the closed-loop rounds against it, checks that what
/// it acknowledged was written, and returns its row.
async fn run_one(
    opts: &Options,
    wrk: &Wrk,
    uvicorn: &Path,
    dir: &Path,
    db: &TestDb,
    key: &str,
    peer: Peer,
) -> anyhow::Result<Row> {
    let topic = TestTopic::new(6).await;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let port = free_port();
    let args: Vec<String> = [
        "--app-dir",
        &dir.display().to_string(),
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--workers",
        &workers.to_string(),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "app:app",
    ]
    .map(str::to_owned)
    .to_vec();
    let service = Service::start(
        &format!("peer-{}", peer.mode()),
        uvicorn,
        &args,
        &[
            ("PEER_MODE", peer.mode().to_owned()),
            ("DATABASE_URL", db.url.clone()),
            ("KAFKA_BROKERS", topic.brokers.clone()),
            ("KAFKA_TOPIC", topic.name.clone()),
        ],
        &opts.out.join(format!("peer-{}.log", peer.mode())),
    )?;
    let ready = wait_ready(
        &format!("http://127.0.0.1:{port}/readyz"),
        Duration::from_secs(60),
    )
    .await;
    if let Err(e) = ready {
        service.stop_with_children().await;
        return Err(e);
    }
    let target = Target {
        url: format!("http://127.0.0.1:{port}/api/v1/deployments/webhook"),
        key: key.to_owned(),
    };
    let mut rounds = Rounds::default();
    let mut outcome = Ok(());
    for round in 1..=opts.rounds {
        eprintln!(
            "peers {}: closed loop round {round}/{}, {}, {} s",
            peer.mode(),
            opts.rounds,
            wrk.describe(),
            opts.seconds
        );
        outcome = closed_round(wrk, &service, true, &target, opts.seconds, &mut rounds).await;
        if outcome.is_err() {
            break;
        }
    }
    let cpu = rounds.cpu_note();
    service.stop_with_children().await;
    outcome?;
    let (ok, failed) = rounds.totals();
    let acknowledged = ok + rounds.warmup_ok;
    let written = match peer {
        Peer::Kafka => {
            let (brokers, name) = (topic.brokers.clone(), topic.name.clone());
            tokio::task::spawn_blocking(move || records_on(&brokers, &name)).await? as u64
        }
        Peer::Postgres => {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM peer_deployments")
                .fetch_one(&db.pool)
                .await? as u64
        }
    };
    let where_ = match peer {
        Peer::Kafka => "records on the topic",
        Peer::Postgres => "rows in peer_deployments",
    };
    Ok(rounds.row(
        "peers",
        format!(
            "{}: closed loop, {}, uvicorn × {workers} workers, median of {} × {} s",
            peer.label(),
            wrk.describe(),
            opts.rounds,
            opts.seconds
        ),
        None,
        format!(
            "rounds {}; {ok} accepted, {failed} failed{}; {written} {where_} for {acknowledged} 201s (warm-ups included; wrk stops with up to its connections in flight, written but not counted); {cpu} (all workers); latency of the median round",
            rounds.rates(),
            rounds.failures(),
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_missing_venv_names_its_reason_from_the_install_log() {
        let out = std::env::temp_dir().join(format!("peers-test-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(
            out.join("peers-install.log"),
            "Collecting fastapi\nERROR: No matching distribution found for fastapi==0.165.0\n\n",
        )
        .unwrap();
        let opts = Options::parse_from(["vibemon-bench", "--out", out.to_str().unwrap()]);
        let why = missing_reason(&opts);
        std::fs::remove_dir_all(&out).unwrap();
        assert!(
            why.ends_with("No matching distribution found for fastapi==0.165.0"),
            "{why}"
        );
    }
}
