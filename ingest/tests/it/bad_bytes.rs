//! Bad bytes on every route: a NUL, invalid UTF-8 (`%FF`, the overlong
//! `%C0%80`), a 10 kB value or an invisible format character (U+202E) in any
//! query parameter or path segment is the client's fault. Each must get a 4xx
//! whose body names the parameter, never a 5xx, and never reach Postgres.
//!
//! The sweep drives the router without a socket, so it covers exactly the
//! routes `app()` has; a route added later without a row here still gets the
//! stray-parameter check through [`ROUTES`].

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vibemon_ingest::config::Config;
use vibemon_ingest::sink::SinkKind;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{Tenant, TestDb};

/// Hostile values as they appear in a URL (percent-encoded).
fn hostile() -> Vec<(&'static str, String)> {
    vec![
        ("NUL", "a%00b".to_owned()),
        ("invalid UTF-8", "a%FFb".to_owned()),
        ("overlong NUL", "a%C0%80b".to_owned()),
        ("10 kB", "a".repeat(10 * 1024)),
        ("U+202E", "a%E2%80%AEb".to_owned()),
    ]
}

/// Every route of the router: method, path template, its path parameter (if
/// any) and its query parameters. Routes that take no parameter get a stray
/// one, `x`, so a hostile query string reaches them too.
const ROUTES: &[(&str, &str, Option<&str>, &[&str])] = &[
    ("POST", "/api/v1/deployments/webhook", None, &[]),
    ("GET", "/healthz", None, &[]),
    ("GET", "/readyz", None, &[]),
    ("GET", "/metrics", None, &[]),
    ("GET", "/openapi.json", None, &[]),
    (
        "GET",
        "/api/v1/deployments",
        None,
        &[
            "environment",
            "repository",
            "status",
            "since",
            "until",
            "cursor",
            "limit",
        ],
    ),
    ("GET", "/api/v1/deployments/{id}", Some("id"), &[]),
    ("GET", "/api/v1/environments", None, &[]),
    (
        "GET",
        "/api/v1/environments/{name}/deployed",
        Some("name"),
        &["at", "repository"],
    ),
];

/// Routes whose parameters are ours to parse: their 4xx must name the field.
fn is_read_api(path: &str) -> bool {
    path.starts_with("/api/v1/") && path != "/api/v1/deployments/webhook"
}

async fn router() -> (axum::Router, Tenant, TestDb) {
    let db = TestDb::new().await;
    let tenant = Tenant::create(&db.pool, "bad bytes").await;
    let mut config = Config::new(&db.url, KafkaArgs::local("127.0.0.1:9092", "unused"));
    config.sink = SinkKind::Noop;
    config.rate_limit_per_ip = 0;
    config.rate_limit_per_key = 0;
    let state = vibemon_ingest::build_state(&config).await.unwrap();
    (vibemon_ingest::app::app(state), tenant, db)
}

async fn send(app: &axum::Router, tenant: &Tenant, method: &str, uri: &str) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("X-Workspace-Key", &tenant.key)
        .header("Content-Type", "application/json")
        .body(Body::from(
            r#"{"environment":"production","repository":"o/r"}"#,
        ))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Whether a 422 body lists an issue located at `[place, name]`.
fn names_field(body: &str, place: &str, name: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    v["detail"].as_array().is_some_and(|issues| {
        issues
            .iter()
            .any(|i| i["loc"][0] == place && i["loc"][1] == name)
    })
}

#[tokio::test]
async fn bad_bytes_in_any_query_parameter_or_path_segment_are_a_4xx_naming_it() {
    let (app, tenant, _db) = router().await;
    let mut wrong = Vec::new();
    let mut sent = 0;

    for &(method, template, path_param, query) in ROUTES {
        for (what, value) in hostile() {
            let mut tries: Vec<(String, &str, String)> = Vec::new();
            let clean_path = template
                .replace("{id}", "0190d7a2-0000-7000-8000-000000000000")
                .replace("{name}", "production");
            let strays: &[&str] = if query.is_empty() { &["x"] } else { query };
            for &q in strays {
                let uri = format!("{clean_path}?{q}={value}");
                tries.push((uri, "query", q.to_owned()));
            }
            if let Some(p) = path_param {
                let uri = template.replace(&format!("{{{p}}}"), &value);
                tries.push((uri, "path", p.to_owned()));
            }
            for (uri, place, name) in tries {
                sent += 1;
                let (status, body) = send(&app, &tenant, method, &uri).await;
                let short = &uri[..uri.len().min(90)];
                if status >= 500 {
                    wrong.push(format!("{what} {method} {short}: {status} {body}"));
                } else if is_read_api(template) && !(400..500).contains(&status) {
                    wrong.push(format!("{what} {method} {short}: {status}, not a 4xx"));
                } else if is_read_api(template) && !names_field(&body, place, &name) {
                    let b = &body[..body.len().min(200)];
                    wrong.push(format!(
                        "{what} {method} {short}: {status} names no {place}.{name}: {b}"
                    ));
                }
            }
        }
    }

    assert!(sent >= 60, "only {sent} requests were sent");
    assert!(
        wrong.is_empty(),
        "{} of {sent} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[tokio::test]
async fn a_duplicated_query_parameter_is_a_422_naming_it_not_a_silent_choice() {
    let (app, tenant, _db) = router().await;

    let (status, body) = send(
        &app,
        &tenant,
        "GET",
        "/api/v1/deployments?repository=a/b&repository=c/d",
    )
    .await;

    assert_eq!(status, 422, "{body}");
    assert!(names_field(&body, "query", "repository"), "{body}");
}
