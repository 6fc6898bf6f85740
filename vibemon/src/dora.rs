//! `vibemon dora`: the DORA metrics of an environment, from the read model,
//! by the same query as `GET /api/v1/metrics/dora`.

use chrono::{Duration, Utc};
use vibemon_store::dora::{self, Bucket, DoraError, DoraQuery, DoraReport, Metrics};

use crate::cli::DoraArgs;
use crate::deployments::{environment_id, time};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::reference::connect;

pub async fn run(args: DoraArgs, json: bool) -> CliResult<()> {
    let bucket = Bucket::parse(&args.bucket).map_err(|e| CliError::Invalid(format!("--{e}")))?;
    let until = match args.until.as_deref() {
        Some(s) => time("until", s)?,
        None => Utc::now(),
    };
    let since = match args.since.as_deref() {
        Some(s) => time("since", s)?,
        None => until - Duration::days(args.days),
    };
    let window = |e: dora::WindowError| CliError::Invalid(format!("--{}: {}", e.param, e.msg));
    dora::buckets(since, until, bucket).map_err(window)?;
    let pool = connect(&args.db).await?;
    let environment_id = environment_id(&pool, args.workspace, &args.environment).await?;
    let query = DoraQuery {
        workspace_id: args.workspace,
        environment_id,
        repository: args.repository.clone(),
        since,
        until,
        bucket,
    };
    let report = dora::dora(&pool, &query).await.map_err(|e| match e {
        DoraError::Window(e) => window(e),
        DoraError::Database(e) => CliError::db("computing the metrics", e),
    })?;
    if json {
        output::json(&report);
        return Ok(());
    }
    print_table(&args, &report);
    Ok(())
}

/// The report as a table: a title line, one row per bucket, then the total.
fn print_table(args: &DoraArgs, report: &DoraReport) {
    let (since, until, bucket) = (report.since, report.until, report.bucket);
    output::line(format_args!(
        "{}{}, {} to {}, by {} (UTC)",
        args.environment,
        args.repository
            .as_deref()
            .map_or(String::new(), |r| format!(" / {r}")),
        output::when(Some(since)),
        output::when(Some(until)),
        bucket
    ));
    let mut rows: Vec<Vec<String>> = report
        .buckets
        .iter()
        .map(|b| row(b.start.format("%Y-%m-%d").to_string(), &b.metrics))
        .collect();
    rows.push(row("total".to_owned(), &report.total));
    output::table(
        &[
            "from",
            "deploys",
            "per day",
            "lead p50",
            "lead p90",
            "commits",
            "failure rate",
            "restore p50",
            "restore p90",
            "restored",
        ],
        rows,
    );
}

/// One line of the table: every figure beside what it was computed from.
fn row(label: String, m: &Metrics) -> Vec<String> {
    let f = &m.deployment_frequency;
    let c = &m.change_failure_rate;
    let r = &m.time_to_restore;
    vec![
        label,
        if f.rollbacks > 0 {
            format!("{} ({} rollback)", f.deployments, f.rollbacks)
        } else {
            f.deployments.to_string()
        },
        format!("{:.2}", f.per_day),
        span(m.lead_time.median_seconds),
        span(m.lead_time.p90_seconds),
        m.lead_time.commits.to_string(),
        match c.rate {
            Some(rate) => format!("{:.0}% ({}/{})", rate * 100.0, c.failures, c.completed),
            None => "-".to_owned(),
        },
        span(r.median_seconds),
        span(r.p90_seconds),
        format!("{}/{}", r.restored, r.incidents),
    ]
}

/// Seconds as the two largest units: `2d 3h`, `3h 12m`, `4m 10s`, `45s`.
fn span(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "-".to_owned();
    };
    let s = s.round() as i64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_their_two_largest_units() {
        assert_eq!(span(None), "-");
        assert_eq!(span(Some(45.0)), "45s");
        assert_eq!(span(Some(250.0)), "4m 10s");
        assert_eq!(span(Some(3.0 * 3600.0 + 12.0 * 60.0)), "3h 12m");
        assert_eq!(span(Some(2.0 * 86_400.0 + 3.0 * 3600.0 + 59.0)), "2d 3h");
    }
}
