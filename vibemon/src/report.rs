//! `vibemon report`: one deployment report, sent the way a CI step should.
//!
//! One Idempotency-Key for every attempt, so a retry after a lost answer is
//! recorded once. Retries with exponential backoff and jitter on 5xx, 408,
//! 429 and connection errors, within an overall deadline; a 4xx other than
//! those is final. Without --strict it exits 0 whatever happened: the seed
//! says not to fail a deployment because the webhook failed.
//!
//! Inside a git work tree it also says what changed: `previous_commit_sha`
//! from the read API (what is deployed there now) and `commits` from the
//! checkout's history since then (see `git.rs`). Failing to work that out
//! sends the report without them, and fails the step only with --strict.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Map, Value};

use crate::cli::ReportArgs;
use crate::error::{CliError, CliResult};
use crate::git::{Commit, Repo};

/// The longest wait for the read API's answer, so a slow read path delays
/// the report itself by little.
const READ_API_TIMEOUT: Duration = Duration::from_secs(5);

/// What changed since the previous deployment, as the body sends it.
struct Changes {
    /// The reported commit, resolved in the checkout.
    head: String,
    /// What the read API says runs there now for this repository.
    previous: Option<String>,
    commits: Vec<Commit>,
}

fn body(args: &ReportArgs, changes: Option<&Changes>) -> CliResult<Value> {
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
    if let Some(changes) = changes {
        add_changes(&mut body, changes);
    }
    Ok(Value::Object(body))
}

/// `commit_sha` defaults to the checkout's HEAD once the commits come from it.
fn add_changes(body: &mut Map<String, Value>, changes: &Changes) {
    body.entry("commit_sha")
        .or_insert_with(|| Value::from(changes.head.clone()));
    if let Some(previous) = &changes.previous {
        body.insert("previous_commit_sha".into(), Value::from(previous.clone()));
    }
    if !changes.commits.is_empty() {
        let commits = changes.commits.iter().map(Commit::to_json).collect();
        body.insert("commits".into(), Value::Array(commits));
    }
}

/// What changed, or `Ok(None)` when not asked for (--no-commits, or the
/// current directory is not a work tree); `Err` says why it could not be
/// worked out.
async fn what_changed(args: &ReportArgs) -> CliResult<Option<Changes>> {
    if args.no_commits {
        return Ok(None);
    }
    let path = args.repo_path.as_deref().unwrap_or(Path::new("."));
    let repo = match Repo::open(path) {
        Ok(repo) => repo,
        Err(why) if args.repo_path.is_none() => {
            eprintln!(
                "report: {why}; sending no commits (use --repo-path to point at the checkout)"
            );
            return Ok(None);
        }
        Err(why) => return Err(git_error(why)),
    };
    let rev = args.commit_sha.as_deref().unwrap_or("HEAD");
    let head = repo
        .resolve(rev)
        .map_err(|_| git_error(format!("{rev} is not a commit of {}", path.display())))?;
    let previous = deployed_commit(args).await?;
    let (range_head, range_previous) = (head.clone(), previous.clone());
    let range =
        tokio::task::spawn_blocking(move || repo.range(&range_head, range_previous.as_deref()))
            .await
            .map_err(|e| git_error(e.to_string()))?
            .map_err(git_error)?;
    if let Some(note) = &range.note {
        eprintln!("report: {note}");
    }
    Ok(Some(Changes {
        head,
        previous,
        commits: range.commits,
    }))
}

fn git_error(why: String) -> CliError {
    CliError::Other(anyhow::anyhow!("cannot read what changed from git: {why}"))
}

/// The commit of `--repository` that the read API says runs in
/// `--environment` now; `None` when nothing (with a commit) is deployed there.
async fn deployed_commit(args: &ReportArgs) -> CliResult<Option<String>> {
    let unavailable = |why: String| {
        CliError::Unavailable(format!("cannot ask the read API what is deployed: {why}"))
    };
    let mut url = reqwest::Url::parse(args.url.trim_end_matches('/'))
        .map_err(|e| CliError::Invalid(format!("--url {:?}: {e}", args.url)))?;
    url.path_segments_mut()
        .map_err(|()| CliError::Invalid(format!("--url {:?} cannot take a path", args.url)))?
        .extend(["api", "v1", "environments", &args.environment, "deployed"]);
    url.query_pairs_mut()
        .append_pair("repository", &args.repository);
    let timeout = READ_API_TIMEOUT.min(Duration::from_secs(args.timeout_secs.max(1)));
    let resp = reqwest::Client::new()
        .get(url)
        .header("X-Workspace-Key", &args.key)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| unavailable(e.to_string()))?;
    if status.is_server_error() {
        return Err(unavailable(format!("HTTP {status}: {text}")));
    }
    if !status.is_success() {
        let msg = format!("the read API refused (HTTP {}): {text}", status.as_u16());
        return Err(CliError::Invalid(msg));
    }
    let answer: Value = serde_json::from_str(&text)
        .map_err(|e| unavailable(format!("unexpected answer {text:?}: {e}")))?;
    Ok(running_commit(&answer, &args.repository))
}

/// The `commit_sha` of `repository` in a `.../deployed` answer.
fn running_commit(answer: &Value, repository: &str) -> Option<String> {
    answer["deployed"]
        .as_array()?
        .iter()
        .find(|d| d["repo_full_name"] == repository)?
        .get("commit_sha")?
        .as_str()
        .map(str::to_ascii_lowercase)
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
    // Checked before any git or network work: a typo here is final.
    body(&args, None)?;
    let (changes, unknown) = match what_changed(&args).await {
        Ok(changes) => (changes, None),
        Err(why) => {
            eprintln!("report: {why}; sending no commits");
            (None, Some(why))
        }
    };
    let body = body(&args, changes.as_ref())?;
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let failure = match send(&args, &body, &key).await {
        Outcome::Accepted(text) => {
            println!("{text}");
            return match unknown {
                Some(why) if args.strict => Err(why),
                _ => Ok(()),
            };
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
