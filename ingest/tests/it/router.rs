//! The router driven without a socket (`tower::ServiceExt::oneshot`): the
//! shape of the app is testable on its own.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use vibemon_ingest::config::Config;
use vibemon_ingest::sink::SinkKind;
use vibemon_runtime::KafkaArgs;
use vibemon_testkit::{Tenant, TestDb};

async fn router() -> (axum::Router, Tenant, TestDb) {
    let db = TestDb::new().await;
    let tenant = Tenant::create(&db.pool, "router").await;
    let mut config = Config::new(&db.url, KafkaArgs::local("127.0.0.1:9092", "unused"));
    config.sink = SinkKind::Noop;
    let state = vibemon_ingest::build_state(&config).await.unwrap();
    (vibemon_ingest::app::app(state), tenant, db)
}

#[tokio::test]
async fn the_router_answers_without_a_socket() {
    let (app, tenant, _db) = router().await;

    let resp = app
        .oneshot(
            Request::post("/api/v1/deployments/webhook")
                .header("X-Workspace-Key", &tenant.key)
                .header("Content-Type", "application/json")
                .body(Body::from(
                    r#"{"environment":"production","repository":"o/r"}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::CREATED);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["environment_id"], tenant.environment_id.to_string());
}

#[tokio::test]
async fn an_unknown_route_is_404() {
    let (app, _, _db) = router().await;

    let resp = app
        .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
