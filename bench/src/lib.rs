//! The benchmark suite: every figure of docs/benchmarks.md, measured side by
//! side in one run on the local stack, printed as a table with the targets.
//!
//! Each part is a module: `ingest` (durable and no-op sinks, the load sweep),
//! `peers` (the FastAPI designs of `bench/peers/`), `kafka` (ProducerPerformance,
//! the Strimzi bridge), `projector` (the projector, COPY, row-at-a-time
//! INSERT), `connect` (Kafka Connect with the Debezium JDBC sink), `e2e` and
//! `dashboard` (the first screen of a long timeline in Chromium);
//! `history` is the `deployments` row every baseline writes. `wrk` drives the
//! closed loops and `trivial` is the endpoint that measures its ceiling;
//! `load` is our own open-loop generator. `process` runs the services as real
//! binaries and reads their peak RSS and CPU time, and `report` holds the
//! table and the targets.

pub mod connect;
pub mod dashboard;
pub mod e2e;
pub mod history;
pub mod ingest;
pub mod kafka;
pub mod load;
pub mod peers;
pub mod process;
pub mod projector;
pub mod report;
pub mod trivial;
pub mod wrk;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use report::{Report, Row};

const EXAMPLES: &str = "\
Run it through bench/run, which starts the stack, fetches the Java peers and
builds the release binaries first:

  bench/run                                  # everything, about 8 minutes
  bench/run --parts ingest --seconds 10      # ingest only, shorter runs
  bench/run --parts projector,connect --events 200000

Results go to --out: results.md (the tables), results.csv, sweep.csv, and the
services' logs. bench/plot.py turns sweep.csv into the plot.";

/// The parts a run can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// ingest, durable and no-op sinks, closed loop then an open-loop sweep.
    Ingest,
    /// FastAPI + aiokafka and FastAPI + asyncpg (bench/peers/), same load.
    Peers,
    /// Kafka's ProducerPerformance, same record size, acks=all.
    Kafka,
    /// The Strimzi Kafka Bridge, if Maven can resolve it.
    Bridge,
    /// The projector on preloaded events, COPY and row-at-a-time INSERT.
    Projector,
    /// Kafka Connect standalone with the Debezium JDBC sink, upsert mode.
    Connect,
    /// 201 to row visible, at half the durable maximum.
    E2e,
    /// The dashboard's first screen of a 10,000-deployment timeline, in Chromium.
    Dashboard,
}

/// Measures ingest, the projector and their peers on the local stack, side
/// by side in one run, and prints the results against the targets.
#[derive(Debug, Parser)]
#[command(name = "vibemon-bench", version, after_help = EXAMPLES)]
pub struct Options {
    /// Parts to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ingest,peers,kafka,bridge,projector,connect,e2e,dashboard"
    )]
    pub parts: Vec<Part>,

    /// Seconds of each closed-loop ingest round (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,

    /// Closed-loop rounds per sink; durable and noop take turns and the
    /// median round counts.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,

    /// Seconds of each step of the offered-load sweep (5 steps per sink).
    #[arg(long, default_value_t = 5)]
    pub sweep_seconds: u64,

    /// Connections of the closed-loop load: enough for the durable path,
    /// whose every answer waits for Kafka, to saturate.
    #[arg(long, default_value_t = 128)]
    pub connections: usize,

    /// wrk threads of the closed-loop load (each an event loop on a core).
    #[arg(long, default_value_t = 2)]
    pub wrk_threads: usize,

    /// Records ProducerPerformance sends.
    #[arg(long, default_value_t = 1_000_000)]
    pub kafka_records: u64,

    /// Events preloaded for the projector and for Kafka Connect.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,

    /// Events the row-at-a-time INSERT writes (a sample: at its rate, every
    /// event would take most of the run).
    #[arg(long, default_value_t = 20_000)]
    pub insert_sample: usize,

    /// Seconds of the end-to-end run.
    #[arg(long, default_value_t = 20)]
    pub e2e_seconds: u64,

    /// Webhooks/s of the end-to-end run [default: half the durable maximum
    /// measured by the ingest part, or 300 without it]. A second run at half
    /// this rate follows, for context.
    #[arg(long)]
    pub e2e_rate: Option<f64>,

    /// Directory for results and logs.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,

    /// Where deploy/local/services and bench/run keep Kafka, Connect and the
    /// connector [default: ~/.cache/vibemon].
    #[arg(long = "cache", env = "VIBEMON_HOME")]
    pub cache_dir: Option<PathBuf>,

    /// Serve the trivial 201 endpoint on this address instead of running the
    /// suite: how the ingest part starts the generator's ceiling target.
    #[arg(long, hide = true)]
    pub serve_trivial: Option<std::net::SocketAddr>,
}

impl Options {
    /// The cache directory, `~/.cache/vibemon` unless set.
    pub fn cache(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/vibemon")
        })
    }

    fn runs(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

/// Runs the selected parts in order and returns the report; a part that
/// fails is reported as such and the others still run.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    std::fs::create_dir_all(&opts.out)?;
    let mut report = Report::default();
    let mut durable_max = None;
    let mut record_bytes = None;
    if opts.runs(Part::Ingest) {
        match ingest::run(opts, &mut report).await {
            Ok(f) => {
                durable_max = Some(f.durable_max);
                record_bytes = Some(f.record_bytes);
            }
            Err(e) => failed(&mut report, "ingest", &e),
        }
    }
    if opts.runs(Part::Peers) {
        if let Err(e) = peers::run(opts, &mut report).await {
            failed(&mut report, "peers", &e);
        }
    }
    if opts.runs(Part::Kafka) {
        let bytes = record_bytes.unwrap_or_else(|| {
            let e = projector::events(1).remove(0);
            e.partition_key().len() + e.encode().len()
        });
        if let Err(e) = kafka::producer_performance(opts, bytes, &mut report).await {
            failed(&mut report, "kafka", &e);
        }
    }
    if opts.runs(Part::Bridge) {
        if let Err(e) = kafka::bridge(&mut report).await {
            failed(&mut report, "bridge", &e);
        }
    }
    let mut events = None;
    if opts.runs(Part::Projector) {
        match projector::run(opts, &mut report).await {
            Ok(p) => events = Some(p.events),
            Err(e) => failed(&mut report, "projector", &e),
        }
    }
    if opts.runs(Part::Connect) {
        let events = events
            .take()
            .unwrap_or_else(|| projector::events(opts.events));
        if let Err(e) = connect::run(opts, &events, &mut report).await {
            report.figures.connect_missing = Some(format!("{e:#}"));
            failed(&mut report, "connect", &e);
        }
    }
    if opts.runs(Part::E2e) {
        let rate = opts
            .e2e_rate
            .or(durable_max.map(|m| m / 2.0))
            .unwrap_or(300.0);
        // Half load is the target's; a quarter shows where the whole
        // pipeline sits when the machine is not saturated.
        for (rate, counts) in [(rate, true), (rate / 2.0, false)] {
            if let Err(e) = e2e::run(opts, rate, counts, &mut report).await {
                failed(&mut report, "end to end", &e);
            }
        }
    }
    if opts.runs(Part::Dashboard) {
        if let Err(e) = dashboard::run(&mut report).await {
            failed(&mut report, "dashboard", &e);
        }
    }
    report.write(&opts.out)?;
    Ok(report)
}

fn failed(report: &mut Report, part: &'static str, e: &anyhow::Error) {
    eprintln!("{part}: FAILED: {e:#}");
    report.rows.push(Row {
        part,
        what: "failed".into(),
        rate: None,
        unit: "",
        latency_ms: None,
        peak_rss_mib: None,
        note: format!("{e:#}").replace('|', "/").replace('\n', " "),
    });
}
