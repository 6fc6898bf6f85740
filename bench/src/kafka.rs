//! Parts 3 and 4: Kafka's own ceiling (`ProducerPerformance` from
//! kafka-tools, same broker, same record size, `acks=all`) and the Strimzi
//! Kafka Bridge, the off-the-shelf HTTP-to-Kafka peer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use vibemon_testkit::TestTopic;

use crate::process::Service;
use crate::report::{Report, Row};
use crate::Options;

/// The Kafka jars `deploy/local/services` fetched.
pub fn kafka_libs(opts: &Options) -> PathBuf {
    opts.cache().join("kafka-4.4.0/libs")
}

/// The summary line of ProducerPerformance: "N records sent, R records/sec
/// (M MB/sec), A ms avg latency, X ms max latency, P50 ms 50th, P95 ms 95th,
/// P99 ms 99th, P999 ms 99.9th."
#[derive(Debug, PartialEq)]
pub struct PerfSummary {
    pub records: u64,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

pub fn parse_summary(line: &str) -> Option<PerfSummary> {
    let parts: Vec<&str> = line.split(',').map(str::trim).collect();
    let first = |i: usize| -> Option<f64> { parts.get(i)?.split_whitespace().next()?.parse().ok() };
    let find = |suffix: &str| -> Option<f64> {
        parts
            .iter()
            .find(|p| p.trim_end_matches('.').ends_with(suffix))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    if !line.contains("records sent") {
        return None;
    }
    Some(PerfSummary {
        records: first(0)? as u64,
        per_sec: first(1)?,
        p50_ms: find("ms 50th")?,
        p99_ms: find("ms 99th")?,
        p999_ms: find("ms 99.9th")?,
    })
}

pub async fn producer_performance(
    opts: &Options,
    record_bytes: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let topic = TestTopic::new(6).await;
    let log = opts.out.join("producer-performance.log");
    eprintln!(
        "kafka: ProducerPerformance, {} records of {record_bytes} bytes, acks=all",
        opts.kafka_records
    );
    let args: Vec<String> = [
        "-Xmx512m",
        "-cp",
        &format!("{}/*", kafka_libs(opts).display()),
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        &topic.name,
        "--num-records",
        &opts.kafka_records.to_string(),
        "--record-size",
        &record_bytes.to_string(),
        "--throughput",
        "-1",
        "--producer-props",
        &format!("bootstrap.servers={}", topic.brokers),
        "acks=all",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut java = Service::start("ProducerPerformance", Path::new("java"), &args, &[], &log)?;
    java.wait(Duration::from_secs(600)).await?;
    let rss = java.peak_rss_mib();
    let out = std::fs::read_to_string(&log)?;
    let Some(s) = out.lines().rev().find_map(parse_summary) else {
        bail!("no summary line in {}", log.display());
    };
    report.rows.push(Row {
        part: "kafka",
        what: format!("ProducerPerformance, {record_bytes}-byte records, acks=all"),
        rate: Some(s.per_sec),
        unit: "records/s",
        latency_ms: Some([s.p50_ms, s.p99_ms, s.p999_ms]),
        peak_rss_mib: Some(rss),
        note: format!(
            "{} records; batched, asynchronous: no HTTP, auth or validation",
            s.records
        ),
    });
    Ok(())
}

/// The bridge is run only if Maven can resolve it; otherwise the report
/// says why, in Maven's words.
pub async fn bridge(report: &mut Report) -> anyhow::Result<()> {
    const ARTIFACT: &str = "io.strimzi:kafka-bridge:LATEST";
    eprintln!("bridge: resolving {ARTIFACT} with Maven");
    let out = tokio::process::Command::new("mvn")
        .args(["-B", "-q", "dependency:get", "-Dtransitive=false"])
        .arg(format!("-Dartifact={ARTIFACT}"))
        .output()
        .await
        .context("running mvn")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        bail!(
            "{ARTIFACT} now resolves: the bench has no runner for the bridge yet; \
             add one before trusting a run without it"
        );
    }
    let why = maven_reason(&text);
    let reason = format!("{ARTIFACT} does not resolve from Maven Central here: {why}");
    eprintln!("bridge: not run: {reason}");
    report.rows.push(Row {
        part: "bridge",
        what: "Strimzi Kafka Bridge, acks=all".into(),
        rate: None,
        unit: "webhooks/s",
        latency_ms: None,
        peak_rss_mib: None,
        note: format!("not run: {reason}"),
    });
    report.figures.bridge_missing =
        Some("io.strimzi:kafka-bridge is not served by Maven Central here".into());
    Ok(())
}

/// The reason in Maven's error output, without its colours and preamble.
fn maven_reason(output: &str) -> String {
    let mut plain = String::with_capacity(output.len());
    let mut chars = output.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // Skip an ANSI colour sequence: ESC [ ... m
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    let line = plain
        .lines()
        .find(|l| l.contains("Could not") || l.contains("Couldn't"))
        .unwrap_or("mvn dependency:get failed");
    let reason = line
        .rsplit_once("Couldn't download artifact: ")
        .map_or(line, |(_, r)| r)
        .trim_start_matches("[ERROR]")
        .trim();
    reason.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mavens_reason_is_kept_without_colours_or_preamble() {
        let out = "\u{1b}[0m\u{1b}[0m[ERROR] Failed to execute goal org.apache.maven.plugins:maven-dependency-plugin:2.8:get (default-cli) on project standalone-pom: Couldn't download artifact: Failed to resolve version for io.strimzi:kafka-bridge:jar:LATEST: Could not find metadata io.strimzi:kafka-bridge/maven-metadata.xml in local";
        assert_eq!(
            maven_reason(out),
            "Failed to resolve version for io.strimzi:kafka-bridge:jar:LATEST: Could not find metadata io.strimzi:kafka-bridge/maven-metadata.xml in local"
        );
    }

    #[test]
    fn the_producer_performance_summary_line_is_parsed() {
        let line = "1000000 records sent, 187441.4 records/sec (75.16 MB/sec), 151.17 ms avg latency, 560.00 ms max latency, 140 ms 50th, 289 ms 95th, 356 ms 99th, 489 ms 99.9th.";
        assert_eq!(
            parse_summary(line),
            Some(PerfSummary {
                records: 1_000_000,
                per_sec: 187441.4,
                p50_ms: 140.0,
                p99_ms: 356.0,
                p999_ms: 489.0,
            })
        );
    }

    #[test]
    fn a_progress_line_is_not_a_summary() {
        assert_eq!(
            parse_summary("92361 records sent, 18468.5 records/sec (7.41 MB/sec), 1268.3 ms avg latency, 1839.0 ms max latency."),
            None
        );
    }
}
