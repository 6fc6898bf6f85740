//! The four DORA metrics of one environment (optionally one repository) over
//! a window, per calendar bucket, from the "what changed" tables the
//! projector keeps: shared by `GET /api/v1/metrics/dora` and `vibemon dora`.
//! docs/dora.md defines each figure and where it departs from DORA's.
//!
//! Every figure comes with what it was computed from: a frequency with its
//! deployments and days, a rate with its numerator and denominator, a median
//! with how many values it is the median of.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Most buckets one answer may hold (a day bucket over 2¾ years).
pub const MAX_BUCKETS: usize = 1000;

/// The calendar unit figures are grouped by, in UTC. Weeks start on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Day,
    Week,
    Month,
}

impl Bucket {
    pub const NAMES: [&'static str; 3] = ["day", "week", "month"];

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "day" => Ok(Bucket::Day),
            "week" => Ok(Bucket::Week),
            "month" => Ok(Bucket::Month),
            _ => Err(format!("bucket must be one of day, week, month, got {s:?}")),
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The start of the calendar bucket holding `t`, in UTC.
    pub fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let d = t.date_naive();
        let day = match self {
            Bucket::Day => d,
            Bucket::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Bucket::Month => d.with_day(1).expect("every month has a first day"),
        };
        midnight(day)
    }

    /// The start of the bucket after the one starting at `start`.
    fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        let d = start.date_naive();
        match self {
            Bucket::Day => midnight(d + Duration::days(1)),
            Bucket::Week => midnight(d + Duration::days(7)),
            Bucket::Month => {
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                midnight(NaiveDate::from_ymd_opt(y, m, 1).expect("a valid month"))
            }
        }
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// What to measure: `[since, until)` in one environment, optionally one
/// repository.
#[derive(Debug, Clone)]
pub struct DoraQuery {
    pub workspace_id: Uuid,
    pub environment_id: Uuid,
    pub repository: Option<String>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub bucket: Bucket,
}

/// A `[start, end)` span of time.
pub type Span = (DateTime<Utc>, DateTime<Utc>);

/// A window the caller must fix: which parameter, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}")]
pub struct WindowError {
    /// `since` or `bucket`.
    pub param: &'static str,
    pub msg: String,
}

/// The buckets of `[since, until)`, each clamped to the window, so the first
/// and last may be partial; an error for an empty window or one of more than
/// [`MAX_BUCKETS`]. Checked before anything is asked of Postgres.
pub fn buckets(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    bucket: Bucket,
) -> Result<Vec<Span>, WindowError> {
    if since >= until {
        return Err(WindowError {
            param: "since",
            msg: format!(
                "since ({}) must be before until ({})",
                since.to_rfc3339(),
                until.to_rfc3339()
            ),
        });
    }
    let mut out = Vec::new();
    let mut start = bucket.start_of(since);
    while start < until {
        if out.len() == MAX_BUCKETS {
            return Err(WindowError {
                param: "bucket",
                msg: format!(
                    "the window holds more than {MAX_BUCKETS} {} buckets: use a larger bucket or a shorter window",
                    bucket.as_str()
                ),
            });
        }
        let next = bucket.next(start);
        out.push((start.max(since), next.min(until)));
        start = next;
    }
    Ok(out)
}

/// Deployment frequency: successful deployments over the days of a bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Frequency {
    pub deployments: i64,
    /// Of `deployments`, how many were rollbacks.
    pub rollbacks: i64,
    pub days: f64,
    pub per_day: f64,
}

/// Lead time for changes, in seconds, over the commits first shipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeadTime {
    pub commits: i64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

/// Change failure rate: (failed deployments + rollbacks) over completed
/// deployments.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FailureRate {
    pub failed: i64,
    /// Rollbacks deployed in the span: each one remedies a failed change.
    pub rollbacks: i64,
    /// `failed + rollbacks`: the numerator.
    pub failures: i64,
    /// Successes in the span that a rollback undid (one rollback may undo
    /// several): shown, not counted in the rate.
    pub rolled_back: i64,
    /// Successful and failed deployments: the denominator.
    pub completed: i64,
    pub rate: Option<f64>,
}

/// Time to restore, in seconds, from each failed or rolled-back deployment to
/// the next success that was not rolled back.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Restore {
    pub incidents: i64,
    pub restored: i64,
    /// Incidents with no good deployment after them yet.
    pub unrestored: i64,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

/// The four metrics over one span of time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub deployment_frequency: Frequency,
    pub lead_time: LeadTime,
    pub change_failure_rate: FailureRate,
    pub time_to_restore: Restore,
}

/// One bucket's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketMetrics {
    #[serde(with = "crate::read::ts")]
    pub start: DateTime<Utc>,
    #[serde(with = "crate::read::ts")]
    pub end: DateTime<Utc>,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// The answer: the whole window, then each bucket, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoraReport {
    pub bucket: &'static str,
    #[serde(with = "crate::read::ts")]
    pub since: DateTime<Utc>,
    #[serde(with = "crate::read::ts")]
    pub until: DateTime<Utc>,
    pub total: Metrics,
    pub buckets: Vec<BucketMetrics>,
}

/// The metrics query (parameters: workspace, environment, repository or
/// NULL, since, until, and the start of each bucket as [`buckets`] gives
/// them). Each part is grouped per bucket (`k`, the bucket's 1-based index
/// by `width_bucket`, a binary search with no time-zone work per row) and in
/// total (`k` NULL); the parts are merged by bucket in Rust. Seconds come
/// from `date_part`, a float, where `extract` would compute a numeric.
///
/// `lineage` names only the columns it uses, which the covering indexes of
/// migrations/20261130000002_dora_indexes.sql hold, so one environment's
/// rows come from the index alone (see docs/read-api-plans.md).
pub const DORA_SQL: &str = "WITH
     lineage AS (
         SELECT l.deployment_id, l.repo_full_name, l.deployed_at, l.rollback_to, l.rolled_back_by,
             width_bucket(l.deployed_at, $6::timestamptz[]) AS k
         FROM deployment_lineage l
         WHERE l.workspace_id = $1 AND l.environment_id = $2
           AND ($3::text IS NULL OR l.repo_full_name = $3)
           AND l.deployed_at >= $4 AND l.deployed_at < $5
     ), failed AS (
         SELECT d.id, d.repo_full_name, d.deployed_at, width_bucket(d.deployed_at, $6::timestamptz[]) AS k
         FROM deployments d
         WHERE d.workspace_id = $1 AND d.environment_id = $2 AND d.status = 'failed'
           AND ($3::text IS NULL OR d.repo_full_name = $3)
           AND d.deployed_at >= $4 AND d.deployed_at < $5
     ), incidents AS (
         SELECT i.k, date_part('epoch', r.deployed_at - i.deployed_at) AS seconds
         FROM (
             SELECT k, repo_full_name, deployed_at, id FROM failed
             UNION ALL
             SELECT k, repo_full_name, deployed_at, deployment_id FROM lineage
             WHERE rolled_back_by IS NOT NULL
         ) i LEFT JOIN LATERAL (
             SELECT g.deployed_at FROM deployment_lineage g
             WHERE g.workspace_id = $1 AND g.environment_id = $2
               AND g.repo_full_name = i.repo_full_name AND g.rolled_back_by IS NULL
               AND (g.deployed_at, g.deployment_id) > (i.deployed_at, i.id)
             ORDER BY g.deployed_at, g.deployment_id LIMIT 1
         ) r ON true
     ), shipped AS (
         SELECT width_bucket(s.deployed_at, $6::timestamptz[]) AS k,
             greatest(date_part('epoch', s.deployed_at - s.committed_at), 0) AS seconds
         FROM shipped_commits s
         WHERE s.workspace_id = $1 AND s.environment_id = $2
           AND ($3::text IS NULL OR s.repo_full_name = $3)
           AND s.deployed_at >= $4 AND s.deployed_at < $5
     )
     SELECT k, count(*) AS deployments, count(*) FILTER (WHERE rollback_to IS NOT NULL) AS rollbacks,
         count(*) FILTER (WHERE rolled_back_by IS NOT NULL) AS rolled_back, 0::int8 AS failed,
         0::int8 AS commits, NULL::float8 AS lead_p50, NULL::float8 AS lead_p90,
         0::int8 AS incidents, 0::int8 AS restored, NULL::float8 AS restore_p50, NULL::float8 AS restore_p90
     FROM lineage GROUP BY GROUPING SETS ((k), ())
     UNION ALL
     SELECT k, 0, 0, 0, count(*), 0, NULL, NULL, 0, 0, NULL, NULL
     FROM failed GROUP BY GROUPING SETS ((k), ())
     UNION ALL
     SELECT k, 0, 0, 0, 0, count(*),
         percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
         percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds), 0, 0, NULL, NULL
     FROM shipped GROUP BY GROUPING SETS ((k), ())
     UNION ALL
     SELECT k, 0, 0, 0, 0, 0, NULL, NULL, count(*), count(seconds),
         percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
         percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds)
     FROM incidents GROUP BY GROUPING SETS ((k), ())";

/// One row of [`DORA_SQL`]: one part's figures for a bucket (`k`) or the
/// whole window (`k` NULL).
#[derive(Debug, sqlx::FromRow)]
struct Part {
    k: Option<i32>,
    deployments: i64,
    rollbacks: i64,
    rolled_back: i64,
    failed: i64,
    commits: i64,
    lead_p50: Option<f64>,
    lead_p90: Option<f64>,
    incidents: i64,
    restored: i64,
    restore_p50: Option<f64>,
    restore_p90: Option<f64>,
}

/// Counts and percentiles of one span, before the ratios.
#[derive(Debug, Default)]
struct Sums {
    deployments: i64,
    rollbacks: i64,
    rolled_back: i64,
    failed: i64,
    lead: LeadTime,
    incidents: i64,
    restored: i64,
    restore_p50: Option<f64>,
    restore_p90: Option<f64>,
}

impl Sums {
    /// Adds one part: each part sets its own figures and leaves the others
    /// zero or NULL.
    fn add(&mut self, p: &Part) {
        self.deployments += p.deployments;
        self.rollbacks += p.rollbacks;
        self.rolled_back += p.rolled_back;
        self.failed += p.failed;
        self.lead.commits += p.commits;
        self.lead.median_seconds = self.lead.median_seconds.or(p.lead_p50);
        self.lead.p90_seconds = self.lead.p90_seconds.or(p.lead_p90);
        self.incidents += p.incidents;
        self.restored += p.restored;
        self.restore_p50 = self.restore_p50.or(p.restore_p50);
        self.restore_p90 = self.restore_p90.or(p.restore_p90);
    }

    fn metrics(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Metrics {
        // Nanoseconds: a bucket is never empty, however short.
        let nanos = (end - start).num_nanoseconds().unwrap_or(i64::MAX);
        let days = nanos as f64 / 86_400e9;
        let failures = self.failed + self.rollbacks;
        let completed = self.deployments + self.failed;
        Metrics {
            deployment_frequency: Frequency {
                deployments: self.deployments,
                rollbacks: self.rollbacks,
                days,
                per_day: self.deployments as f64 / days,
            },
            lead_time: self.lead.clone(),
            change_failure_rate: FailureRate {
                failed: self.failed,
                rollbacks: self.rollbacks,
                failures,
                rolled_back: self.rolled_back,
                completed,
                rate: (completed > 0).then(|| failures as f64 / completed as f64),
            },
            time_to_restore: Restore {
                incidents: self.incidents,
                restored: self.restored,
                unrestored: self.incidents - self.restored,
                median_seconds: self.restore_p50,
                p90_seconds: self.restore_p90,
            },
        }
    }
}

/// Runs the metrics query. A window [`buckets`] refuses is a
/// [`DoraError::Window`], for the caller to answer as bad input.
pub async fn dora(pool: &PgPool, q: &DoraQuery) -> Result<DoraReport, DoraError> {
    let spans = buckets(q.since, q.until, q.bucket).map_err(DoraError::Window)?;
    // Unnamed, so planned for each call's values: the plan cache would
    // otherwise switch a connection to one generic plan after 5 calls, and
    // that plan cannot use the repository indexes (`$3 IS NULL OR ...`),
    // turning a 1 ms repository query into a scan of the whole environment.
    let parts: Vec<Part> = sqlx::query_as(DORA_SQL)
        .persistent(false)
        .bind(q.workspace_id)
        .bind(q.environment_id)
        .bind(q.repository.as_deref())
        .bind(q.since)
        .bind(q.until)
        .bind(spans.iter().map(|(start, _)| *start).collect::<Vec<_>>())
        .fetch_all(pool)
        .await
        .map_err(DoraError::Database)?;
    let mut by_bucket: BTreeMap<Option<i32>, Sums> = BTreeMap::new();
    for p in &parts {
        by_bucket.entry(p.k).or_default().add(p);
    }
    let empty = Sums::default();
    let buckets = spans
        .into_iter()
        .zip(1..)
        .map(|((start, end), k)| {
            let sums = by_bucket.get(&Some(k)).unwrap_or(&empty);
            BucketMetrics {
                start,
                end,
                metrics: sums.metrics(start, end),
            }
        })
        .collect();
    Ok(DoraReport {
        bucket: q.bucket.as_str(),
        since: q.since,
        until: q.until,
        total: by_bucket
            .get(&None)
            .unwrap_or(&empty)
            .metrics(q.since, q.until),
        buckets,
    })
}

/// Why the metrics could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum DoraError {
    /// The window is empty or holds too many buckets: the caller's mistake.
    #[error(transparent)]
    Window(WindowError),
    #[error(transparent)]
    Database(sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn buckets_are_utc_calendar_units_clamped_to_the_window() {
        let weeks = buckets(
            t("2024-01-03T12:00:00Z"),
            t("2024-01-16T00:00:00Z"),
            Bucket::Week,
        )
        .unwrap();
        assert_eq!(
            weeks,
            vec![
                (t("2024-01-03T12:00:00Z"), t("2024-01-08T00:00:00Z")),
                (t("2024-01-08T00:00:00Z"), t("2024-01-15T00:00:00Z")),
                (t("2024-01-15T00:00:00Z"), t("2024-01-16T00:00:00Z")),
            ]
        );
        let months = buckets(
            t("2023-12-31T00:00:00Z"),
            t("2024-02-01T00:00:00Z"),
            Bucket::Month,
        )
        .unwrap();
        assert_eq!(
            months,
            vec![
                (t("2023-12-31T00:00:00Z"), t("2024-01-01T00:00:00Z")),
                (t("2024-01-01T00:00:00Z"), t("2024-02-01T00:00:00Z")),
            ]
        );
    }

    #[test]
    fn an_empty_window_or_too_many_buckets_is_refused() {
        let at = t("2024-01-01T00:00:00Z");
        assert!(buckets(at, at, Bucket::Day).is_err());
        assert!(buckets(at, at + Duration::days(MAX_BUCKETS as i64), Bucket::Day).is_ok());
        let err =
            buckets(at, at + Duration::days(MAX_BUCKETS as i64 + 1), Bucket::Day).unwrap_err();
        assert_eq!(err.param, "bucket");
        assert!(err.msg.contains("more than 1000 day buckets"), "{err}");
        assert_eq!(buckets(at, at, Bucket::Day).unwrap_err().param, "since");
    }

    #[test]
    fn a_bucket_name_is_one_of_three() {
        for name in Bucket::NAMES {
            assert_eq!(Bucket::parse(name).unwrap().as_str(), name);
        }
        assert!(Bucket::parse("Week").is_err());
    }
}
