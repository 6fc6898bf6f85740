//! Parts 1, 2 and the plot's sweep: the `ingest` binary with its durable
//! Kafka sink and with `--sink noop`, under the same load.
//!
//! Each runs in its own process, on its own topic, with the per-IP and
//! per-key rate limits off (the load comes from one address and one key).
//! A closed loop finds the maximum; an open-loop sweep then offers 25 % to
//! 125 % of that maximum and records what came back.

use std::time::Duration;

use vibemon_testkit::{read_topic, Tenant, TestDb, TestTopic};

use crate::load::{closed_loop, open_loop, LoadResult, Target};
use crate::process::{free_port, sibling_binary, wait_ready, Service};
use crate::report::{Report, Row, SweepPoint};
use crate::Options;

/// Fractions of the closed-loop maximum the sweep offers.
pub const SWEEP: [f64; 5] = [0.25, 0.5, 0.75, 1.0, 1.25];

/// The sink a run uses, and its label in the results.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Durable,
    Noop,
}

impl Sink {
    fn label(self) -> &'static str {
        match self {
            Sink::Durable => "durable",
            Sink::Noop => "noop",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Sink::Durable => "kafka",
            Sink::Noop => "noop",
        }
    }
}

/// A running ingest process and the target to load it with.
pub struct RunningIngest {
    pub service: Service,
    pub target: Target,
}

/// Starts the `ingest` binary on `topic`, authenticating against `db`.
pub async fn start(
    opts: &Options,
    db: &TestDb,
    tenant: &Tenant,
    topic: &TestTopic,
    sink: Sink,
    log_name: &str,
) -> anyhow::Result<RunningIngest> {
    let addr = format!("127.0.0.1:{}", free_port());
    let service = Service::start(
        "ingest",
        &sibling_binary("ingest")?,
        &[],
        &[
            ("DATABASE_URL", db.url.clone()),
            ("KAFKA_BROKERS", topic.brokers.clone()),
            ("KAFKA_TOPIC", topic.name.clone()),
            ("INGEST_ADDR", addr.clone()),
            ("INGEST_SINK", sink.flag().to_owned()),
            // The load generator is one client with thousands of connections.
            ("INGEST_RATE_LIMIT_PER_IP", "0".to_owned()),
            ("INGEST_MAX_CONNECTIONS_PER_IP", "0".to_owned()),
            ("INGEST_RATE_LIMIT_PER_KEY", "0".to_owned()),
        ],
        &opts.out.join(log_name),
    )?;
    wait_ready(&format!("http://{addr}/readyz"), Duration::from_secs(30)).await?;
    Ok(RunningIngest {
        service,
        target: Target {
            url: format!("http://{addr}/api/v1/deployments/webhook"),
            key: tenant.key.clone(),
        },
    })
}

/// What the ingest part hands to later parts.
pub struct IngestFigures {
    /// Closed-loop maximum of the durable sink, webhooks/s.
    pub durable_max: f64,
    /// Average size of the records ingest wrote (key + value), bytes.
    pub record_bytes: usize,
}

pub async fn run(opts: &Options, report: &mut Report) -> anyhow::Result<IngestFigures> {
    let db = TestDb::new().await;
    let tenant = Tenant::create(&db.pool, "bench").await;
    let sinks = [Sink::Durable, Sink::Noop];
    let mut running = Vec::new();
    for sink in sinks {
        let topic = TestTopic::new(6).await;
        let log = format!("ingest-{}.log", sink.label());
        let ingest = start(opts, &db, &tenant, &topic, sink, &log).await?;
        running.push((sink, topic, ingest));
    }

    // Closed loop, the two sinks taking turns so that the machine's drifting
    // background load falls on both alike; the median round is reported.
    let mut rounds: Vec<Vec<LoadResult>> = vec![Vec::new(), Vec::new()];
    for round in 1..=opts.rounds {
        for (i, (sink, _, ingest)) in running.iter().enumerate() {
            eprintln!(
                "ingest {}: closed loop round {round}/{}, {} connections, {} s",
                sink.label(),
                opts.rounds,
                opts.connections,
                opts.seconds
            );
            rounds[i].push(
                closed_loop(
                    ingest.target.clone(),
                    opts.connections,
                    Duration::from_secs(1),
                    Duration::from_secs(opts.seconds),
                )
                .await,
            );
        }
    }

    let mut durable_max = 0.0;
    let mut record_bytes = 0;
    for (i, (sink, topic, ingest)) in running.into_iter().enumerate() {
        let sink_rounds = &rounds[i];
        let mut rates: Vec<f64> = sink_rounds.iter().map(LoadResult::rate).collect();
        rates.sort_by(f64::total_cmp);
        let max = rates[rates.len() / 2];
        let mut latency = sink_rounds[0].latency.clone();
        for r in &sink_rounds[1..] {
            latency.add(&r.latency).expect("same bounds");
        }
        let ms = |p: f64| latency.value_at_percentile(p) as f64 / 1000.0;
        let (ok, failed): (u64, u64) = sink_rounds
            .iter()
            .map(|r| (r.ok, r.failed))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        let saturated_rss = ingest.service.peak_rss_mib();
        let closed_row = report.rows.len();
        report.rows.push(Row {
            part: "ingest",
            what: format!(
                "{}: closed loop, {} connections, median of {} × {} s",
                sink.label(),
                opts.connections,
                opts.rounds,
                opts.seconds
            ),
            rate: Some(max),
            unit: "webhooks/s",
            latency_ms: Some([ms(50.0), ms(99.0), ms(99.9)]),
            peak_rss_mib: Some(saturated_rss),
            note: format!(
                "rounds {}; {ok} accepted, {failed} failed",
                sink_rounds
                    .iter()
                    .map(|r| format!("{:.0}", r.rate()))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
        });
        match sink {
            Sink::Durable => {
                durable_max = max;
                report.figures.durable_rate = Some(max);
                report.figures.ingest_rss_mib = Some(saturated_rss);
                let records =
                    read_topic(&topic.brokers, &topic.name, 100, Duration::from_secs(20)).await;
                let total: usize = records
                    .iter()
                    .map(|r| {
                        r.key.as_ref().map_or(0, Vec::len) + r.payload.as_ref().map_or(0, Vec::len)
                    })
                    .sum();
                record_bytes = total / records.len().max(1);
            }
            Sink::Noop => report.figures.noop_rate = Some(max),
        }

        for fraction in SWEEP {
            let offered = max * fraction;
            eprintln!(
                "ingest {}: open loop at {offered:.0}/s for {} s",
                sink.label(),
                opts.sweep_seconds
            );
            let r = open_loop(
                ingest.target.clone(),
                offered,
                Duration::from_secs(opts.sweep_seconds),
                2048,
                false,
            )
            .await;
            if sink == Sink::Durable && fraction == 0.5 {
                report.figures.durable_p99_half_load_ms = Some(r.ms(99.0));
                report.rows.push(Row {
                    part: "ingest",
                    what: format!("durable: open loop at half the maximum ({offered:.0}/s)"),
                    rate: Some(r.rate()),
                    unit: "webhooks/s",
                    latency_ms: Some([r.ms(50.0), r.ms(99.0), r.ms(99.9)]),
                    peak_rss_mib: None,
                    note: format!("{} accepted, {} failed", r.ok, r.failed),
                });
            }
            report.sweep.push(SweepPoint {
                target: sink.label(),
                offered,
                achieved: r.rate(),
                p50_ms: r.ms(50.0),
                p99_ms: r.ms(99.0),
                failed: r.failed,
                skipped: r.skipped,
            });
        }
        let peak = ingest.service.stop().await;
        report.rows[closed_row].note += &format!(
            "; peak RSS over the sweep, up to 125 % overload with 2048 in flight: {peak:.1} MiB"
        );
        eprintln!("ingest {}: peak RSS {peak:.1} MiB", sink.label());
    }
    Ok(IngestFigures {
        durable_max,
        record_bytes,
    })
}
