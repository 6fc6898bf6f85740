//! `commits` and `previous_commit_sha` over HTTP: a body with them becomes a
//! version-2 event whose headers say so, a body without them stays the
//! version-1 event it always was, each rule has its 422 entry, and the
//! largest body the rules allow fits the default body limit.

use std::time::Duration;

use serde_json::{json, Value};
use vibemon_schemas::commit::COMMIT_TIMESTAMP_MAX_LEN;
use vibemon_schemas::fields::{COMMIT_AUTHOR_MAX_LEN, COMMIT_SUBJECT_MAX_LEN};
use vibemon_schemas::{DEPLOYMENT_REPORTED_V1_SCHEMA, DEPLOYMENT_REPORTED_V2_SCHEMA, MAX_COMMITS};

use crate::helpers::{json, TestApp, MINIMAL};

const V1_FIELDS: [&str; 17] = [
    "schema_version",
    "event_id",
    "deployment_id",
    "workspace_id",
    "environment_id",
    "environment",
    "repository",
    "branch",
    "commit_sha",
    "status",
    "source",
    "deployed_at",
    "extra_data",
    "external_id",
    "received_at",
    "api_key_id",
    "api_key_name",
];

fn errors(schema: &str, event: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(schema).unwrap();
    let v = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    v.iter_errors(event).map(|e| e.to_string()).collect()
}

fn sha(i: usize) -> String {
    format!("{i:040x}")
}

/// The one record on the topic: its value as JSON and a header lookup.
async fn the_event(app: &TestApp) -> (Value, impl Fn(&str) -> Option<String>) {
    let (event, _, header) = the_record(app).await;
    (event, header)
}

/// The one record on the topic: its value as JSON and as bytes, and a
/// header lookup.
async fn the_record(app: &TestApp) -> (Value, Vec<u8>, impl Fn(&str) -> Option<String>) {
    let records = app.events(2, Duration::from_secs(5)).await;
    assert_eq!(records.len(), 1, "exactly one event per accepted webhook");
    let r = records.into_iter().next().unwrap();
    let event: Value = serde_json::from_slice(r.payload.as_ref().unwrap()).unwrap();
    let (raw, headers) = (r.payload.unwrap(), r.headers);
    (event, raw, move |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

#[tokio::test]
async fn a_body_with_commits_is_a_version_2_event_that_says_so_in_its_headers() {
    let app = TestApp::spawn().await;
    let body = json!({
        "environment": "production", "repository": "acme/api",
        "commit_sha": sha(2), "previous_commit_sha": sha(1).to_uppercase(),
        "commits": [{"sha": sha(2), "committed_at": "2024-01-15T09:00:00+01:00",
                     "authored_at": "2024-01-14T17:00:00Z", "author": "Ada", "subject": "Fix the retry"}]
    });

    let (status, resp) = json(app.post(&body.to_string()).await).await;
    assert_eq!(status, 201, "{resp}");
    let (event, header) = the_event(&app).await;

    assert_eq!(event["schema_version"], 2);
    assert!(
        errors(DEPLOYMENT_REPORTED_V2_SCHEMA, &event).is_empty(),
        "{event}"
    );
    assert_eq!(event["previous_commit_sha"], sha(1), "lower case");
    assert_eq!(
        event["commits"],
        json!([{"sha": sha(2), "committed_at": "2024-01-15T08:00:00Z",
                "authored_at": "2024-01-14T17:00:00Z", "author": "Ada", "subject": "Fix the retry"}])
    );
    assert_eq!(
        header("ce_type").as_deref(),
        Some("com.vibemonitor.deployment.reported.v2")
    );
    assert_eq!(
        header("ce_dataschema").as_deref(),
        Some("https://vibemonitor.dev/schemas/deployment-reported.v2.schema.json")
    );
    assert_eq!(
        resp["commit_sha"],
        sha(2),
        "the 201 is the seed's, unchanged"
    );
}

#[tokio::test]
async fn a_body_without_them_is_the_version_1_event_it_always_was() {
    let app = TestApp::spawn().await;

    let (status, resp) = json(app.post(MINIMAL).await).await;
    assert_eq!(status, 201, "{resp}");
    let (event, raw, header) = the_record(&app).await;

    let mut keys: Vec<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut v1 = V1_FIELDS.to_vec();
    keys.sort_unstable();
    v1.sort_unstable();
    assert_eq!(keys, v1, "exactly the v1 fields");
    let text = String::from_utf8(raw).unwrap();
    assert!(
        text.starts_with(r#"{"schema_version":1,"event_id":"#),
        "{text}"
    );
    assert!(
        text.ends_with(r#","api_key_name":"GitHub Actions"}"#),
        "{text}"
    );
    assert!(
        errors(DEPLOYMENT_REPORTED_V1_SCHEMA, &event).is_empty(),
        "{event}"
    );
    assert_eq!(
        header("ce_type").as_deref(),
        Some("com.vibemonitor.deployment.reported.v1")
    );
    assert_eq!(
        header("ce_dataschema").as_deref(),
        Some("https://vibemonitor.dev/schemas/deployment-reported.v1.schema.json")
    );
}

#[tokio::test]
async fn each_commit_rule_is_a_422_entry_at_its_location_and_nothing_is_published() {
    let app = TestApp::spawn().await;
    let list = |n: usize| {
        (0..n)
            .map(|i| json!({"sha": sha(i), "committed_at": "2024-01-15T09:00:00Z"}))
            .collect::<Vec<_>>()
    };
    let bad = json!([
        {"sha": sha(1), "committed_at": "2024-01-15T09:00:00Z", "message": "x"},
        {"sha": "abc", "committed_at": "later", "author": "", "subject": "a\nb"},
        {"sha": sha(1), "committed_at": "2024-01-15T09:00:00Z"},
    ]);
    let cases = [
        (
            json!(bad),
            vec![
                r#"["body","commits",0,"message"]"#,
                r#"["body","commits",1,"sha"]"#,
                r#"["body","commits",1,"committed_at"]"#,
                r#"["body","commits",1,"subject"]"#,
                // commits[0] has a problem, and the repeat is reported too.
                r#"["body","commits",2,"sha"]"#,
            ],
        ),
        (json!("abc"), vec![r#"["body","commits"]"#]),
        (json!(list(MAX_COMMITS + 1)), vec![r#"["body","commits"]"#]),
        (
            json!([list(1)[0], list(1)[0]]),
            vec![r#"["body","commits",1,"sha"]"#],
        ),
    ];
    for (commits, want) in cases {
        let body = json!({"environment": "production", "repository": "o/r", "commits": commits});
        let (status, resp) = json(app.post(&body.to_string()).await).await;
        assert_eq!(status, 422, "{resp}");
        let got: Vec<String> = resp["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["loc"].to_string())
            .collect();
        assert_eq!(got, want, "{resp}");
    }
    let body =
        json!({"environment": "production", "repository": "o/r", "previous_commit_sha": "HEAD"});
    let (status, resp) = json(app.post(&body.to_string()).await).await;
    assert_eq!(
        (status, resp["detail"][0]["loc"].to_string()),
        (422, r#"["body","previous_commit_sha"]"#.to_owned())
    );
    // A key repeated inside a commit, as at the top level.
    let body = format!(
        r#"{{"environment":"production","repository":"o/r","commits":[{{"sha":"{}","committed_at":"2024-01-15T09:00:00Z","sha":"{}"}}]}}"#,
        sha(1),
        sha(2)
    );
    let (status, resp) = json(app.post(&body).await).await;
    assert_eq!(
        (
            status,
            resp["detail"][0]["loc"].to_string(),
            resp["detail"][0]["type"].as_str()
        ),
        (
            422,
            r#"["body","commits",0,"sha"]"#.to_owned(),
            Some("duplicate_field")
        ),
        "{resp}"
    );
    assert!(
        app.events(1, Duration::from_millis(500)).await.is_empty(),
        "nothing refused reaches Kafka"
    );
}

/// JSON as Python's `json.dumps` writes it by default: `", "` and `": "`
/// between items, and every non-ASCII character as `\\uXXXX` escapes (a
/// surrogate pair, 12 bytes, above U+FFFF). serde_json writes raw UTF-8, at
/// most 4 bytes a character, so it would understate the largest body.
fn python_json(v: &Value) -> String {
    use serde::Serialize;
    use std::io::{self, Write};
    struct PythonStyle;
    impl serde_json::ser::Formatter for PythonStyle {
        fn begin_array_value<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            w.write_all(if first { b"" } else { b", " })
        }
        fn begin_object_key<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            first: bool,
        ) -> io::Result<()> {
            w.write_all(if first { b"" } else { b", " })
        }
        fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
            w.write_all(b": ")
        }
        fn write_string_fragment<W: ?Sized + Write>(
            &mut self,
            w: &mut W,
            fragment: &str,
        ) -> io::Result<()> {
            for c in fragment.chars() {
                if c.is_ascii() {
                    w.write_all(&[c as u8])?;
                } else {
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        write!(w, "\\u{unit:04x}")?;
                    }
                }
            }
            Ok(())
        }
    }
    let mut out = Vec::new();
    v.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        PythonStyle,
    ))
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_largest_body_the_rules_allow_fits_the_default_limit_and_is_published() {
    let app = TestApp::spawn().await;
    // Characters above U+FFFF, written as 12-byte escapes; timestamps of the
    // longest length allowed; every optional field; Python's separators.
    let long_time = |hour: u32| {
        let t = format!("2024-01-15T{hour:02}:00:00.{}+00:00", "1".repeat(38));
        assert_eq!(t.len(), COMMIT_TIMESTAMP_MAX_LEN);
        t
    };
    let commit = |i: usize| {
        json!({
            "sha": sha(i), "committed_at": long_time(9), "authored_at": long_time(8),
            "author": "\u{1F680}".repeat(COMMIT_AUTHOR_MAX_LEN),
            "subject": "\u{1F4E6}".repeat(COMMIT_SUBJECT_MAX_LEN),
        })
    };
    assert_eq!(
        python_json(&json!([commit(1)])).len(),
        2 + 2_215,
        "the figure in config.rs"
    );
    let mut body = json!({
        "environment": "production", "repository": format!("o/{}", "r".repeat(253)),
        "branch": "\u{1F33F}".repeat(255), "commit_sha": sha(0), "previous_commit_sha": sha(9999),
        "status": "in_progress", "source": "github_actions", "deployed_at": "2024-01-15T09:00:00.123456789+00:00",
        "external_id": "\u{1F194}".repeat(255),
        "commits": (0..MAX_COMMITS).map(commit).collect::<Vec<_>>(),
    });
    let room = 256 * 1024 - python_json(&body).len();
    assert!(room > 32 * 1024, "only {room} bytes left for extra_data");
    body["extra_data"] = json!({"blob": "x".repeat(room - 64)});
    let text = python_json(&body);
    assert!(text.len() <= 256 * 1024, "{} bytes", text.len());

    let (status, resp) = json(app.post(&text).await).await;

    assert_eq!(status, 201, "{resp}");
    let (event, _) = the_event(&app).await;
    assert_eq!(event["commits"].as_array().unwrap().len(), MAX_COMMITS);
    assert_eq!(
        event["commits"][0]["author"],
        "\u{1F680}".repeat(COMMIT_AUTHOR_MAX_LEN)
    );
}

#[tokio::test]
async fn with_max_event_version_1_the_version_2_fields_get_a_422_naming_them() {
    let app = TestApp::spawn_with(|c| c.max_event_version = 1).await;
    let body = json!({
        "environment": "production", "repository": "o/r", "previous_commit_sha": sha(1),
        "commits": [{"sha": sha(2), "committed_at": "2024-01-15T09:00:00Z"}]
    });

    let (status, resp) = json(app.post(&body.to_string()).await).await;

    assert_eq!(status, 422, "{resp}");
    let detail = resp["detail"].as_array().unwrap();
    let locs: Vec<String> = detail.iter().map(|i| i["loc"].to_string()).collect();
    assert_eq!(
        locs,
        [r#"["body","previous_commit_sha"]"#, r#"["body","commits"]"#]
    );
    for entry in detail {
        let msg = entry["msg"].as_str().unwrap();
        assert!(
            msg.contains("not accepted by this ingest yet")
                && msg.contains("INGEST_MAX_EVENT_VERSION=1"),
            "{msg}"
        );
    }
    assert!(app.events(1, Duration::from_millis(500)).await.is_empty());

    // What `vibemon report` resends: the same body without them, a v1 event.
    let (status, resp) = json(
        app.post(&json!({"environment": "production", "repository": "o/r"}).to_string())
            .await,
    )
    .await;
    assert_eq!(status, 201, "{resp}");
    let (event, header) = the_event(&app).await;
    assert_eq!(event["schema_version"], 1);
    assert_eq!(
        header("ce_type").as_deref(),
        Some("com.vibemonitor.deployment.reported.v1")
    );
}

#[tokio::test]
async fn a_commit_dated_a_day_in_the_future_does_not_cost_the_deployment_its_record() {
    let app = TestApp::spawn().await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let body = json!({
        "environment": "production", "repository": "o/r",
        "commits": [{"sha": sha(1), "committed_at": tomorrow, "authored_at": tomorrow}]
    });

    let (status, resp) = json(app.post(&body.to_string()).await).await;

    assert_eq!(status, 201, "{resp}");
    let (event, _) = the_event(&app).await;
    assert_eq!(event["schema_version"], 2);
}
