//! The deployment files: checked offline (compose, Dockerfile, Kubernetes
//! rendered with kustomize and validated against the schemas, alert rules
//! through promtool, dashboard and alert metric names against the exports),
//! the dashboard's deployment annotations run against a migrated Postgres,
//! and the GitHub composite action run against a real ingest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{read_topic, Tenant, TestDb, TestTopic};

use crate::stack::Ingest;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn every_deployment_file_passes_its_offline_checks() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vibemon"))
        .parent()
        .unwrap()
        .to_owned();
    let out = tokio::process::Command::new("bash")
        .arg(root().join("deploy/check-manifests"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .output()
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("all deployment files pass their checks"),
        "{stdout}"
    );
}

/// The composite action's `run:` script, with its `env:` as GitHub would set it.
fn action_script() -> String {
    let text = std::fs::read_to_string(root().join("deploy/github-action/action.yml")).unwrap();
    let start = text.find("      run: |\n").unwrap() + "      run: |\n".len();
    text[start..]
        .lines()
        .map(|l| l.strip_prefix("        ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn run_action(url: &str, key: &str, environment: &str, strict: &str) -> std::process::Output {
    run_action_for(url, key, environment, "acme/payments-api", strict).await
}

/// The action as one step of run 7312456789 (attempt 1, job `deploy`) runs it.
async fn run_action_for(
    url: &str,
    key: &str,
    environment: &str,
    repository: &str,
    strict: &str,
) -> std::process::Output {
    tokio::process::Command::new("bash")
        .arg("-c")
        .arg(action_script())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs([
            ("VM_API_URL", url),
            ("VM_WORKSPACE_KEY", key),
            ("VM_ENVIRONMENT", environment),
            ("VM_REPOSITORY", repository),
            ("VM_BRANCH", "main"),
            ("VM_COMMIT_SHA", "9fceb02d0ae598e95dc970b74767f19372d61af8"),
            ("VM_STATUS", "success"),
            ("VM_EXTERNAL_ID", "7312456789-1"),
            ("VM_TIMEOUT", "4"),
            ("VM_STRICT", strict),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_action_reports_once_and_only_fails_the_workflow_when_strict() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let t = Tenant::create(&db.pool, "GitHub Actions").await;
    let ingest = Ingest::spawn(&db.url, KafkaArgs::local(&topic.brokers, &topic.name)).await;
    let url = format!("http://{}", ingest.addr);

    let first = run_action(&url, &t.key, "production", "false").await;
    let rerun = run_action(&url, &t.key, "production", "false").await;
    let refused = run_action(&url, &t.key, "Production", "false").await;
    let refused_strict = run_action(&url, &t.key, "Production", "true").await;

    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("Reported deployment"));
    assert!(rerun.status.success());
    assert_eq!(
        refused.status.code(),
        Some(0),
        "never fails the workflow by default"
    );
    assert!(String::from_utf8_lossy(&refused.stdout).contains("HTTP 404"));
    assert_eq!(refused_strict.status.code(), Some(1));
    let events = read_topic(&topic.brokers, &topic.name, 3, Duration::from_secs(3)).await;
    assert_eq!(
        events.len(),
        1,
        "the same Idempotency-Key on a re-run is recorded once"
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_workflow_run_reporting_two_repositories_records_both_and_a_rerun_of_either_once() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let t = Tenant::create(&db.pool, "GitHub Actions").await;
    let ingest = Ingest::spawn(&db.url, KafkaArgs::local(&topic.brokers, &topic.name)).await;
    let url = format!("http://{}", ingest.addr);

    let api = run_action_for(&url, &t.key, "production", "acme/payments-api", "true").await;
    let web = run_action_for(&url, &t.key, "production", "acme/payments-web", "true").await;
    let api_again = run_action_for(&url, &t.key, "production", "acme/payments-api", "true").await;

    for out in [&api, &web, &api_again] {
        assert!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("Reported deployment"),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        api.stdout, api_again.stdout,
        "the retried step is answered with the same deployment"
    );
    let events = read_topic(&topic.brokers, &topic.name, 3, Duration::from_secs(3)).await;
    assert_eq!(
        events.len(),
        2,
        "one event per repository, none for the retry"
    );
    ingest.stop().await;
}

/// The dashboard as JSON.
fn dashboard() -> serde_json::Value {
    let path = root().join("deploy/monitoring/grafana-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `sql` with Grafana's macros replaced as its Postgres data source replaces
/// them: `$__timeFilter(c)` by `c BETWEEN from AND to`, and the multi-value
/// `$environment` by a quoted list (`'production','staging'`).
fn grafana_sql(sql: &str, from: &str, to: &str, environments: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("$__timeFilter(") {
        let args = &rest[at + "$__timeFilter(".len()..];
        let close = args.find(')').expect("the end of $__timeFilter(");
        out.push_str(&rest[..at]);
        out.push_str(&format!(
            "{} BETWEEN '{from}'::timestamptz AND '{to}'::timestamptz",
            &args[..close]
        ));
        rest = &args[close + 1..];
    }
    out.push_str(rest);
    let list = environments
        .iter()
        .map(|e| format!("'{e}'"))
        .collect::<Vec<_>>()
        .join(",");
    let out = out
        .replace("${environment}", &list)
        .replace("$environment", &list);
    assert!(!out.contains('$'), "a macro the test does not know: {out}");
    out
}

/// What one annotation query shows: (text, tags) per row, in time order.
async fn annotations(pool: &sqlx::PgPool, sql: &str) -> Vec<(String, String)> {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"))
        .iter()
        .map(|row| {
            let _: chrono::DateTime<chrono::Utc> = row.get("time");
            (row.get("text"), row.get("tags"))
        })
        .collect()
}

#[tokio::test]
async fn the_dashboard_annotates_deployments_from_postgres_and_failed_or_rolled_back_ones_apart() {
    use vibemon_projector::batch::Located;
    use vibemon_schemas::{CommitSha, DeploymentStatus};
    use vibemon_testkit::events::{at, World};
    // Arrange: a read model where production saw an old deployment (before
    // the range), A, B, a rollback to A, and a failure.
    let dash = dashboard();
    let vars = dash["templating"]["list"].as_array().unwrap();
    let postgres = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "grafana-postgresql-datasource")
        .expect("a templated Postgres data source");
    let list = dash["annotations"]["list"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    for a in list {
        assert_eq!(a["datasource"]["type"], "grafana-postgresql-datasource");
        assert_eq!(
            a["datasource"]["uid"],
            format!("${{{}}}", postgres["name"].as_str().unwrap())
        );
        assert_eq!(a["enable"], true);
    }
    assert_ne!(list[0]["iconColor"], list[1]["iconColor"]);
    let db = TestDb::new().await;
    let t = Tenant::create(&db.pool, "dashboard").await;
    let w = World {
        workspace_id: t.workspace_id,
        environment_id: t.environment_id,
        key_id: t.key_id,
    };
    let sha = |c: char| CommitSha::parse(c.to_string().repeat(40)).unwrap();
    let history = [
        ("2024-01-01T10:00:00Z", 'e', DeploymentStatus::Success),
        ("2024-01-15T10:00:00Z", 'a', DeploymentStatus::Success),
        ("2024-01-15T11:00:00Z", 'b', DeploymentStatus::Success),
        ("2024-01-15T12:00:00Z", 'a', DeploymentStatus::Success),
        ("2024-01-15T13:00:00Z", 'c', DeploymentStatus::Failed),
    ];
    let events: Vec<Located> = history
        .iter()
        .enumerate()
        .map(|(i, (when, c, status))| {
            let mut e = w.report("acme/api", at(when));
            e.commit_sha = Some(sha(*c));
            e.status = *status;
            Located::new(e, "t", 0, i as i64)
        })
        .collect();
    vibemon_projector::writer::write_batch(&db.pool, "g", &events, &Default::default())
        .await
        .unwrap();
    let (from, to) = ("2024-01-15T00:00:00Z", "2024-01-16T00:00:00Z");

    // Act
    let environment = vars.iter().find(|v| v["name"] == "environment").unwrap();
    let names: Vec<(String,)> = sqlx::query_as(environment["query"].as_str().unwrap())
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let mut shown = Vec::new();
    let mut elsewhere = Vec::new();
    for a in list {
        let sql = a["target"]["rawSql"]
            .as_str()
            .expect("a raw SQL annotation");
        shown.push(annotations(&db.pool, &grafana_sql(sql, from, to, &["production"])).await);
        elsewhere.push(annotations(&db.pool, &grafana_sql(sql, from, to, &["staging"])).await);
    }

    // Assert
    assert_eq!(names, [("production".to_owned(),)]);
    let tags = "production,acme/api,success";
    assert_eq!(
        shown[0],
        [
            (
                "production acme/api aaaaaaa success".to_owned(),
                tags.to_owned()
            ),
            (
                "production acme/api aaaaaaa success, a rollback to aaaaaaa".to_owned(),
                tags.to_owned()
            ),
        ],
        "{}",
        list[0]["name"]
    );
    assert_eq!(
        shown[1],
        [
            (
                "production acme/api bbbbbbb success, rolled back by aaaaaaa".to_owned(),
                format!("{tags},rolled back")
            ),
            (
                "production acme/api ccccccc failed".to_owned(),
                "production,acme/api,failed".to_owned()
            ),
        ],
        "{}",
        list[1]["name"]
    );
    assert!(elsewhere.iter().all(Vec::is_empty), "{elsewhere:?}");
}
