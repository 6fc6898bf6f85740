//! The trivial endpoint that measures the load generator's ceiling: it
//! answers every POST with 201 and a fixed body the size of ingest's,
//! reading the request body but never parsing it.
//!
//! It runs as its own process (`vibemon-bench --serve-trivial ADDR`), like the
//! services under test, so what `wrk` reaches against it is what the
//! generator can drive on this machine when the server costs next to nothing.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;

use crate::load::Target;
use crate::process::{free_port, wait_ready, Service};

/// Shaped like ingest's 201 body, so wrk reads as many bytes per answer.
const ANSWER: &str = r#"{"id":"01936f4e-8a1b-7c3d-9e2f-0a1b2c3d4e5f","environment_id":"01936f4e-8a1b-7c3d-9e2f-0a1b2c3d4e60","repo_full_name":"acme/api","branch":"main","commit_sha":"0000000100000001c6ef3720000013cf5bd1e994","status":"success","source":"github_actions","deployed_at":"2026-11-28T18:41:56.123456Z","created_at":"2026-11-28T18:41:56.123456Z"}"#;

async fn created(_body: Bytes) -> impl IntoResponse {
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        ANSWER,
    )
}

async fn ready() -> StatusCode {
    StatusCode::OK
}

/// The router: `/readyz` for the start-up check, 201 for anything else.
pub fn app() -> Router {
    Router::new()
        .route("/readyz", axum::routing::get(ready))
        .fallback(created)
}

/// Serves [`app`] on `addr` until the process is killed.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app()).await?;
    Ok(())
}

/// Starts this binary again as the trivial server, and the target to load it.
pub async fn start(log: &std::path::Path) -> anyhow::Result<(Service, Target)> {
    let addr = format!("127.0.0.1:{}", free_port());
    let service = Service::start(
        "trivial",
        &std::env::current_exe()?,
        &["--serve-trivial".to_owned(), addr.clone()],
        &[],
        log,
    )?;
    wait_ready(
        &format!("http://{addr}/readyz"),
        std::time::Duration::from_secs(10),
    )
    .await?;
    Ok((
        service,
        Target {
            url: format!("http://{addr}/api/v1/deployments/webhook"),
            key: "none".to_owned(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn any_post_is_answered_201_with_a_json_body() {
        let response = app()
            .oneshot(
                Request::post("/api/v1/deployments/webhook")
                    .body(Body::from("not even json"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap();
    }
}
