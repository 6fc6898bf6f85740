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
//! checkout's history since then (see `git.rs`), and `commit_sha` defaults
//! to the checkout's HEAD. Failing to work that out sends the report without
//! them, with a note on stderr; --strict concerns delivery only. A 422 for a
//! body with them is answered by sending the report once more without them.
//! --timeout-secs bounds the delivery (all its retries, each of them in
//! full); the read API is asked for at most 5 s of it and git runs before,
//! each git process bounded by `git::GIT_TIMEOUT`.

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
#[derive(Default)]
struct Changes {
    /// The reported commit, resolved in the checkout (when it is one).
    head: Option<String>,
    /// What the read API says runs there now for this repository.
    previous: Option<String>,
    commits: Vec<Commit>,
}

impl Changes {
    fn says_what_changed(&self) -> bool {
        self.previous.is_some() || !self.commits.is_empty()
    }
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

/// `commit_sha` defaults to the checkout's HEAD whenever there is one.
fn add_changes(body: &mut Map<String, Value>, changes: &Changes) {
    if let Some(head) = &changes.head {
        body.entry("commit_sha")
            .or_insert_with(|| Value::from(head.clone()));
    }
    if let Some(previous) = &changes.previous {
        body.insert("previous_commit_sha".into(), Value::from(previous.clone()));
    }
    if !changes.commits.is_empty() {
        let commits = changes.commits.iter().map(Commit::to_json).collect();
        body.insert("commits".into(), Value::Array(commits));
    }
}

/// What changed, as far as it can be worked out; every gap is a note on
/// stderr, never an error: the report goes out regardless (and `--strict`
/// concerns its delivery only). HEAD is resolved whatever the read API says,
/// so `commit_sha` is sent from any work tree.
async fn what_changed(args: &ReportArgs) -> Changes {
    let mut changes = Changes::default();
    if args.no_commits {
        return changes;
    }
    let path = args.repo_path.as_deref().unwrap_or(Path::new("."));
    let repo = match Repo::open(path) {
        Ok(repo) => repo,
        Err(why) => {
            let hint = if args.repo_path.is_none() {
                " (use --repo-path to point at the checkout)"
            } else {
                ""
            };
            eprintln!("report: {why}; sending no commits{hint}");
            return changes;
        }
    };
    let rev = args.commit_sha.as_deref().unwrap_or("HEAD");
    let head = match repo.resolve(rev) {
        Ok(head) => head,
        Err(_) => {
            eprintln!(
                "report: {rev} is not a commit of {}; sending no commits",
                path.display()
            );
            return changes;
        }
    };
    changes.head = Some(head.clone());
    let previous = match deployed_commit(args).await {
        Ok(previous) => previous,
        Err(why) => {
            eprintln!("report: {why}; sending no commits");
            return changes;
        }
    };
    let range_previous = previous.clone();
    let range = tokio::task::spawn_blocking(move || repo.range(&head, range_previous.as_deref()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    match range {
        Ok(range) => {
            if let Some(note) = &range.note {
                eprintln!("report: {note}");
            }
            changes.previous = previous;
            changes.commits = range.commits;
        }
        Err(why) => {
            eprintln!("report: cannot read what changed from git: {why}; sending no commits")
        }
    }
    changes
}

/// The commit of `--repository` that the read API says runs in
/// `--environment` now; `None` when nothing (with a commit) is deployed there.
async fn deployed_commit(args: &ReportArgs) -> Result<Option<String>, String> {
    let unavailable = |why: String| format!("cannot ask the read API what is deployed: {why}");
    let mut url = reqwest::Url::parse(args.url.trim_end_matches('/'))
        .map_err(|e| format!("--url {:?}: {e}", args.url))?;
    url.path_segments_mut()
        .map_err(|()| format!("--url {:?} cannot take a path", args.url))?
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
    if status == reqwest::StatusCode::FORBIDDEN {
        return Err(
            "the key lacks the read scope, so what is deployed cannot be asked and \
                    the previous commit is unknown; a key made with \
                    `vibemon key create --scope ingest,read` gives commit ranges"
                .to_owned(),
        );
    }
    if !status.is_success() {
        return Err(unavailable(format!("HTTP {}: {text}", status.as_u16())));
    }
    let answer: Value = serde_json::from_str(&text)
        .map_err(|e| unavailable(format!("unexpected answer {text:?}: {e}")))?;
    match running_commit(&answer, &args.repository) {
        Some(sha) if is_full_sha(&sha) => Ok(Some(sha)),
        Some(sha) => Err(unavailable(format!(
            "its commit_sha {sha:?} is not 40 hex digits"
        ))),
        None => Ok(None),
    }
}

fn is_full_sha(sha: &str) -> bool {
    sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())
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
    let changes = what_changed(&args).await;
    let key = args
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut outcome = send(&args, &body(&args, Some(&changes))?, &key).await;
    if matches!(outcome, Outcome::Refused(422, _)) && changes.says_what_changed() {
        // A 422 refuses the whole report: what changed must not cost it.
        // Nothing was recorded, so the same key is free for the plain body.
        eprintln!(
            "report: ingest refused the report with commits/previous_commit_sha (HTTP 422); sending it again without them"
        );
        let plain = Changes {
            head: changes.head.clone(),
            ..Changes::default()
        };
        outcome = send(&args, &body(&args, Some(&plain))?, &key).await;
    }
    let failure = match outcome {
        Outcome::Accepted(text) => {
            crate::output::line(&text);
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
