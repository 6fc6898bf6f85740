//! `vibemon report`: one deployment report, sent the way a CI step should.
//!
//! One Idempotency-Key for every attempt, so a retry after a lost answer is
//! recorded once. Retries with exponential backoff and jitter on 5xx, 408,
//! 429 and connection errors, within an overall deadline; a 4xx other than
//! those is final. Without --strict it exits 0 whatever happened: the seed
//! says not to fail a deployment because the webhook failed.

use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Map, Value};

use crate::cli::ReportArgs;
use crate::error::{CliError, CliResult};

fn body(args: &ReportArgs) -> CliResult<Value> {
    let mut extra = Map::new();
    for kv in &args.extra {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::Invalid(format!("--extra {kv:?}: expected name=value")))?;
        extra.insert(k.to_owned(), Value::from(v));
    }
    let mut body = Map::new();
    body.insert("environment".into(), Value::from(args.environment.clone()));
    body.insert("repository".into(), Value::from(args.repository.clone()));
    body.insert("status".into(), Value::from(args.status.clone()));
    body.insert("source".into(), Value::from(args.source.clone()));
    for (name, value) in [
        ("branch", &args.branch),
        ("commit_sha", &args.commit_sha),
        ("deployed_at", &args.deployed_at),
        ("external_id", &args.external_id),
    ] {
        if let Some(v) = value {
            body.insert(name.into(), Value::from(v.clone()));
        }
    }
    if !extra.is_empty() {
        body.insert("extra_data".into(), Value::Object(extra));
    }
    Ok(Value::Object(body))
}

/// What became of the report.
enum Outcome {
    Accepted(String),
    Refused(u16, String),
    NotDelivered(String),
}

/// One attempt's answer: final, or worth another try.
enum Attempt {
    Final(Outcome),
    /// Why it failed, and how long the server asked us to wait.
    Retry(String, Option<Duration>),
}

async fn send(args: &ReportArgs, body: &Value, key: &str) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let url = format!(
        "{}/api/v1/deployments/webhook",
        args.url.trim_end_matches('/')
    );
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .build()
        .expect("HTTP client");
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let result = client
            .post(&url)
            .header("X-Workspace-Key", &args.key)
            .header("Idempotency-Key", key)
            .json(body)
            .timeout(left.max(Duration::from_millis(100)))
            .send()
            .await;
        let (why, retry_after) = match judge(result).await {
            Attempt::Final(outcome) => return outcome,
            Attempt::Retry(why, retry_after) => (why, retry_after),
        };
        let wait = wait_before_retry(attempt, retry_after);
        if Instant::now() + wait >= deadline {
            return Outcome::NotDelivered(format!("{why} (after {attempt} attempts)"));
        }
        eprintln!(
            "report: attempt {attempt} failed ({why}); retrying in {:.1}s",
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
}

/// Success and a 4xx other than 408 and 429 are final; 5xx, 408, 429 and
/// connection errors are worth another try.
async fn judge(result: reqwest::Result<reqwest::Response>) -> Attempt {
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => return Attempt::Retry(format!("{e}"), None),
    };
    if resp.status().is_success() {
        return Attempt::Final(Outcome::Accepted(resp.text().await.unwrap_or_default()));
    }
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = resp.text().await.unwrap_or_default();
    if !(status >= 500 || status == 408 || status == 429) {
        return Attempt::Final(Outcome::Refused(status, text));
    }
    Attempt::Retry(format!("HTTP {status}: {text}"), retry_after)
}

/// The server's Retry-After if it gave one, else exponential backoff with
/// jitter; never more than 5 s.
fn wait_before_retry(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let backoff = Duration::from_millis(200 * 2u64.pow(attempt.min(5)))
        + Duration::from_millis(rand::rng().random_range(0..200));
    retry_after.unwrap_or(backoff).min(Duration::from_secs(5))
}

pub async fn run(args: ReportArgs, _json: bool) -> CliResult<()> {
    let body = body(&args)?;
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let failure = match send(&args, &body, &key).await {
        Outcome::Accepted(text) => {
            println!("{text}");
            return Ok(());
        }
        Outcome::Refused(status, text) => {
            CliError::Invalid(format!("ingest refused the report (HTTP {status}): {text}"))
        }
        Outcome::NotDelivered(why) => {
            CliError::Unavailable(format!("the report was not delivered: {why}"))
        }
    };
    if args.strict {
        return Err(failure);
    }
    eprintln!(
        "report: {failure}; exiting 0 so the deployment does not fail (use --strict to fail)"
    );
    Ok(())
}
