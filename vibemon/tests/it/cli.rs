//! Every `vibemon` command, its output and its errors (with exit codes).

use std::process::Output;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde_json::Value;
use vibemon_testkit::{kafka_brokers, TestDb};

pub fn vibemon(db_url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("KAFKA_BROKERS", kafka_brokers())
        .output()
        .expect("run vibemon")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(db_url: &str, args: &[&str]) -> String {
    let o = vibemon(db_url, args);
    assert!(
        o.status.success(),
        "vibemon {args:?} failed: {}",
        stderr(&o)
    );
    stdout(&o)
}

#[tokio::test]
async fn migrate_creates_the_read_model_and_is_idempotent() {
    let db = TestDb::empty().await;

    ok(&db.url, &["migrate"]);
    ok(&db.url, &["migrate"]);

    for table in [
        "workspaces",
        "environments",
        "api_keys",
        "deployments",
        "deployment_audit",
        "current_deployments",
        "projector_checkpoints",
    ] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} exists and is empty");
    }
}

#[tokio::test]
async fn workspace_environment_and_key_create_print_their_id_or_key_alone() {
    let db = TestDb::new().await;

    let ws = ok(&db.url, &["workspace", "create", "acme"]);
    let env = ok(
        &db.url,
        &["environment", "create", "--workspace", &ws, "production"],
    );
    let key = ok(
        &db.url,
        &[
            "key",
            "create",
            "--workspace",
            &ws,
            "--name",
            "GitHub Actions",
        ],
    );

    assert!(uuid::Uuid::parse_str(&ws).is_ok(), "{ws}");
    assert!(uuid::Uuid::parse_str(&env).is_ok(), "{env}");
    assert!(
        vibemon_store::keys::PresentedKey::parse(&key).is_some(),
        "{key}"
    );
    let listed: Value = serde_json::from_str(&ok(
        &db.url,
        &["--json", "environment", "list", "--workspace", &ws],
    ))
    .unwrap();
    assert_eq!(listed[0]["name"], "production");
    let workspaces = ok(&db.url, &["workspace", "list"]);
    assert!(workspaces.contains("acme") && workspaces.contains(&ws));
}

#[tokio::test]
async fn keys_are_stored_as_argon2id_hashes_and_never_listed() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);
    let key = ok(
        &db.url,
        &["key", "create", "--workspace", &ws, "--name", "Jenkins"],
    );
    let secret = vibemon_store::keys::PresentedKey::parse(&key)
        .unwrap()
        .secret
        .to_owned();

    let table = ok(&db.url, &["key", "list", "--workspace", &ws]);
    let json = ok(&db.url, &["--json", "key", "list", "--workspace", &ws]);

    for out in [&table, &json] {
        assert!(
            !out.contains(&secret) && !out.contains(&key),
            "a secret leaked: {out}"
        );
    }
    assert!(table.contains("Jenkins") && table.contains("LAST USED") && table.contains("REVOKED"));
    let hashes: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_keys")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 1);
    assert!(
        hashes[0].starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        hashes[0]
    );
    assert!(!hashes[0].contains(&secret));
}

#[tokio::test]
async fn key_revoke_marks_the_key_revoked() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);
    ok(
        &db.url,
        &["key", "create", "--workspace", &ws, "--name", "ci"],
    );
    let listed: Value =
        serde_json::from_str(&ok(&db.url, &["--json", "key", "list", "--workspace", &ws])).unwrap();
    let id = listed[0]["id"].as_str().unwrap().to_owned();

    assert_eq!(ok(&db.url, &["key", "revoke", &id]), id);

    let listed: Value =
        serde_json::from_str(&ok(&db.url, &["--json", "key", "list", "--workspace", &ws])).unwrap();
    assert!(listed[0]["revoked_at"].is_string());
}

#[tokio::test]
async fn errors_name_the_problem_and_the_fix_with_meaningful_exit_codes() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);
    ok(
        &db.url,
        &["environment", "create", "--workspace", &ws, "production"],
    );
    let missing = uuid::Uuid::now_v7().to_string();

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec![
                "environment",
                "create",
                "--workspace",
                &missing,
                "production",
            ],
            3,
            "vibemon workspace list",
        ),
        (
            vec!["environment", "create", "--workspace", &ws, "production"],
            4,
            "already exists",
        ),
        (
            vec!["environment", "create", "--workspace", &ws, "prod env"],
            2,
            "ASCII letters",
        ),
        (vec!["key", "revoke", &missing], 3, "vibemon key list"),
        (
            vec!["key", "create", "--workspace", &missing, "--name", "x"],
            3,
            "not found",
        ),
        (vec!["workspace", "create", ""], 2, "1 to 200 characters"),
    ];
    for (args, code, hint) in cases {
        let o = vibemon(&db.url, &args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(hint), "{args:?}: {}", stderr(&o));
    }
    let unreachable = vibemon(
        "postgres://vibemon:vibemon@127.0.0.1:1/x",
        &["workspace", "list"],
    );
    assert_eq!(
        unreachable.status.code(),
        Some(5),
        "{}",
        stderr(&unreachable)
    );
    assert!(stderr(&unreachable).contains("DATABASE_URL"));
}

#[tokio::test]
async fn topics_ensure_creates_the_topic_and_its_dlq_and_is_idempotent() {
    let base = format!("test-ensure-{}", uuid::Uuid::new_v4().simple());
    let args = [
        "topics",
        "ensure",
        "--kafka-topic",
        &base,
        "--partitions",
        "4",
    ];

    ok("postgres://unused", &args);
    let again = ok(
        "postgres://unused",
        &[
            "--json",
            "topics",
            "ensure",
            "--kafka-topic",
            &base,
            "--partitions",
            "4",
        ],
    );

    let report: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(report[0]["state"], "exists, configuration applied");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let parts = |name: &str| {
        md.topics()
            .iter()
            .find(|t| t.name() == name)
            .map(|t| t.partitions().len())
    };
    assert_eq!(parts(&base), Some(4));
    assert_eq!(parts(&format!("{base}.dlq")), Some(1));
    let admin: rdkafka::admin::AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", kafka_brokers())
        .create()
        .unwrap();
    let dlq = format!("{base}.dlq");
    let _ = admin
        .delete_topics(&[&base, &dlq], &rdkafka::admin::AdminOptions::new())
        .await;
}

#[test]
fn every_command_has_help_with_an_example() {
    for args in [
        vec!["--help"],
        vec!["migrate", "--help"],
        vec!["topics", "ensure", "--help"],
        vec!["workspace", "create", "--help"],
        vec!["environment", "create", "--help"],
        vec!["key", "create", "--help"],
        vec!["key", "revoke", "--help"],
        vec!["key", "list", "--help"],
        vec!["workspace", "list", "--help"],
        vec!["environment", "list", "--help"],
        vec!["environment", "rename", "--help"],
        vec!["environment", "delete", "--help"],
        vec!["deployments", "list", "--help"],
        vec!["deployments", "at", "--help"],
        vec!["report", "--help"],
        vec!["replay", "--help"],
        vec!["tail", "--help"],
    ] {
        let o = vibemon("postgres://unused", &args);
        assert!(o.status.success());
        let text = stdout(&o);
        assert!(text.contains("Example"), "{args:?} has no example:\n{text}");
    }
}

#[tokio::test]
async fn a_reader_that_goes_away_ends_the_command_quietly_instead_of_a_panic() {
    let db = TestDb::new().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vibemon"))
        .args(["workspace", "create", "piped"])
        .env("DATABASE_URL", &db.url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run vibemon");
    // `vibemon … | head -0`: the reader closes before the first line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let made: i64 = sqlx::query_scalar("SELECT count(*) FROM workspaces WHERE name = 'piped'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(made, 1, "the work was done before the output was refused");
}
