//! What a run measured: the results table, the load sweep behind the plot,
//! and the targets the figures are held to. Printed as Markdown (pasted into
//! docs/benchmarks.md as is) and written as CSV for `bench/plot.py`.

use std::fmt::Write as _;
use std::path::Path;

/// One line of the results table.
pub struct Row {
    pub part: &'static str,
    pub what: String,
    /// Throughput, in `unit`.
    pub rate: Option<f64>,
    pub unit: &'static str,
    /// Latency percentiles in milliseconds: p50, p99, p99.9.
    pub latency_ms: Option<[f64; 3]>,
    pub peak_rss_mib: Option<f64>,
    pub note: String,
}

impl Row {
    /// A throughput-only row (no latency, RSS or note yet).
    pub fn throughput(part: &'static str, what: String, rate: f64, unit: &'static str) -> Self {
        Self {
            part,
            what,
            rate: Some(rate),
            unit,
            latency_ms: None,
            peak_rss_mib: None,
            note: String::new(),
        }
    }

    pub fn with_rss(mut self, mib: f64) -> Self {
        self.peak_rss_mib = Some(mib);
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// One point of the offered-load sweep.
pub struct SweepPoint {
    pub target: &'static str,
    pub offered: f64,
    pub achieved: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: u64,
    pub skipped: u64,
}

/// The figures the targets are computed from; `None` where a part did not run.
#[derive(Default)]
pub struct Figures {
    pub durable_rate: Option<f64>,
    pub noop_rate: Option<f64>,
    pub durable_p99_half_load_ms: Option<f64>,
    pub bridge_rate: Option<f64>,
    pub bridge_missing: Option<String>,
    pub projector_rate: Option<f64>,
    /// Unindexed `COPY` of the history rows: context only.
    pub copy_rate: Option<f64>,
    /// Binary `COPY` of the same rows into the same three tables with the
    /// same indexes: the same-shape ceiling.
    pub indexed_copy_rate: Option<f64>,
    /// Seconds the projector took from empty to caught up, and on how many
    /// events (the 1M replay target applies when that is at least 1M).
    pub replay: Option<(usize, f64)>,
    pub insert_rate: Option<f64>,
    pub connect_rate: Option<f64>,
    pub connect_missing: Option<String>,
    pub e2e_p99_ms: Option<f64>,
    pub e2e_p99_quarter_ms: Option<f64>,
    /// Ingest's own CPU time per webhook, durable over no-op.
    pub cpu_per_webhook_ratio: Option<f64>,
    /// Peers: FastAPI + aiokafka and FastAPI + asyncpg, webhooks/s.
    pub peer_kafka_rate: Option<f64>,
    pub peer_kafka_missing: Option<String>,
    pub peer_postgres_rate: Option<f64>,
    pub peer_postgres_missing: Option<String>,
    pub ingest_rss_mib: Option<f64>,
    pub projector_rss_mib: Option<f64>,
    /// The dashboard: median First Contentful Paint of a 10,000-deployment
    /// timeline, ms.
    pub dashboard_fcp_ms: Option<f64>,
}

/// One target and whether this run met it.
pub struct Check {
    pub target: &'static str,
    pub measured: String,
    pub verdict: String,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub sweep: Vec<SweepPoint>,
    pub figures: Figures,
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// "met" or "missed", with the margin as a ratio of the goal.
fn judge(measured: f64, goal: f64, higher_is_better: bool) -> String {
    let (met, margin) = if higher_is_better {
        (measured >= goal, measured / goal)
    } else {
        (measured <= goal, goal / measured)
    };
    format!(
        "{} ({margin:.2}× the goal)",
        if met { "met" } else { "missed" }
    )
}

fn ratio_check(
    target: &'static str,
    what: &str,
    num: Option<f64>,
    den: Option<f64>,
    goal: f64,
    missing: Option<&String>,
) -> Check {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => Check {
            target,
            measured: format!("{:.2}× ({what})", n / d),
            verdict: judge(n / d, goal, true),
        },
        _ => Check {
            target,
            measured: "not measured".into(),
            verdict: missing.map_or("not run in this run".into(), |why| {
                format!("not measured: {why}")
            }),
        },
    }
}

fn bound_check(target: &'static str, unit: &str, v: Option<f64>, goal: f64) -> Check {
    match v {
        Some(v) => Check {
            target,
            measured: format!("{v:.1} {unit}"),
            verdict: judge(v, goal, false),
        },
        None => Check {
            target,
            measured: "not measured".into(),
            verdict: "not run in this run".into(),
        },
    }
}

impl Report {
    pub fn checks(&self) -> Vec<Check> {
        let f = &self.figures;
        let replay_1m = f
            .replay
            .filter(|(n, _)| *n >= 1_000_000)
            .map(|(n, secs)| secs * 1_000_000.0 / n as f64);
        vec![
            ratio_check(
                "durable ingest ≥ 0.6× no-op sink",
                "durable / noop webhooks/s",
                f.durable_rate,
                f.noop_rate,
                0.6,
                None,
            ),
            match f.cpu_per_webhook_ratio {
                Some(r) => Check {
                    target: "ingest CPU per webhook, durable / no-op ≤ 1.3×",
                    measured: format!("{r:.2}×"),
                    verdict: judge(r, 1.3, false),
                },
                None => Check {
                    target: "ingest CPU per webhook, durable / no-op ≤ 1.3×",
                    measured: "not measured".into(),
                    verdict: "not run in this run".into(),
                },
            },
            bound_check(
                "durable ingest p99 ≤ 25 ms at half load",
                "ms",
                f.durable_p99_half_load_ms,
                25.0,
            ),
            ratio_check(
                "ingest ≥ 5× FastAPI + aiokafka (acks=all, idempotent)",
                "ingest / peer webhooks/s",
                f.durable_rate,
                f.peer_kafka_rate,
                5.0,
                f.peer_kafka_missing.as_ref(),
            ),
            ratio_check(
                "ingest ≥ 5× FastAPI + asyncpg (the seed's design)",
                "ingest / peer webhooks/s",
                f.durable_rate,
                f.peer_postgres_rate,
                5.0,
                f.peer_postgres_missing.as_ref(),
            ),
            ratio_check(
                "projector ≥ 3× Kafka Connect + Debezium JDBC sink",
                "projector / Connect events/s",
                f.projector_rate,
                f.connect_rate,
                3.0,
                f.connect_missing.as_ref(),
            ),
            ratio_check(
                "projector ≥ 0.5× same-shape indexed COPY",
                "projector / indexed COPY events/s",
                f.projector_rate,
                f.indexed_copy_rate,
                0.5,
                None,
            ),
            ratio_check(
                "projector ≥ 15× row-at-a-time INSERT",
                "projector / INSERT events/s",
                f.projector_rate,
                f.insert_rate,
                15.0,
                None,
            ),
            bound_check(
                "1M-event replay into an empty database ≤ 30 s",
                "s",
                replay_1m,
                30.0,
            ),
            bound_check(
                "end-to-end p99 ≤ 500 ms at half load",
                "ms",
                f.e2e_p99_ms,
                500.0,
            ),
            bound_check(
                "end-to-end p99 ≤ 150 ms at a quarter load",
                "ms",
                f.e2e_p99_quarter_ms,
                150.0,
            ),
            bound_check(
                "ingest peak RSS ≤ 64 MiB at any load",
                "MiB",
                f.ingest_rss_mib,
                64.0,
            ),
            bound_check(
                "projector peak RSS ≤ 128 MiB",
                "MiB",
                f.projector_rss_mib,
                128.0,
            ),
            bound_check(
                "dashboard: first screen of 10,000 deployments < 300 ms (FCP)",
                "ms",
                f.dashboard_fcp_ms,
                300.0,
            ),
        ]
    }

    /// The results and targets as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| part | what | throughput | p50 ms | p99 ms | p99.9 ms | peak RSS MiB | note |\n",
        );
        s.push_str("|---|---|---:|---:|---:|---:|---:|---|\n");
        for r in &self.rows {
            let [p50, p99, p999] = r.latency_ms.map_or([None; 3], |l| l.map(Some));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.part,
                r.what,
                r.rate
                    .map_or_else(|| "–".to_owned(), |v| format!("{v:.0} {}", r.unit)),
                fmt_opt(p50, 1),
                fmt_opt(p99, 1),
                fmt_opt(p999, 1),
                fmt_opt(r.peak_rss_mib, 1),
                r.note
            );
        }
        s.push_str("\n| target | measured | verdict |\n|---|---|---|\n");
        for c in self.checks() {
            let _ = writeln!(s, "| {} | {} | {} |", c.target, c.measured, c.verdict);
        }
        s
    }

    /// Writes `results.md`, `results.csv` and `sweep.csv` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.md"), self.markdown())?;
        let mut csv = String::from("part,what,rate,unit,p50_ms,p99_ms,p999_ms,peak_rss_mib\n");
        for r in &self.rows {
            let [p50, p99, p999] = r.latency_ms.map_or([None; 3], |l| l.map(Some));
            let _ = writeln!(
                csv,
                "{},\"{}\",{},{},{},{},{},{}",
                r.part,
                r.what.replace('"', "'"),
                fmt_opt(r.rate, 1),
                r.unit,
                fmt_opt(p50, 3),
                fmt_opt(p99, 3),
                fmt_opt(p999, 3),
                fmt_opt(r.peak_rss_mib, 1)
            );
        }
        std::fs::write(dir.join("results.csv"), csv)?;
        let mut sweep =
            String::from("target,offered_per_s,achieved_per_s,p50_ms,p99_ms,failed,skipped\n");
        for p in &self.sweep {
            let _ = writeln!(
                sweep,
                "{},{:.1},{:.1},{:.3},{:.3},{},{}",
                p.target, p.offered, p.achieved, p.p50_ms, p.p99_ms, p.failed, p.skipped
            );
        }
        std::fs::write(dir.join("sweep.csv"), sweep)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ratio_above_its_goal_is_met_and_below_is_missed() {
        assert!(judge(0.7, 0.6, true).starts_with("met"));
        assert!(judge(0.5, 0.6, true).starts_with("missed"));
        assert!(judge(20.0, 25.0, false).starts_with("met"));
        assert!(judge(30.0, 25.0, false).starts_with("missed"));
    }

    #[test]
    fn a_peer_that_could_not_run_is_reported_with_its_reason() {
        let report = Report {
            figures: Figures {
                durable_rate: Some(1000.0),
                peer_kafka_missing: Some("no PyPI here".into()),
                ..Figures::default()
            },
            ..Report::default()
        };
        let md = report.markdown();
        assert!(md.contains("not measured: no PyPI here"), "{md}");
    }
}
