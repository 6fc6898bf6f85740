//! No key ever reaches the logs: the real binary, at debug level, is sent a
//! valid key, a wrong one and a malformed one, and its whole log is searched.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use vibemon_testkit::{eventually, Tenant, TestDb, TestTopic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_appears_in_any_log_line_even_at_debug_level() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let tenant = Tenant::create(&db.pool, "ci").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ingest"))
        .env("DATABASE_URL", &db.url)
        .env("KAFKA_BROKERS", &topic.brokers)
        .env("KAFKA_TOPIC", &topic.name)
        .env("INGEST_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(20), || async {
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .ok()
            .map(|_| ())
    })
    .await
    .expect("ingest started");
    let wrong = vibemon_store::keys::generate().plaintext;
    let secret = vibemon_store::keys::PresentedKey::parse(&tenant.key)
        .unwrap()
        .secret
        .to_owned();

    for key in [tenant.key.as_str(), wrong.as_str(), "vmk_not-a-key-at-all"] {
        client
            .post(format!("{base}/api/v1/deployments/webhook"))
            .header("X-Workspace-Key", key)
            .header("Content-Type", "application/json")
            .body(r#"{"environment": "production", "repository": "o/r"}"#)
            .send()
            .await
            .unwrap();
    }
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().unwrap().to_string())
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    let log = out + &err;

    assert!(log.lines().count() > 5, "expected a debug log, got:\n{log}");
    for needle in [
        tenant.key.as_str(),
        secret.as_str(),
        wrong.as_str(),
        "vmk_not-a-key-at-all",
    ] {
        assert!(!log.contains(needle), "a key leaked into the log");
    }
}
