//! Health, readiness, metrics, the OpenAPI document, and graceful shutdown.

use serde_json::Value;

use crate::helpers::{TestApp, MINIMAL};

#[tokio::test]
async fn healthz_is_ok_and_readyz_is_ready_when_kafka_and_postgres_answer() {
    let app = TestApp::spawn().await;

    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();

    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["kafka"], true);
    assert_eq!(body["postgres"], true);
}

#[tokio::test]
async fn readyz_is_unready_when_the_topic_is_not_reachable() {
    let app = TestApp::spawn_with(|c| c.kafka.topic = "no-such-topic-for-readyz".into()).await;

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();

    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["kafka"], false);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_rejections_by_reason() {
    let app = TestApp::spawn().await;
    app.post(MINIMAL).await;
    app.post(r#"{"environment": "production"}"#).await;

    let text = app.metrics_text().await;

    for line in [
        r#"vibemon_http_requests_total{route="/api/v1/deployments/webhook",status="201"} 1"#,
        r#"vibemon_http_requests_total{route="/api/v1/deployments/webhook",status="422"} 1"#,
        r#"vibemon_ingest_rejections_total{reason="validation"} 1"#,
        "vibemon_ingest_events_published_total 1",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for name in [
        "vibemon_http_request_duration_seconds_bucket",
        "vibemon_ingest_produce_duration_seconds_bucket",
        "vibemon_ingest_producer_queue_messages",
        "vibemon_ingest_auth_cache_total",
        "vibemon_ingest_argon2_verifications_total",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
}

async fn openapi(app: &TestApp) -> Value {
    let resp = app.client.get(app.url("/openapi.json")).send().await;
    resp.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn the_openapi_document_describes_the_webhook() {
    let app = TestApp::spawn().await;

    let doc = openapi(&app).await;

    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let webhook = &doc["paths"]["/api/v1/deployments/webhook"]["post"];
    for status in ["201", "401", "404", "413", "415", "422", "503"] {
        assert!(
            webhook["responses"][status].is_object(),
            "response {status} is documented"
        );
    }
}

#[tokio::test]
async fn sigterm_style_shutdown_finishes_in_flight_requests_and_stops() {
    let app = TestApp::spawn().await;
    assert_eq!(app.post(MINIMAL).await.status(), 201);

    let stopped = tokio::time::timeout(std::time::Duration::from_secs(20), app.stop()).await;

    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
}

#[tokio::test]
async fn every_route_of_the_router_is_in_the_openapi_document() {
    let app = TestApp::spawn().await;
    let doc = openapi(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    let source =
        include_str!("../../src/app.rs").to_owned() + include_str!("../../src/read_api.rs");

    let routes: Vec<&str> = source
        .match_indices(".route(\"")
        .map(|(i, m)| {
            let rest = &source[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    // The webhook and native intake are routed through constants, the rest
    // as literals.
    let constants = [
        ("WEBHOOK_PATH", vibemon_ingest::webhook::WEBHOOK_PATH),
        ("GITHUB_PATH", vibemon_ingest::integrations::GITHUB_PATH),
        ("GITLAB_PATH", vibemon_ingest::integrations::GITLAB_PATH),
    ];
    for (name, path) in constants {
        assert!(
            source.contains(&format!(".route({name},")) && paths.contains_key(path),
            "{name} ({path}) is served and documented"
        );
    }
    assert!(routes.len() >= 8, "{routes:?}");
    for route in &routes {
        assert!(
            paths.contains_key(*route),
            "{route} is served but not documented"
        );
    }
    for path in paths.keys() {
        assert!(
            constants.iter().any(|(_, c)| c == path) || routes.contains(&path.as_str()),
            "{path} is documented but not served"
        );
    }
}
