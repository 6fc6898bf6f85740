//! `vibemon integration create|list|revoke`, run as the binary: what it
//! prints, that the secret is shown once and is the one ingest derives, that
//! Postgres holds none of it, and its errors with their exit codes.

use std::process::Output;

use serde_json::Value;
use uuid::Uuid;
use vibemon_store::integrations::SecretKey;
use vibemon_testkit::TestDb;

use crate::cli::ok;

/// A key as `openssl rand -base64 32` makes one.
const KEY: &str = "DpilrpQThIQu1TE6BQlNrR3PLNjfjHctl6IeX3asbv0=";

/// Runs vibemon with `key` as VIBEMON_INTEGRATION_KEY (unset when `None`),
/// and no VM_API_URL from the environment the tests run in.
fn vibemon(db_url: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vibemon"));
    cmd.args(args)
        .env("DATABASE_URL", db_url)
        .env_remove("VM_API_URL");
    match key {
        Some(k) => cmd.env("VIBEMON_INTEGRATION_KEY", k),
        None => cmd.env_remove("VIBEMON_INTEGRATION_KEY"),
    };
    cmd.output().expect("run vibemon")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed with the test key; returns its stdout.
fn run(db_url: &str, args: &[&str]) -> String {
    let o = vibemon(db_url, Some(KEY), args);
    assert!(o.status.success(), "vibemon {args:?} failed: {}", err(&o));
    out(&o)
}

fn create_json(db_url: &str, ws: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "integration", "create", "--workspace", ws];
    args.extend_from_slice(extra);
    serde_json::from_str(&run(db_url, &args)).unwrap()
}

async fn salt(db: &TestDb, id: Uuid) -> Vec<u8> {
    sqlx::query_scalar("SELECT secret_salt FROM integrations WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_json_gives_the_id_path_url_and_the_secret_ingest_derives() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);

    let created = create_json(
        &db.url,
        &ws,
        &[
            "--provider",
            "github",
            "--name",
            "acme org",
            "--url",
            "https://ingest.example.com/",
            "--map-environment",
            "prod=production",
            "--create-environments",
        ],
    );

    let id: Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let path = format!("/api/v1/integrations/github/{id}");
    assert_eq!(created["path"], path.as_str());
    assert_eq!(
        created["url"],
        format!("https://ingest.example.com{path}").as_str()
    );
    assert_eq!(created["workspace_id"], ws.as_str());
    assert_eq!(created["provider"], "github");
    assert_eq!(created["name"], "acme org");
    assert_eq!(created["environment_map"]["prod"], "production");
    assert_eq!(created["create_environments"], true);
    assert!(created.get("secret_salt").is_none(), "{created}");
    let key = SecretKey::parse(KEY).unwrap();
    assert_eq!(
        created["secret"],
        key.secret_for(id, &salt(&db, id).await).as_str()
    );
    let stored: (Value, bool) = sqlx::query_as(
        "SELECT environment_map, create_environments FROM integrations WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored.0, serde_json::json!({"prod": "production"}));
    assert!(stored.1);
}

#[tokio::test]
async fn create_for_people_prints_the_url_and_secret_and_warns_it_is_shown_once() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);

    let o = vibemon(
        &db.url,
        Some(KEY),
        &[
            "integration",
            "create",
            "--workspace",
            &ws,
            "--provider",
            "gitlab",
        ],
    );

    assert!(o.status.success(), "{}", err(&o));
    let listed: Value = serde_json::from_str(&run(
        &db.url,
        &["--json", "integration", "list", "--workspace", &ws],
    ))
    .unwrap();
    let id: Uuid = listed[0]["id"].as_str().unwrap().parse().unwrap();
    let secret = SecretKey::parse(KEY)
        .unwrap()
        .secret_for(id, &salt(&db, id).await);
    let stdout = out(&o);
    assert!(
        stdout.contains(&format!(
            "http://127.0.0.1:8080/api/v1/integrations/gitlab/{id}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&secret), "{stdout}");
    assert!(
        err(&o).contains("only time the secret is shown"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("Secret token"), "{}", err(&o));
    assert_eq!(
        listed[0]["name"], "gitlab",
        "the name defaults to the provider"
    );
}

#[tokio::test]
async fn the_secret_is_shown_once_and_neither_listed_nor_stored() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);
    let created = create_json(&db.url, &ws, &["--provider", "github"]);
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43);

    let table = run(&db.url, &["integration", "list", "--workspace", &ws]);
    let json = run(
        &db.url,
        &["--json", "integration", "list", "--workspace", &ws],
    );
    let rows: Vec<String> = sqlx::query_scalar("SELECT i::text FROM integrations i")
        .fetch_all(&db.pool)
        .await
        .unwrap();

    assert_eq!(rows.len(), 1);
    for text in [&table, &json, &rows[0]] {
        assert!(!text.contains(&secret), "the secret leaked: {text}");
    }
    assert!(
        rows[0].contains(created["id"].as_str().unwrap()),
        "the dump is of that receiver: {}",
        rows[0]
    );
    for header in [
        "ID",
        "PROVIDER",
        "NAME",
        "PATH",
        "CREATED",
        "LAST USED",
        "REVOKED",
    ] {
        assert!(table.contains(header), "{header}: {table}");
    }
    assert!(table.contains(created["path"].as_str().unwrap()), "{table}");
    let listed: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(listed[0]["path"], created["path"]);
    assert!(listed[0].get("secret").is_none() && listed[0].get("secret_salt").is_none());
}

#[tokio::test]
async fn revoke_marks_the_receiver_revoked_and_twice_keeps_the_first_time() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);
    let id = create_json(&db.url, &ws, &["--provider", "github"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = create_json(&db.url, &ws, &["--provider", "gitlab"])["id"]
        .as_str()
        .unwrap()
        .to_owned();

    assert_eq!(run(&db.url, &["integration", "revoke", &id]).trim(), id);
    let first: Value = serde_json::from_str(&run(
        &db.url,
        &["--json", "integration", "list", "--workspace", &ws],
    ))
    .unwrap();
    let again = vibemon(&db.url, None, &["--json", "integration", "revoke", &id]);

    assert!(again.status.success(), "{}", err(&again));
    assert!(err(&again).contains("revoked already"), "{}", err(&again));
    let again: Value = serde_json::from_str(&out(&again)).unwrap();
    assert_eq!(again["id"], id.as_str());
    assert!(first[0]["revoked_at"].is_string(), "{first}");
    assert_eq!(again["revoked_at"], first[0]["revoked_at"]);
    assert_eq!(first[1]["id"], other.as_str());
    assert!(first[1]["revoked_at"].is_null(), "only that one: {first}");
}

#[tokio::test]
async fn errors_name_the_problem_and_the_fix_with_their_exit_codes() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);
    let missing = Uuid::now_v7().to_string();
    let create = |extra: &[&'static str]| {
        let mut a: Vec<String> = ["integration", "create", "--workspace", &ws]
            .map(String::from)
            .to_vec();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    let cases: Vec<(Option<&str>, Vec<String>, i32, &str)> = vec![
        (
            Some(KEY),
            create(&["--provider", "bitbucket"]),
            2,
            "github or gitlab",
        ),
        (
            Some(KEY),
            [
                "integration",
                "create",
                "--workspace",
                &missing,
                "--provider",
                "github",
            ]
            .map(String::from)
            .to_vec(),
            3,
            "vibemon workspace list",
        ),
        (
            Some(KEY),
            create(&["--provider", "github", "--map-environment", "prod"]),
            2,
            "PROVIDER_NAME=OURS",
        ),
        (
            Some(KEY),
            create(&["--provider", "github", "--map-environment", "prod=prod env"]),
            2,
            "ASCII letters",
        ),
        (
            None,
            create(&["--provider", "github"]),
            2,
            "openssl rand -base64 32",
        ),
        (
            Some("7LhovikxnBgD3AukcKJxkw=="),
            create(&["--provider", "github"]),
            2,
            "at least 32 bytes",
        ),
        (
            Some("not base64!"),
            create(&["--provider", "github"]),
            2,
            "openssl rand -base64 32",
        ),
        (
            None,
            vec!["integration".into(), "revoke".into(), missing.clone()],
            3,
            "vibemon integration list",
        ),
        (
            None,
            ["integration", "list", "--workspace", &missing]
                .map(String::from)
                .to_vec(),
            3,
            "not found",
        ),
    ];
    for (key, args, code, hint) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = vibemon(&db.url, key, &args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(hint), "{args:?}: {}", err(&o));
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM integrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "no failed create left a receiver");
}

#[test]
fn every_integration_command_has_help_with_an_example() {
    for args in [
        vec!["integration", "create", "--help"],
        vec!["integration", "list", "--help"],
        vec!["integration", "revoke", "--help"],
    ] {
        let o = vibemon("postgres://unused", None, &args);
        assert!(o.status.success());
        assert!(out(&o).contains("Example"), "{args:?}:\n{}", out(&o));
    }
}
