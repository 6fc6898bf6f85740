//! The closed-loop load generator: Debian's `wrk` with `bench/wrk/webhook.lua`.
//!
//! Our own Rust generator shares the two cores with the server and reached
//! less than half of what `wrk` reaches against the same server, so it capped
//! the closed loop. `wrk` is C with a LuaJIT hook per request; the script
//! makes every request a new deployment and prints one JSON line at the end
//! (statuses, socket errors, latency percentiles), parsed here. The same
//! command against a trivial endpoint (`trivial`) is the generator's ceiling.
//! [`closed_round`] and [`Rounds`] are the rounds every closed loop of the
//! suite takes, with the target process's CPU time read around each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::load::Target;
use crate::process::Service;
use crate::report::Row;

/// The Lua script, built into the binary and written next to the results so
/// a run does not depend on where it is started from.
const SCRIPT: &str = include_str!("../wrk/webhook.lua");

/// How `wrk` is run: the same for every target of a run.
#[derive(Debug, Clone)]
pub struct Wrk {
    script: PathBuf,
    /// wrk threads (each an event loop on its own OS thread).
    pub threads: usize,
    /// Connections kept open and busy, across all threads.
    pub connections: usize,
}

/// What one `wrk` run saw.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    /// Requests answered 201.
    pub ok: u64,
    /// Every other status, with how many times it was answered.
    pub other_statuses: BTreeMap<u16, u64>,
    /// Connect, read and write errors and timeouts: requests with no answer.
    pub socket_errors: u64,
    pub elapsed: Duration,
    /// Latency percentiles p50, p99, p99.9 in microseconds.
    pub latency_us: [u64; 3],
}

impl WrkResult {
    /// Accepted webhooks per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Requests not answered 201, including those never answered.
    pub fn failed(&self) -> u64 {
        self.other_statuses.values().sum::<u64>() + self.socket_errors
    }

    /// The failures spelled out, for a note: "2 × 503, 1 socket error".
    pub fn failures(&self) -> String {
        let mut parts: Vec<String> = self
            .other_statuses
            .iter()
            .map(|(status, n)| format!("{n} × {status}"))
            .collect();
        if self.socket_errors > 0 {
            parts.push(format!("{} socket errors or timeouts", self.socket_errors));
        }
        parts.join(", ")
    }
}

/// The JSON line `done()` prints.
#[derive(Deserialize)]
struct Summary {
    duration_us: u64,
    statuses: BTreeMap<String, u64>,
    errors: SocketErrors,
    latency_us: Percentiles,
}

#[derive(Deserialize)]
struct SocketErrors {
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
}

#[derive(Deserialize)]
struct Percentiles {
    p50: u64,
    p99: u64,
    p99_9: u64,
}

/// Finds the script's JSON line in wrk's output and reads it.
pub fn parse(stdout: &str) -> anyhow::Result<WrkResult> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"bench_wrk\""))
        .context("wrk printed no summary line: was it run with bench/wrk/webhook.lua?")?;
    let s: Summary = serde_json::from_str(line).context("reading wrk's summary line")?;
    let mut ok = 0;
    let mut other_statuses = BTreeMap::new();
    for (status, n) in s.statuses {
        let status: u16 = status.parse().context("a status code")?;
        if status == 201 {
            ok = n;
        } else {
            other_statuses.insert(status, n);
        }
    }
    let e = s.errors;
    Ok(WrkResult {
        ok,
        other_statuses,
        socket_errors: e.connect + e.read + e.write + e.timeout,
        elapsed: Duration::from_micros(s.duration_us.max(1)),
        latency_us: [s.latency_us.p50, s.latency_us.p99, s.latency_us.p99_9],
    })
}

impl Wrk {
    /// Writes the script into `dir` and checks that `wrk` is installed.
    pub fn new(dir: &Path, threads: usize, connections: usize) -> anyhow::Result<Self> {
        let script = dir.join("webhook.lua");
        std::fs::write(&script, SCRIPT).with_context(|| format!("writing {}", script.display()))?;
        if std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_err()
        {
            bail!("wrk is not installed: bench/run installs Debian's (apt-get install wrk)");
        }
        Ok(Self {
            script,
            threads: threads.min(connections).max(1),
            connections,
        })
    }

    /// The command line, as a note can show it.
    pub fn describe(&self) -> String {
        format!("wrk -t{} -c{}", self.threads, self.connections)
    }

    /// Runs wrk against `target` for `duration` (whole seconds, at least 1).
    pub async fn run(&self, target: &Target, duration: Duration) -> anyhow::Result<WrkResult> {
        let out = tokio::process::Command::new("wrk")
            .arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(&self.script)
            .arg(&target.url)
            .arg("--")
            .arg(&target.key)
            .kill_on_drop(true)
            .output()
            .await
            .context("running wrk")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "wrk exited with {}: {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse(&stdout)
    }
}

/// The closed-loop rounds of one target: what wrk saw and the CPU time the
/// target's process used during each measured window.
#[derive(Default)]
pub struct Rounds {
    /// 201s answered during the unrecorded warm-ups.
    pub warmup_ok: u64,
    pub results: Vec<WrkResult>,
    pub cpu_seconds: Vec<f64>,
}

impl Rounds {
    /// The median round by rate (the upper one of an even count).
    pub fn median(&self) -> &WrkResult {
        let mut by_rate: Vec<&WrkResult> = self.results.iter().collect();
        by_rate.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        by_rate[by_rate.len() / 2]
    }

    pub fn rates(&self) -> String {
        self.results
            .iter()
            .map(|r| format!("{:.0}", r.rate()))
            .collect::<Vec<_>>()
            .join(" / ")
    }

    pub fn totals(&self) -> (u64, u64) {
        self.results
            .iter()
            .fold((0, 0), |(ok, failed), r| (ok + r.ok, failed + r.failed()))
    }

    /// The failures of every round spelled out, or nothing.
    pub fn failures(&self) -> String {
        let all: Vec<String> = self
            .results
            .iter()
            .map(WrkResult::failures)
            .filter(|f| !f.is_empty())
            .collect();
        if all.is_empty() {
            String::new()
        } else {
            format!(" ({})", all.join("; "))
        }
    }

    /// The process's CPU time per webhook answered 201, in microseconds, over
    /// all rounds.
    pub fn cpu_us_per_webhook(&self) -> f64 {
        let (ok, _) = self.totals();
        self.cpu_seconds.iter().sum::<f64>() * 1e6 / ok.max(1) as f64
    }

    pub fn cpu_note(&self) -> String {
        if self.totals().0 == 0 {
            return "no CPU time per webhook: none was accepted".to_owned();
        }
        let per_round: Vec<String> = self
            .results
            .iter()
            .zip(&self.cpu_seconds)
            .map(|(r, cpu)| format!("{:.1}", cpu * 1e6 / r.ok.max(1) as f64))
            .collect();
        format!(
            "{:.1} µs CPU per webhook (rounds {})",
            self.cpu_us_per_webhook(),
            per_round.join(" / ")
        )
    }

    pub fn row(
        &self,
        part: &'static str,
        what: String,
        peak_rss_mib: Option<f64>,
        note: String,
    ) -> Row {
        let median = self.median();
        let ms = |us: u64| us as f64 / 1000.0;
        let [p50, p99, p999] = median.latency_us;
        Row {
            part,
            what,
            rate: Some(median.rate()),
            unit: "webhooks/s",
            latency_ms: Some([ms(p50), ms(p99), ms(p999)]),
            peak_rss_mib,
            note,
        }
    }
}

/// One closed-loop round against `target`: a 1 s unrecorded warm-up, then
/// `seconds` measured, with the process's CPU time read around the measured
/// window only (with `children`, its descendants' too).
pub async fn closed_round(
    wrk: &Wrk,
    service: &Service,
    children: bool,
    target: &Target,
    seconds: u64,
    rounds: &mut Rounds,
) -> anyhow::Result<()> {
    rounds.warmup_ok += wrk.run(target, Duration::from_secs(1)).await?.ok;
    let before = service
        .cpu_seconds(children)
        .context("the process exited")?;
    let result = wrk.run(target, Duration::from_secs(seconds)).await?;
    let after = service
        .cpu_seconds(children)
        .context("the process exited")?;
    rounds.results.push(result);
    rounds.cpu_seconds.push(after - before);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = r#"Running 5s test @ http://127.0.0.1:8080/api/v1/deployments/webhook
  2 threads and 128 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.12ms    2.01ms  40.00ms   80.00%
  100000 requests in 5.00s, 30.00MB read
Requests/sec:  20000.00
{"bench_wrk": 1, "duration_us": 5000000, "requests": 100010, "statuses": {"201": 100000, "503": 7, "422": 1}, "errors": {"connect": 0, "read": 1, "write": 0, "timeout": 2}, "latency_us": {"p50": 5900, "p99": 15000, "p99_9": 39000, "max": 40000}}
"#;

    #[test]
    fn the_summary_line_gives_201s_other_statuses_and_percentiles() {
        let r = parse(OUTPUT).unwrap();
        assert_eq!(r.ok, 100_000);
        assert_eq!(r.other_statuses, BTreeMap::from([(422, 1), (503, 7)]));
        assert_eq!(r.socket_errors, 3);
        assert_eq!(r.failed(), 11);
        assert_eq!(r.latency_us, [5900, 15000, 39000]);
        assert!((r.rate() - 20_000.0).abs() < 1e-9);
        assert_eq!(
            r.failures(),
            "1 × 422, 7 × 503, 3 socket errors or timeouts"
        );
    }

    #[test]
    fn a_run_answered_only_with_errors_has_no_201s() {
        let line = r#"{"bench_wrk": 1, "duration_us": 1000000, "requests": 5, "statuses": {"401": 5}, "errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, "latency_us": {"p50": 1, "p99": 2, "p99_9": 3, "max": 4}}"#;
        let r = parse(line).unwrap();
        assert_eq!(r.ok, 0);
        assert_eq!(r.failed(), 5);
        assert_eq!(r.rate(), 0.0);
    }

    #[test]
    fn output_without_the_summary_line_is_an_error() {
        let err = parse("Running 5s test @ http://x\nRequests/sec: 1.0\n").unwrap_err();
        assert!(err.to_string().contains("no summary line"), "{err}");
    }

    #[test]
    fn the_script_prints_the_line_the_parser_looks_for() {
        assert!(SCRIPT.contains(r#"'{"bench_wrk": 1, "duration_us": %d"#));
    }
}
