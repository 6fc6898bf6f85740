//! The deployment files: checked offline (compose, Dockerfile, Kubernetes
//! rendered with kustomize and validated against the schemas, alert rules
//! through promtool, dashboard and alert metric names against the exports),
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
