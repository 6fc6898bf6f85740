//! Parts 1, 2 and the plot's sweep: the `ingest` binary with its durable
//! Kafka sink and with `--sink noop`, under the same load.
//!
//! Each runs in its own process, on its own topic, with the per-IP and
//! per-key rate limits off (the load comes from one address and one key).
//! A closed loop driven by `wrk` finds the maximum, and the process's own CPU
//! time per webhook; the same `wrk` against a trivial server, in the same
//! rotation, shows the generator's ceiling. An open-loop sweep (our own
//! generator, `load`) then offers 25 % to 125 % of that maximum and records
//! what came back.

use std::time::Duration;

use vibemon_testkit::{read_topic, Tenant, TestDb, TestTopic};

use crate::load::{open_loop, Target};
use crate::process::{free_port, sibling_binary, wait_ready, Service};
use crate::report::{Report, Row, SweepPoint};
use crate::trivial;
use crate::wrk::{closed_round, Rounds, Wrk};
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
    let (trivial, trivial_target) = trivial::start(&opts.out.join("trivial.log")).await?;
    let wrk = Wrk::new(&opts.out, opts.wrk_threads, opts.connections)?;

    // Closed loop, the two sinks and the trivial server taking turns so that
    // the machine's drifting background load falls on all alike; the median
    // round is reported.
    let mut rounds: Vec<Rounds> = vec![Rounds::default(), Rounds::default()];
    let mut ceiling = Rounds::default();
    for round in 1..=opts.rounds {
        for (i, (sink, _, ingest)) in running.iter().enumerate() {
            eprintln!(
                "ingest {}: closed loop round {round}/{}, {}, {} s",
                sink.label(),
                opts.rounds,
                wrk.describe(),
                opts.seconds
            );
            closed_round(
                &wrk,
                &ingest.service,
                false,
                &ingest.target,
                opts.seconds,
                &mut rounds[i],
            )
            .await?;
        }
        eprintln!("load generator ceiling: round {round}/{}", opts.rounds);
        closed_round(
            &wrk,
            &trivial,
            false,
            &trivial_target,
            opts.seconds,
            &mut ceiling,
        )
        .await?;
    }
    drop(trivial);
    let ceiling_rate = ceiling.median().rate();
    let (ok, failed) = ceiling.totals();
    report.rows.push(ceiling.row(
        "ingest",
        format!(
            "load generator ceiling: {} against a trivial 201 server, median of {} × {} s",
            wrk.describe(),
            opts.rounds,
            opts.seconds
        ),
        None,
        format!(
            "rounds {}; {ok} answered 201, {failed} failed{}; same script and bodies; the server reads each body and answers a fixed 201 without parsing it ({})",
            ceiling.rates(),
            ceiling.failures(),
            ceiling.cpu_note().replace("webhook", "request")
        ),
    ));

    let mut durable_max = 0.0;
    let mut record_bytes = 0;
    for (i, (sink, topic, ingest)) in running.into_iter().enumerate() {
        let sink_rounds = &rounds[i];
        let max = sink_rounds.median().rate();
        let (ok, failed) = sink_rounds.totals();
        let saturated_rss = ingest.service.peak_rss_mib();
        let closed_row = report.rows.len();
        let mut note = format!(
            "rounds {}; {ok} accepted, {failed} failed{}; ingest {}; latency of the median round",
            sink_rounds.rates(),
            sink_rounds.failures(),
            sink_rounds.cpu_note()
        );
        if sink == Sink::Noop {
            note += &format!(
                "; {:.0} % of the load generator's ceiling",
                100.0 * max / ceiling_rate
            );
        }
        report.rows.push(sink_rounds.row(
            "ingest",
            format!(
                "{}: closed loop, {}, median of {} × {} s",
                sink.label(),
                wrk.describe(),
                opts.rounds,
                opts.seconds
            ),
            Some(saturated_rss),
            note,
        ));
        match sink {
            Sink::Durable => {
                durable_max = max;
                report.figures.durable_rate = Some(max);
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
        // The target is "at any load": the sweep's 125 % overload counts, for
        // either sink.
        let worst = report.figures.ingest_rss_mib.map_or(peak, |m| m.max(peak));
        report.figures.ingest_rss_mib = Some(worst);
        report.rows[closed_row].note += &format!(
            "; peak RSS over the sweep, up to 125 % overload with 2048 in flight: {peak:.1} MiB"
        );
        eprintln!("ingest {}: peak RSS {peak:.1} MiB", sink.label());
    }
    report.figures.cpu_per_webhook_ratio =
        Some(rounds[0].cpu_us_per_webhook() / rounds[1].cpu_us_per_webhook());
    Ok(IngestFigures {
        durable_max,
        record_bytes,
    })
}
