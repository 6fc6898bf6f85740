//! Every CI example of the seed contract, run as its CI system would run it.
//!
//! The examples live verbatim in `deploy/examples/`. Each test extracts the
//! request from its file, fills in realistic values of that CI system's
//! variables, runs it (with bash or sh and curl, or as the HTTP request the
//! Jenkins plugin sends), and checks the 201 and the event on the topic. So
//! the examples can never rot.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::TestApp;

const SHA: &str = "9fceb02d0ae598e95dc970b74767f19372d61af8";

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The indented block under the first line containing `marker` (a YAML `|`
/// scalar), dedented.
fn block_after(text: &str, marker: &str) -> String {
    let mut lines = text.lines().skip_while(|l| !l.contains(marker));
    let head = lines.next().unwrap_or_else(|| panic!("no {marker:?}"));
    let indent = head.len() - head.trim_start().len();
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .collect();
    let strip = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(strip..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a shell script with the given environment; returns stdout. Async, so
/// the ingest under test keeps running on this test's runtime.
async fn run_shell(shell: &str, script: &str, env: &[(&str, &str)]) -> String {
    let out = tokio::process::Command::new(shell)
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run the example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The 201 body curl printed, and the one event it produced.
async fn accepted(app: &TestApp, stdout: &str) -> (Value, Value) {
    let body: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("not a JSON 201 body: {stdout}"));
    assert!(body["id"].is_string(), "{body}");
    let records = app.events(1, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 1);
    let payload = records[0].payload.as_ref().unwrap();
    let event: Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(event["deployment_id"], body["id"]);
    // Project the very record with the projector's writer, and find the row.
    let decoded = vibemon_schemas::DeploymentReported::decode(payload).unwrap();
    let located = vibemon_projector::batch::Located::new(
        decoded,
        &app.topic.name,
        records[0].partition,
        records[0].offset,
    );
    vibemon_projector::writer::write_batch(
        &app.db.pool,
        "seed-examples",
        &[located],
        &Default::default(),
    )
    .await
    .unwrap();
    let id = uuid::Uuid::parse_str(body["id"].as_str().unwrap()).unwrap();
    let (repo, status): (String, String) =
        sqlx::query_as("SELECT repo_full_name, status FROM deployments WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .expect("the deployment row");
    assert_eq!(repo, body["repo_full_name"].as_str().unwrap());
    assert_eq!(status, body["status"].as_str().unwrap());
    (body, event)
}

#[tokio::test]
async fn the_github_actions_step_reports_a_deployment() {
    let app = TestApp::spawn().await;
    let url = app.url("");
    let script = block_after(&example("github-actions.yml"), "run: |")
        .replace("${{ secrets.VM_API_URL }}", &url)
        .replace("${{ secrets.VM_WORKSPACE_KEY }}", &app.tenant.key)
        .replace("${{ github.repository }}", "acme/payments-api")
        .replace("${{ github.ref_name }}", "main")
        .replace("${{ github.sha }}", SHA)
        .replace("${{ github.run_id }}", "7312456789")
        .replace("${{ github.actor }}", "octocat");
    assert!(
        !script.contains("${{"),
        "unsubstituted expression in {script}"
    );

    let stdout = run_shell("bash", &script, &[]).await;

    let (body, event) = accepted(&app, &stdout).await;
    assert_eq!(body["source"], "github_actions");
    assert_eq!(body["commit_sha"], SHA);
    assert_eq!(event["extra_data"]["actor"], "octocat");
}

#[tokio::test]
async fn the_generic_shell_script_reports_a_deployment() {
    let app = TestApp::spawn().await;
    let url = app.url("");
    let script = example("report-deployment.sh");

    let stdout = run_shell(
        "bash",
        &script,
        &[
            ("VM_API_URL", &url),
            ("VM_WORKSPACE_KEY", &app.tenant.key),
            ("REPOSITORY", "acme/payments-api"),
            ("BRANCH", "release/2024.01"),
            ("COMMIT_SHA", SHA),
        ],
    )
    .await;

    let (body, _) = accepted(&app, &stdout).await;
    assert_eq!(body["branch"], "release/2024.01");
    assert_eq!(body["source"], "webhook");
}

#[tokio::test]
async fn the_gitlab_job_reports_a_deployment_from_a_nested_group() {
    let app = TestApp::spawn().await;
    let url = app.url("");
    let script = block_after(&example("gitlab-ci.yml"), "- |");

    let stdout = run_shell(
        "bash",
        &script,
        &[
            ("VM_API_URL", &url),
            ("VM_WORKSPACE_KEY", &app.tenant.key),
            ("CI_PROJECT_PATH", "acme/platform/payments-api"),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_COMMIT_SHA", SHA),
            ("CI_PIPELINE_ID", "1187334"),
        ],
    )
    .await;

    let (body, event) = accepted(&app, &stdout).await;
    assert_eq!(body["repo_full_name"], "acme/platform/payments-api");
    assert_eq!(event["extra_data"]["pipeline_id"], "1187334");
}

#[tokio::test]
async fn the_gitlab_job_on_a_tag_pipeline_has_no_branch_and_still_reports() {
    let app = TestApp::spawn().await;
    let url = app.url("");
    let script = block_after(&example("gitlab-ci.yml"), "- |");

    // GitLab leaves CI_COMMIT_BRANCH empty for tag pipelines.
    let stdout = run_shell(
        "bash",
        &script,
        &[
            ("VM_API_URL", &url),
            ("VM_WORKSPACE_KEY", &app.tenant.key),
            ("CI_PROJECT_PATH", "acme/payments-api"),
            ("CI_COMMIT_BRANCH", ""),
            ("CI_COMMIT_SHA", SHA),
            ("CI_PIPELINE_ID", "1187335"),
        ],
    )
    .await;

    let (body, _) = accepted(&app, &stdout).await;
    assert_eq!(body["branch"], Value::Null);
}

#[tokio::test]
async fn the_argocd_postsync_hook_reports_a_deployment() {
    let app = TestApp::spawn().await;
    let url = app.url("");
    let script = block_after(&example("argocd-postsync-hook.yaml"), "- |");

    // The hook runs `sh -c` in the curl image.
    let stdout = run_shell(
        "sh",
        &script,
        &[("VM_API_URL", &url), ("VM_WORKSPACE_KEY", &app.tenant.key)],
    )
    .await;

    let (body, _) = accepted(&app, &stdout).await;
    assert_eq!(body["source"], "argocd");
    assert_eq!(body["repo_full_name"], "your-org/your-repo");
    assert_eq!(body["commit_sha"], Value::Null);
}

/// Groovy's `GIT_URL.replaceAll('.git$', '').split('/')[-2..-1].join('/')`.
fn jenkins_repository(git_url: &str) -> String {
    let trimmed = if git_url.len() >= 4 && git_url.ends_with("git") {
        &git_url[..git_url.len() - 4]
    } else {
        git_url
    };
    let parts: Vec<&str> = trimmed.split('/').collect();
    parts[parts.len() - 2..].join("/")
}

#[tokio::test]
async fn the_jenkins_pipeline_request_reports_a_deployment() {
    let app = TestApp::spawn().await;
    let jenkinsfile = example("Jenkinsfile");
    let start = jenkinsfile
        .find("requestBody: \"\"\"")
        .expect("requestBody")
        + "requestBody: \"\"\"".len();
    let end = start
        + jenkinsfile[start..]
            .find("\"\"\"")
            .expect("end of requestBody");
    let git_url = "https://github.com/acme/payments-api.git";
    let body = jenkinsfile[start..end]
        .replace(
            "${env.GIT_URL.replaceAll('.git$', '').split('/')[-2..-1].join('/')}",
            &jenkins_repository(git_url),
        )
        .replace("${env.GIT_BRANCH}", "origin/main")
        .replace("${env.GIT_COMMIT}", SHA)
        .replace("${env.BUILD_NUMBER}", "142")
        .replace("${env.JOB_NAME}", "payments-api/deploy");
    assert!(!body.contains("${"), "unsubstituted expression in {body}");
    assert!(
        jenkinsfile.contains("customHeaders: [[name: 'X-Workspace-Key', value: VM_WORKSPACE_KEY]]")
    );
    assert!(jenkinsfile.contains("contentType: 'APPLICATION_JSON'"));

    // What the HTTP Request plugin sends for contentType APPLICATION_JSON.
    let resp = app
        .client
        .post(app.url("/api/v1/deployments/webhook"))
        .header("Content-Type", "application/json; charset=UTF-8")
        .header("X-Workspace-Key", &app.tenant.key)
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 201);
    let stdout = resp.text().await.unwrap();
    let (body, event) = accepted(&app, &stdout).await;
    assert_eq!(body["repo_full_name"], "acme/payments-api");
    assert_eq!(body["branch"], "origin/main");
    assert_eq!(event["extra_data"]["job_name"], "payments-api/deploy");
}

#[test]
fn the_groovy_repository_expression_is_emulated_faithfully() {
    assert_eq!(
        jenkins_repository("https://github.com/acme/payments-api.git"),
        "acme/payments-api"
    );
    // An SSH remote keeps its host part, exactly as Groovy would: the webhook then refuses it.
    assert_eq!(
        jenkins_repository("git@github.com:acme/payments-api.git"),
        "git@github.com:acme/payments-api"
    );
    assert_eq!(
        jenkins_repository("https://gitlab.example.com/acme/api"),
        "acme/api"
    );
}
