//! `vibemon key create --scope`: a new key may only ingest unless asked for
//! more, the scopes asked for are the ones a real ingest enforces, and a
//! scope list that names nothing real is refused before anything is stored.

use serde_json::Value;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{TestDb, TestTopic};

use crate::cli::{ok, stdout, vibemon};
use crate::stack::Ingest;

fn create_key(db: &TestDb, ws: &str, name: &str, scope: Option<&str>) -> String {
    let mut args = vec!["key", "create", "--workspace", ws, "--name", name];
    if let Some(scope) = scope {
        args.extend(["--scope", scope]);
    }
    ok(&db.url, &args)
}

/// `key list --json`: each key's name and scopes.
fn listed_scopes(db: &TestDb, ws: &str) -> Vec<(String, Value)> {
    let listed: Value =
        serde_json::from_str(&ok(&db.url, &["--json", "key", "list", "--workspace", ws])).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap().to_owned(), k["scopes"].clone()))
        .collect()
}

async fn read_api_status(ingest: &Ingest, key: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/v1/environments", ingest.addr))
        .header("X-Workspace-Key", key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn a_key_made_without_scope_may_only_ingest_and_one_made_with_read_admin_may_only_read() {
    let (db, topic) = (TestDb::new().await, TestTopic::new(1).await);
    let ws = ok(&db.url, &["workspace", "create", "acme"]);
    ok(
        &db.url,
        &["environment", "create", "--workspace", &ws, "production"],
    );
    let ci = create_key(&db, &ws, "ci", None);
    let sre = create_key(&db, &ws, "sre", Some("read,admin"));
    let ingest = Ingest::spawn(&db.url, KafkaArgs::local(&topic.brokers, &topic.name)).await;
    let client = reqwest::Client::new();
    const BODY: &str = r#"{"environment": "production", "repository": "acme/api"}"#;

    let (ci_reads, ci_body) = read_api_status(&ingest, &ci).await;
    let (sre_reads, _) = read_api_status(&ingest, &sre).await;
    let ci_posts = ingest.post_webhook(&client, &ci, BODY).await.status();
    let sre_post = ingest.post_webhook(&client, &sre, BODY).await;
    let sre_posts = sre_post.status();
    let sre_body: Value = sre_post.json().await.unwrap();

    assert_eq!(
        listed_scopes(&db, &ws),
        [
            ("ci".to_owned(), serde_json::json!(["ingest"])),
            ("sre".to_owned(), serde_json::json!(["read", "admin"])),
        ]
    );
    assert_eq!((ci_reads, &ci_body["missing_scope"]), (403, &"read".into()));
    assert_eq!(ci_posts, 201);
    assert_eq!(sre_reads, 200);
    assert_eq!(
        (sre_posts.as_u16(), &sre_body["missing_scope"]),
        (403, &"ingest".into())
    );
    let table = ok(&db.url, &["key", "list", "--workspace", &ws]);
    let header = table.lines().next().unwrap_or("").to_lowercase();
    assert!(header.contains("scope"), "no scope column: {table}");
    let row = |name: &str| table.lines().find(|l| l.contains(name)).unwrap().to_owned();
    assert!(
        row(" ci ").contains("ingest") && !row(" ci ").contains("read"),
        "{table}"
    );
    assert!(row(" sre ").contains("read,admin"), "{table}");
    ingest.stop().await;
}

#[tokio::test]
async fn an_unknown_or_empty_scope_is_refused_with_exit_2_naming_the_scopes_and_stores_no_key() {
    let db = TestDb::new().await;
    let ws = ok(&db.url, &["workspace", "create", "acme"]);

    for (scope, says) in [
        ("write", "unknown scope \"write\""),
        ("ingest,Read", "unknown scope \"Read\""),
        ("", "at least one scope"),
        (" , ", "at least one scope"),
    ] {
        let o = vibemon(
            &db.url,
            &[
                "key",
                "create",
                "--workspace",
                &ws,
                "--name",
                "x",
                "--scope",
                scope,
            ],
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "--scope {scope:?}: {err}");
        assert!(err.contains(says), "--scope {scope:?}: {err}");
        assert!(err.contains("ingest, read"), "--scope {scope:?}: {err}");
        assert!(stdout(&o).is_empty(), "no key printed: {}", stdout(&o));
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
