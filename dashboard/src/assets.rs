//! The CSS, script and icon, compiled into the binary: the dashboard needs
//! no network beyond itself. Their paths carry a digest of their content,
//! so they can be cached for a year and a new build is never served stale.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &str = include_str!("../assets/app.css");
const JS: &str = include_str!("../assets/app.js");
const ICON: &str = include_str!("../assets/icon.svg");

fn versioned(name: &str, ext: &str, body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("/assets/{name}.{short}.{ext}")
}

static PATHS: LazyLock<[(String, &'static str, &'static str); 3]> = LazyLock::new(|| {
    [
        (versioned("app", "css", CSS), "text/css; charset=utf-8", CSS),
        (
            versioned("app", "js", JS),
            "text/javascript; charset=utf-8",
            JS,
        ),
        (versioned("icon", "svg", ICON), "image/svg+xml", ICON),
    ]
});

pub static CSS_PATH: LazyLock<&'static str> = LazyLock::new(|| PATHS[0].0.as_str());
pub static JS_PATH: LazyLock<&'static str> = LazyLock::new(|| PATHS[1].0.as_str());
pub static ICON_PATH: LazyLock<&'static str> = LazyLock::new(|| PATHS[2].0.as_str());

/// `GET /assets/{file}`.
pub async fn serve(Path(file): Path<String>) -> Response {
    let wanted = format!("/assets/{file}");
    match PATHS.iter().find(|(path, _, _)| *path == wanted) {
        Some((_, mime, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
