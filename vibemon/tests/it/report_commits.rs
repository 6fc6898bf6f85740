//! `vibemon report` saying what changed, from real git repositories: an
//! origin with N commits in a temp dir and a `--depth 1` clone of it, as CI
//! checks out. The read API is either a small recording stand-in (the git
//! logic, runnable against today's ingest) or the real ingest over a read
//! model holding the previous deployment (end to end: these need ingest to
//! accept `commits` and `previous_commit_sha`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use serde_json::{json, Value};
use vibemon_projector::batch::Located;
use vibemon_runtime::KafkaArgs;
use vibemon_schemas::CommitSha;
use vibemon_testkit::events::{at, World};
use vibemon_testkit::{read_topic, Tenant, TestDb, TestTopic};

use crate::stack::Ingest;

/// A temp directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("vibemon-git-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An origin repository with `n` commits and a shallow (`--depth 1`) clone.
struct Checkout {
    _tmp: TempDir,
    clone: PathBuf,
    /// The origin's commits, oldest first.
    shas: Vec<String>,
}

impl Checkout {
    fn new(n: usize) -> Self {
        Self::with_subjects(n, "change")
    }

    /// Subjects `"{prefix} {i}"`: two origins with other prefixes share no commit.
    fn with_subjects(n: usize, prefix: &str) -> Self {
        let tmp = TempDir::new();
        let origin = tmp.0.join("origin");
        std::fs::create_dir_all(&origin).unwrap();
        git(&origin, &["init", "-q", "-b", "main"]);
        git(&origin, &["config", "user.name", "Ada Lovelace"]);
        git(&origin, &["config", "user.email", "ada@example.com"]);
        let shas = (0..n)
            .map(|i| {
                let msg = format!("{prefix} {i}");
                git(&origin, &["commit", "-q", "--allow-empty", "-m", &msg]);
                git(&origin, &["rev-parse", "HEAD"])
            })
            .collect();
        let clone = tmp.0.join("clone");
        let url = format!("file://{}", origin.display());
        git(
            &tmp.0,
            &["clone", "-q", "--depth", "1", &url, clone.to_str().unwrap()],
        );
        Self {
            _tmp: tmp,
            clone,
            shas,
        }
    }

    fn is_shallow(&self) -> bool {
        git(&self.clone, &["rev-parse", "--is-shallow-repository"]) == "true"
    }

    /// `shas[from..]`, newest first: what a report should send.
    fn newest_first(&self, from: usize) -> Vec<String> {
        self.shas[from..].iter().rev().cloned().collect()
    }
}

/// A stand-in for ingest: answers `.../deployed` with `previous` (or a
/// status) and records every webhook body.
struct FakeApi {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    reads: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Fake {
    deployed: Result<Option<String>, u16>,
    /// Answer 422 to a body with `commits`, as ingest before issue #15 does.
    refuse_commits: bool,
    bodies: Arc<Mutex<Vec<Value>>>,
    reads: Arc<Mutex<Vec<String>>>,
}

async fn deployed(State(f): State<Fake>, uri: axum::http::Uri) -> Result<Json<Value>, StatusCode> {
    f.reads.lock().unwrap().push(uri.to_string());
    let previous = f
        .deployed
        .map_err(|code| StatusCode::from_u16(code).unwrap())?;
    let running: Vec<Value> = previous
        .into_iter()
        .map(|sha| json!({"repo_full_name": "acme/api", "commit_sha": sha}))
        .collect();
    Ok(Json(
        json!({"environment": "production", "deployed": running}),
    ))
}

async fn webhook(State(f): State<Fake>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let refuse = f.refuse_commits && body.get("commits").is_some();
    f.bodies.lock().unwrap().push(body);
    if refuse {
        let detail = json!({"detail": [{"loc": ["body", "commits"], "msg": "extra field"}]});
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(detail));
    }
    (StatusCode::CREATED, Json(json!({"id": "d-1"})))
}

impl FakeApi {
    async fn spawn(deployed_now: Result<Option<String>, u16>) -> Self {
        Self::spawn_with(deployed_now, false).await
    }

    async fn spawn_with(deployed_now: Result<Option<String>, u16>, refuse_commits: bool) -> Self {
        let fake = Fake {
            deployed: deployed_now,
            refuse_commits,
            bodies: Arc::default(),
            reads: Arc::default(),
        };
        let (bodies, reads) = (fake.bodies.clone(), fake.reads.clone());
        let app = axum::Router::new()
            .route("/api/v1/environments/{name}/deployed", get(deployed))
            .route("/api/v1/deployments/webhook", post(webhook))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, bodies, reads }
    }

    fn body(&self) -> Value {
        let bodies = self.bodies.lock().unwrap();
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        bodies[0].clone()
    }
}

/// `vibemon report` run inside `dir`, as a CI step runs it in its checkout.
async fn report_in(dir: &Path, url: &str, key: &str, more: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
        .current_dir(dir)
        .args([
            "report",
            "--url",
            url,
            "--key",
            key,
            "--environment",
            "production",
            "--repository",
            "acme/api",
            "--timeout-secs",
            "10",
        ])
        .args(more)
        .output()
        .await
        .unwrap()
}

const FAKE_KEY: &str = "vmk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shas(body: &Value) -> Vec<String> {
    body["commits"]
        .as_array()
        .unwrap_or_else(|| panic!("no commits in {body}"))
        .iter()
        .map(|c| c["sha"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_shallow_clone_is_deepened_until_the_deployed_commit_and_only_newer_commits_are_sent() {
    let co = Checkout::new(8);
    let api = FakeApi::spawn(Ok(Some(co.shas[2].clone()))).await;
    assert!(co.is_shallow());

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    let body = api.body();
    assert_eq!(shas(&body), co.newest_first(3));
    assert_eq!(body["previous_commit_sha"], co.shas[2]);
    assert_eq!(
        body["commit_sha"], co.shas[7],
        "commit_sha defaults to HEAD"
    );
    let newest = &body["commits"][0];
    assert_eq!(newest["subject"], "change 7");
    assert_eq!(newest["author"], "Ada Lovelace");
    assert!(chrono::DateTime::parse_from_rfc3339(newest["committed_at"].as_str().unwrap()).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(newest["authored_at"].as_str().unwrap()).is_ok());
    let reads = api.reads.lock().unwrap().clone();
    assert_eq!(
        reads,
        ["/api/v1/environments/production/deployed?repository=acme%2Fapi"]
    );
}

#[tokio::test]
async fn a_first_deployment_sends_only_head_and_says_so() {
    let co = Checkout::new(5);
    let api = FakeApi::spawn(Ok(None)).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    let body = api.body();
    assert_eq!(shas(&body), co.newest_first(4));
    assert!(body.get("previous_commit_sha").is_none());
    assert!(
        stderr(&o).contains("nothing is deployed there yet"),
        "{}",
        stderr(&o)
    );
    assert!(co.is_shallow(), "nothing to look for, nothing fetched");
}

#[tokio::test]
async fn a_redeploy_of_the_deployed_commit_sends_head_alone_without_a_note() {
    let co = Checkout::new(3);
    let api = FakeApi::spawn(Ok(Some(co.shas[2].clone()))).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    let body = api.body();
    assert_eq!(shas(&body), co.newest_first(2));
    assert_eq!(body["previous_commit_sha"], co.shas[2]);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[tokio::test]
async fn a_deployed_commit_from_another_history_sends_only_head_and_says_so() {
    let co = Checkout::new(4);
    let elsewhere = Checkout::with_subjects(1, "elsewhere");
    let api = FakeApi::spawn(Ok(Some(elsewhere.shas[0].clone()))).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    let body = api.body();
    assert_eq!(shas(&body), co.newest_first(3));
    assert_eq!(body["previous_commit_sha"], elsewhere.shas[0]);
    assert!(
        stderr(&o).contains("is not in this clone's history"),
        "{}",
        stderr(&o)
    );
    assert!(!co.is_shallow(), "the clone was deepened to the end first");
}

#[tokio::test]
async fn more_than_100_commits_since_the_deployed_one_send_the_newest_100_and_say_so() {
    let co = Checkout::new(112);
    let api = FakeApi::spawn(Ok(Some(co.shas[1].clone()))).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    let body = api.body();
    assert_eq!(shas(&body), co.newest_first(12));
    assert!(
        stderr(&o).contains("sending the newest 100"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn when_the_read_api_fails_the_report_goes_out_with_head_but_without_commits_even_strict() {
    let co = Checkout::new(3);
    let api = FakeApi::spawn(Err(503)).await;

    let lenient = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;
    let strict = report_in(&co.clone, &api.url, FAKE_KEY, &["--strict"]).await;

    assert_eq!(lenient.status.code(), Some(0), "{}", stderr(&lenient));
    assert!(
        stderr(&lenient).contains("sending no commits"),
        "{}",
        stderr(&lenient)
    );
    assert_eq!(
        strict.status.code(),
        Some(0),
        "--strict concerns delivery only: {}",
        stderr(&strict)
    );
    let bodies = api.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "both reports were still sent");
    for body in bodies {
        assert!(body.get("commits").is_none() && body.get("previous_commit_sha").is_none());
        assert_eq!(
            body["commit_sha"], co.shas[2],
            "HEAD is sent whatever the read API said"
        );
    }
}

#[tokio::test]
async fn a_422_for_a_body_with_commits_is_followed_by_the_report_without_them() {
    let co = Checkout::new(4);
    let api = FakeApi::spawn_with(Ok(Some(co.shas[1].clone())), true).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &["--strict"]).await;

    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("sending it again without them"),
        "{}",
        stderr(&o)
    );
    let bodies = api.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(shas(&bodies[0]), co.newest_first(2));
    assert!(bodies[1].get("commits").is_none());
    assert!(bodies[1].get("previous_commit_sha").is_none());
    assert_eq!(bodies[1]["commit_sha"], co.shas[3]);
}

#[tokio::test]
async fn a_read_api_commit_that_is_not_40_hex_is_never_used() {
    let co = Checkout::new(3);
    let api = FakeApi::spawn(Ok(Some("--upload-pack=touch pwned".into()))).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not 40 hex digits"),
        "{}",
        stderr(&o)
    );
    let body = api.body();
    assert!(body.get("previous_commit_sha").is_none() && body.get("commits").is_none());
    assert_eq!(body["commit_sha"], co.shas[2]);
    assert!(co.is_shallow(), "nothing was fetched");
}

#[tokio::test]
async fn a_subject_with_record_separator_bytes_is_one_commit_cut_to_100_characters() {
    let co = Checkout::new(2);
    let origin = co.clone.parent().unwrap().join("origin");
    let subject = format!("odd\u{1e}one\u{1f}out {}", "y".repeat(200));
    git(&origin, &["commit", "-q", "--allow-empty", "-m", &subject]);
    let tip = git(&origin, &["rev-parse", "HEAD"]);
    git(&co.clone, &["pull", "-q", "--ff-only"]);
    let api = FakeApi::spawn(Ok(Some(co.shas[0].clone()))).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    let body = api.body();
    assert_eq!(shas(&body), [tip, co.shas[1].clone()]);
    let sent = body["commits"][0]["subject"].as_str().unwrap();
    assert!(sent.starts_with("oddoneout yyy"), "{sent:?}");
    assert_eq!(sent.chars().count(), 100);
}

#[tokio::test]
async fn a_failed_fetch_sends_only_head_and_says_why() {
    let co = Checkout::new(4);
    git(
        &co.clone,
        &["remote", "set-url", "origin", "file:///nonexistent/vibemon"],
    );
    let api = FakeApi::spawn(Ok(Some(co.shas[1].clone()))).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &["--strict"]).await;

    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let body = api.body();
    assert_eq!(shas(&body), co.newest_first(3));
    assert_eq!(body["previous_commit_sha"], co.shas[1]);
    assert!(
        stderr(&o).contains("cannot deepen this shallow clone"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn a_rollback_to_an_older_commit_sends_only_head_and_says_so() {
    let co = Checkout::new(4);
    git(&co.clone, &["fetch", "-q", "--unshallow"]);
    git(&co.clone, &["checkout", "-q", &co.shas[1]]);
    let api = FakeApi::spawn(Ok(Some(co.shas[3].clone()))).await;

    let o = report_in(&co.clone, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(shas(&api.body()), [co.shas[1].clone()]);
    assert!(stderr(&o).contains("(a rollback)"), "{}", stderr(&o));
}

/// main: m0..m9 (m9 deployed), then 3 more; a feature branch forked at m1
/// with 70 commits, merged last: `--deepen=50` finds m9 but not the whole
/// feature. Returns the checkout (keeping the temp dir), a `--depth 1` clone
/// of the merge, the deployed commit and the full clone's `git log m9..HEAD`.
fn merged_feature() -> (Checkout, PathBuf, String, Vec<String>) {
    let co = Checkout::new(10);
    let origin = co.clone.parent().unwrap().join("origin");
    let deployed = co.shas[9].clone();
    git(&origin, &["checkout", "-q", "-b", "feature", &co.shas[1]]);
    for i in 0..70 {
        git(
            &origin,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("feature {i}"),
            ],
        );
    }
    git(&origin, &["checkout", "-q", "main"]);
    for i in 10..13 {
        git(
            &origin,
            &[
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                &format!("change {i}"),
            ],
        );
    }
    git(
        &origin,
        &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"],
    );
    let full = co.clone.parent().unwrap().join("full");
    let shallow = co.clone.parent().unwrap().join("shallow");
    let url = format!("file://{}", origin.display());
    git(&origin, &["clone", "-q", &url, full.to_str().unwrap()]);
    git(
        &origin,
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            &url,
            shallow.to_str().unwrap(),
        ],
    );
    let mut expected: Vec<String> =
        git(&full, &["log", "--format=%H", &format!("{deployed}..HEAD")])
            .lines()
            .map(str::to_owned)
            .collect();
    assert_eq!(expected.len(), 74);
    expected.sort();
    (co, shallow, deployed, expected)
}

fn sorted(mut shas: Vec<String>) -> Vec<String> {
    shas.sort();
    shas
}

#[tokio::test]
async fn a_merge_of_a_branch_forked_long_before_the_deployed_commit_sends_the_whole_range() {
    let (_co, shallow, deployed, expected) = merged_feature();
    let api = FakeApi::spawn(Ok(Some(deployed))).await;

    let o = report_in(&shallow, &api.url, FAKE_KEY, &[]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sorted(shas(&api.body())), expected, "{}", stderr(&o));
}

/// Ingest over a read model where `acme/api` at `deployed` runs in
/// production, and a topic to read what the report became.
async fn real_ingest(deployed: Option<&str>) -> (TestDb, TestTopic, Tenant, Ingest) {
    real_ingest_at(deployed, 2).await
}

/// [`real_ingest`] writing events up to `max_event_version`.
async fn real_ingest_at(
    deployed: Option<&str>,
    max_event_version: u8,
) -> (TestDb, TestTopic, Tenant, Ingest) {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let t = Tenant::create(&db.pool, "ci").await;
    if let Some(sha) = deployed {
        let w = World {
            workspace_id: t.workspace_id,
            environment_id: t.environment_id,
            key_id: t.key_id,
        };
        let mut e = w.report("acme/api", at("2024-01-15T10:00:00Z"));
        e.commit_sha = Some(CommitSha::parse(sha).unwrap());
        let l = Located::new(e, "t", 0, 0);
        vibemon_projector::writer::write_batch(&db.pool, "g", &[l], &BTreeMap::new())
            .await
            .unwrap();
    }
    let mut config =
        vibemon_ingest::config::Config::new(&db.url, KafkaArgs::local(&topic.brokers, &topic.name));
    config.max_event_version = max_event_version;
    let ingest = Ingest::spawn_with(config).await;
    (db, topic, t, ingest)
}

async fn recorded(topic: &TestTopic) -> Vec<Value> {
    read_topic(&topic.brokers, &topic.name, 2, Duration::from_secs(3))
        .await
        .iter()
        .map(|r| serde_json::from_slice(r.payload.as_deref().unwrap()).unwrap())
        .collect()
}

/// The composite action's `run:` script, as `deploy_files.rs` runs it.
fn action_script() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/github-action/action.yml");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("      run: |\n").unwrap() + "      run: |\n".len();
    text[start..]
        .lines()
        .map(|l| l.strip_prefix("        ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a bash script in the clone with the variables both shell reporters read.
async fn bash_in(co: &Checkout, script: &str, url: &str) -> Output {
    bash_at(&co.clone, co.shas.last().unwrap(), script, url).await
}

/// Runs a bash script in `dir`, reporting `head`.
async fn bash_at(dir: &Path, head: &str, script: &str, url: &str) -> Output {
    bash_with_key(dir, head, script, url, FAKE_KEY).await
}

/// [`bash_at`] with a real workspace key.
async fn bash_with_key(dir: &Path, head: &str, script: &str, url: &str, key: &str) -> Output {
    tokio::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs([
            ("VM_API_URL", url),
            ("VM_WORKSPACE_KEY", key),
            ("VM_ENVIRONMENT", "production"),
            ("ENVIRONMENT", "production"),
            ("VM_REPOSITORY", "acme/api"),
            ("REPOSITORY", "acme/api"),
            ("VM_BRANCH", "main"),
            ("VM_COMMIT_SHA", head),
            ("COMMIT_SHA", head),
            ("VM_STATUS", "success"),
            ("VM_EXTERNAL_ID", "7312456789-1"),
            ("VM_TIMEOUT", "4"),
            ("VM_STRICT", "true"),
            ("VM_RUN_ID", "7312456789"),
            ("VM_RUN_ATTEMPT", "1"),
            ("VM_ACTOR", "octocat"),
            ("VM_JOB", "deploy"),
            ("VM_STEP", "report-deployment"),
            ("VM_IDEMPOTENCY_KEY", ""),
        ])
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_github_action_and_the_shell_example_send_the_same_commits_as_vibemon_report() {
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/report-deployment.sh");
    let example = std::fs::read_to_string(example).unwrap();
    for (name, script) in [("action", action_script()), ("example", example)] {
        let co = Checkout::new(8);
        let api = FakeApi::spawn(Ok(Some(co.shas[2].clone()))).await;

        let o = bash_in(&co, &script, &api.url).await;

        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let body = api.body();
        assert_eq!(shas(&body), co.newest_first(3), "{name}");
        assert_eq!(body["previous_commit_sha"], co.shas[2], "{name}");
        assert_eq!(body["commits"][0]["subject"], "change 7", "{name}");
        assert_eq!(body["commits"][0]["author"], "Ada Lovelace", "{name}");
    }
}

#[tokio::test]
async fn the_github_action_sends_only_head_when_the_deployed_commit_is_from_another_history() {
    let co = Checkout::new(4);
    let elsewhere = Checkout::with_subjects(1, "elsewhere");
    let api = FakeApi::spawn(Ok(Some(elsewhere.shas[0].clone()))).await;

    let o = bash_in(&co, &action_script(), &api.url).await;

    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(shas(&api.body()), co.newest_first(3));
    assert!(
        stderr(&o).contains("is not in this clone's history"),
        "{}",
        stderr(&o)
    );
}

fn example_script() -> String {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/report-deployment.sh");
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn the_shell_reporters_send_the_whole_range_of_a_merge_and_parse_odd_subjects() {
    for (name, script) in [("action", action_script()), ("example", example_script())] {
        let (_co, shallow, deployed, expected) = merged_feature();
        let api = FakeApi::spawn(Ok(Some(deployed))).await;
        let head = git(&shallow, &["rev-parse", "HEAD"]);

        let o = bash_at(&shallow, &head, &script, &api.url).await;

        assert!(o.status.success(), "{name}: {}", stderr(&o));
        assert_eq!(
            sorted(shas(&api.body())),
            expected,
            "{name}: {}",
            stderr(&o)
        );

        let co = Checkout::new(2);
        let origin = co.clone.parent().unwrap().join("origin");
        let subject = format!("odd\u{1e}one\u{1f}out {}", "y".repeat(200));
        git(&origin, &["commit", "-q", "--allow-empty", "-m", &subject]);
        let tip = git(&origin, &["rev-parse", "HEAD"]);
        git(&co.clone, &["pull", "-q", "--ff-only"]);
        let api = FakeApi::spawn(Ok(Some(co.shas[0].clone()))).await;

        let o = bash_at(&co.clone, &tip, &script, &api.url).await;

        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let body = api.body();
        assert_eq!(shas(&body), [tip, co.shas[1].clone()], "{name}");
        let sent = body["commits"][0]["subject"].as_str().unwrap();
        assert!(sent.starts_with("oddoneout yyy"), "{name}: {sent:?}");
        assert_eq!(sent.chars().count(), 100, "{name}");
    }
}

#[tokio::test]
async fn the_shell_reporters_send_the_report_again_without_commits_after_a_422() {
    for (name, script) in [("action", action_script()), ("example", example_script())] {
        let co = Checkout::new(4);
        let api = FakeApi::spawn_with(Ok(Some(co.shas[1].clone())), true).await;

        let o = bash_in(&co, &script, &api.url).await;

        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let bodies = api.bodies.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2, "{name}: {bodies:?}");
        assert_eq!(shas(&bodies[0]), co.newest_first(2), "{name}");
        assert!(
            bodies[1].get("commits").is_none() && bodies[1].get("previous_commit_sha").is_none(),
            "{name}: {:?}",
            bodies[1]
        );
        assert_eq!(bodies[1]["commit_sha"], co.shas[3], "{name}");
        let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert!(said.contains("without them"), "{name}: {said}");
    }
}

/// The lines from `# What changed (issue #15)` to the end of `vm_changes`,
/// unindented: the block the action and the shell example share.
fn what_changed_block(script: &str) -> String {
    let start = script
        .find("# What changed (issue #15)")
        .expect("the what-changed block");
    let rest = &script[start..];
    let changes = rest.find("vm_changes() {").expect("vm_changes");
    let end = changes
        + rest[changes..]
            .find("\n}\n")
            .expect("the end of vm_changes")
        + 2;
    rest[..end]
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_github_action_and_the_shell_example_share_one_what_changed_block_word_for_word() {
    let (action, example) = (action_script(), example_script());

    let (a, e) = (what_changed_block(&action), what_changed_block(&example));

    assert!(a.contains("vm_changes() {"), "{a}");
    assert_eq!(
        a, e,
        "copy the block between deploy/github-action/action.yml and deploy/examples/report-deployment.sh"
    );
}

/// A mid-upgrade ingest (`INGEST_MAX_EVENT_VERSION=1`) refuses `commits`
/// and `previous_commit_sha` with a 422: the example must still report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_example_reports_without_commits_to_an_ingest_that_refuses_them() {
    let co = Checkout::new(4);
    let (_db, topic, t, ingest) = real_ingest_at(Some(&co.shas[1]), 1).await;
    let url = format!("http://{}", ingest.addr);
    let head = co.shas.last().unwrap();

    let o = bash_with_key(&co.clone, head, &example_script(), &url, &t.key).await;

    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refused (HTTP 422)") && stderr(&o).contains("without them"),
        "{}",
        stderr(&o)
    );
    let answer: Value = serde_json::from_slice(&o.stdout).expect("the 201 answer on stdout");
    assert_eq!(answer["commit_sha"], *head);
    let events = recorded(&topic).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].get("commits").is_none(), "{:?}", events[0]);
    assert!(events[0].get("previous_commit_sha").is_none());
    assert_eq!(events[0]["commit_sha"], *head);
    ingest.stop().await;
}

// Needs ingest to accept `commits` and `previous_commit_sha` (issue #15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_from_a_shallow_clone_records_the_commits_since_what_is_deployed() {
    let co = Checkout::new(9);
    let (_db, topic, t, ingest) = real_ingest(Some(&co.shas[4])).await;
    let url = format!("http://{}", ingest.addr);

    let o = report_in(&co.clone, &url, &t.key, &["--strict"]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    let events = recorded(&topic).await;
    assert_eq!(events.len(), 1);
    assert_eq!(shas(&events[0]), co.newest_first(5));
    assert_eq!(events[0]["previous_commit_sha"], co.shas[4]);
    assert_eq!(events[0]["commit_sha"], co.shas[8]);
    ingest.stop().await;
}

// Needs ingest to accept `commits` (issue #15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_deployment_records_only_head() {
    let co = Checkout::new(4);
    let (_db, topic, t, ingest) = real_ingest(None).await;
    let url = format!("http://{}", ingest.addr);

    let o = report_in(&co.clone, &url, &t.key, &["--strict"]).await;

    assert!(o.status.success(), "{}", stderr(&o));
    let events = recorded(&topic).await;
    assert_eq!(events.len(), 1);
    assert_eq!(shas(&events[0]), co.newest_first(3));
    assert!(events[0]["previous_commit_sha"].is_null());
    ingest.stop().await;
}
