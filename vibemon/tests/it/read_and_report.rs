//! `vibemon deployments list|at`, `environment rename|delete`, and
//! `vibemon report` against a real ingest (and through a transient 503).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use vibemon_projector::batch::Located;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::events::{at, World};
use vibemon_testkit::{read_topic, Tenant, TestDb, TestTopic};

use crate::cli::{ok, stdout, vibemon};
use crate::stack::Ingest;

async fn project(pool: &sqlx::PgPool, events: &[vibemon_schemas::DeploymentReported]) {
    for (i, e) in events.iter().enumerate() {
        let l = Located::new(e.clone(), "t", 0, i as i64);
        vibemon_projector::writer::write_batch(pool, "g", &[l], &BTreeMap::new())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn deployments_list_and_at_answer_from_the_read_model() {
    let db = TestDb::new().await;
    let t = Tenant::create(&db.pool, "ci").await;
    let w = World {
        workspace_id: t.workspace_id,
        environment_id: t.environment_id,
        key_id: t.key_id,
    };
    let (old, new) = (
        w.report("acme/api", at("2024-01-15T10:00:00Z")),
        w.report("acme/api", at("2024-01-15T12:00:00Z")),
    );
    project(&db.pool, &[new.clone(), old.clone()]).await;
    let ws = t.workspace_id.to_string();

    let at_11 = ok(
        &db.url,
        &[
            "--json",
            "deployments",
            "at",
            "--workspace",
            &ws,
            "--environment",
            "production",
            "--at",
            "2024-01-15T12:00:00+01:00",
        ],
    );
    let list = ok(
        &db.url,
        &[
            "--json",
            "deployments",
            "list",
            "--workspace",
            &ws,
            "--limit",
            "1",
        ],
    );
    let table = ok(&db.url, &["deployments", "list", "--workspace", &ws]);

    let at_11: serde_json::Value = serde_json::from_str(&at_11).unwrap();
    assert_eq!(
        at_11["deployed"][0]["deployment_id"],
        old.deployment_id.to_string()
    );
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["items"][0]["id"], new.deployment_id.to_string());
    assert!(list["next_cursor"].is_string());
    assert!(table.contains("acme/api") && table.contains("DEPLOYED AT"));
    let missing = vibemon(
        &db.url,
        &[
            "deployments",
            "at",
            "--workspace",
            &ws,
            "--environment",
            "Production",
        ],
    );
    assert_eq!(missing.status.code(), Some(3));
}

#[tokio::test]
async fn deployments_takes_the_read_apis_timestamps_and_refuses_what_it_refuses() {
    let db = TestDb::new().await;
    let t = Tenant::create(&db.pool, "ci").await;
    let ws = t.workspace_id.to_string();
    // Without an offset the read API takes UTC; so does the CLI.
    let naive = vibemon(
        &db.url,
        &[
            "deployments",
            "list",
            "--workspace",
            &ws,
            "--since",
            "2024-01-15T10:30:00",
        ],
    );
    assert_eq!(
        naive.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&naive.stderr)
    );
    // Before 1970 the read API answers 422; the CLI exits 2 and says why.
    let early = vibemon(
        &db.url,
        &[
            "deployments",
            "at",
            "--workspace",
            &ws,
            "--environment",
            "production",
            "--at",
            "1969-12-31T23:59:59Z",
        ],
    );
    assert_eq!(early.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&early.stderr)
            .contains("--at 1969-12-31T23:59:59+00:00 is before 1970-01-01T00:00:00Z"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
}

#[tokio::test]
async fn environments_can_be_renamed_and_deleted_only_with_force_once_used() {
    let db = TestDb::new().await;
    let t = Tenant::create(&db.pool, "ci").await;
    let ws = t.workspace_id.to_string();
    ok(
        &db.url,
        &["environment", "create", "--workspace", &ws, "preview-1"],
    );
    let w = World {
        workspace_id: t.workspace_id,
        environment_id: t.environment_id,
        key_id: t.key_id,
    };
    project(
        &db.pool,
        &[w.report("acme/api", at("2024-01-15T10:00:00Z"))],
    )
    .await;

    ok(
        &db.url,
        &[
            "environment",
            "rename",
            "--workspace",
            &ws,
            "production",
            "prod",
        ],
    );
    ok(
        &db.url,
        &["environment", "delete", "--workspace", &ws, "preview-1"],
    );
    let refused = vibemon(
        &db.url,
        &["environment", "delete", "--workspace", &ws, "prod"],
    );
    ok(
        &db.url,
        &[
            "environment",
            "delete",
            "--workspace",
            &ws,
            "prod",
            "--force",
        ],
    );

    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    let left = ok(
        &db.url,
        &["--json", "environment", "list", "--workspace", &ws],
    );
    assert_eq!(left, "[]");
    let history: i64 = sqlx::query_scalar("SELECT count(*) FROM deployments")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(history, 1, "history is kept");
}

fn report_args<'a>(url: &'a str, key: &'a str) -> Vec<&'a str> {
    vec![
        "report",
        "--url",
        url,
        "--key",
        key,
        "--environment",
        "production",
        "--repository",
        "acme/api",
        "--commit-sha",
        "9fceb02d0ae598e95dc970b74767f19372d61af8",
        "--extra",
        "run=7",
        "--timeout-secs",
        "10",
    ]
}

/// Answers 503 to the first request, then forwards to the real ingest.
async fn flaky_front(
    target: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    #[derive(Clone)]
    struct S(
        std::net::SocketAddr,
        Arc<AtomicUsize>,
        Arc<std::sync::Mutex<Vec<String>>>,
    );
    async fn handle(
        State(s): State<S>,
        headers: HeaderMap,
        body: String,
    ) -> axum::response::Response {
        let n = s.1.fetch_add(1, Ordering::SeqCst);
        let idem = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        s.2.lock().unwrap().push(idem.clone());
        if n == 0 {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                r#"{"detail":"Kafka unavailable"}"#,
            )
                .into_response();
        }
        let resp = reqwest::Client::new()
            .post(format!("http://{}/api/v1/deployments/webhook", s.0))
            .header(
                "X-Workspace-Key",
                headers.get("x-workspace-key").unwrap().to_str().unwrap(),
            )
            .header("Idempotency-Key", idem)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        (status, resp.text().await.unwrap()).into_response()
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let keys = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/api/v1/deployments/webhook", axum::routing::post(handle))
        .with_state(S(target, calls.clone(), keys.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, calls, keys)
}

async fn run_vibemon(args: Vec<String>) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
        .args(args)
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_gets_through_a_transient_503_with_one_idempotency_key_and_one_event() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let t = Tenant::create(&db.pool, "ci").await;
    let ingest = Ingest::spawn(&db.url, KafkaArgs::local(&topic.brokers, &topic.name)).await;
    let (front, calls, keys) = flaky_front(ingest.addr).await;
    let url = format!("http://{front}");

    let o = run_vibemon(
        report_args(&url, &t.key)
            .into_iter()
            .map(String::from)
            .collect(),
    )
    .await;

    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let body: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(body["repo_full_name"], "acme/api");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one 503, one retry");
    let keys = keys.lock().unwrap().clone();
    assert!(
        !keys[0].is_empty() && keys[0] == keys[1],
        "the same Idempotency-Key on every attempt: {keys:?}"
    );
    let events = read_topic(
        &topic.brokers,
        &topic.name,
        2,
        std::time::Duration::from_secs(3),
    )
    .await;
    assert_eq!(events.len(), 1);
    ingest.stop().await;
}

#[tokio::test]
async fn report_exits_0_when_ingest_is_down_unless_strict() {
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let mut args: Vec<String> = report_args(
        &closed,
        "vmk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .into_iter()
    .map(String::from)
    .collect();
    let t = args.iter().position(|a| a == "10").unwrap();
    args[t] = "2".into();

    let lenient = run_vibemon(args.clone()).await;
    args.push("--strict".into());
    let strict = run_vibemon(args).await;

    assert_eq!(lenient.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&lenient.stderr).contains("not delivered"));
    assert_eq!(strict.status.code(), Some(5));
}

#[tokio::test]
async fn report_with_a_refused_body_is_final_and_strict_exits_2() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let t = Tenant::create(&db.pool, "ci").await;
    let ingest = Ingest::spawn(&db.url, KafkaArgs::local(&topic.brokers, &topic.name)).await;
    let url = format!("http://{}", ingest.addr);
    let mut args: Vec<String> = report_args(&url, &t.key)
        .into_iter()
        .map(String::from)
        .collect();
    let e = args.iter().position(|a| a == "production").unwrap();
    args[e] = "Production".into();
    args.push("--strict".into());

    let o = run_vibemon(args).await;

    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("404"));
    ingest.stop().await;
}

/// A git work tree with one commit, in a temp dir removed afterwards.
struct OneCommitRepo(std::path::PathBuf);

impl OneCommitRepo {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("vibemon-scope-git-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let git = |args: &[&str]| {
            let o = std::process::Command::new("git")
                .arg("-C")
                .arg(&dir)
                .args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .unwrap();
            assert!(o.status.success(), "git {args:?}: {o:?}");
        };
        git(&["init", "-q", "-b", "main"]);
        git(&["config", "user.name", "Ada Lovelace"]);
        git(&["config", "user.email", "ada@example.com"]);
        git(&["commit", "-q", "--allow-empty", "-m", "first"]);
        Self(dir)
    }
}

impl Drop for OneCommitRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_with_an_ingest_only_key_is_delivered_and_says_the_read_scope_would_give_commits() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let t = Tenant::create(&db.pool, "ci").await;
    let ws = t.workspace_id.to_string();
    // As a CI secret is made today: no --scope, so ingest only.
    let key = ok(
        &db.url,
        &["key", "create", "--workspace", &ws, "--name", "ci only"],
    );
    let ingest = Ingest::spawn(&db.url, KafkaArgs::local(&topic.brokers, &topic.name)).await;
    let repo = OneCommitRepo::new();
    let url = format!("http://{}", ingest.addr);

    let o = tokio::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
        .current_dir(&repo.0)
        .args([
            "report",
            "--strict",
            "--url",
            &url,
            "--key",
            &key,
            "--environment",
            "production",
            "--repository",
            "acme/api",
            "--timeout-secs",
            "10",
        ])
        .output()
        .await
        .unwrap();

    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let body: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(body["repo_full_name"], "acme/api", "the 201 body");
    assert!(
        err.contains("lacks the read scope") && err.contains("--scope ingest,read"),
        "no note about the read scope: {err}"
    );
    let events = read_topic(
        &topic.brokers,
        &topic.name,
        2,
        std::time::Duration::from_secs(3),
    )
    .await;
    assert_eq!(events.len(), 1, "delivered once");
    ingest.stop().await;
}
