//! The browser harness the dashboard's tests use (`vibemon_testkit::browser`),
//! tested on a tiny page of its own served on 127.0.0.1: it reads text,
//! types and clicks, reads what the page copied to the clipboard and its
//! cookies' flags, writes a screenshot, sees console errors (a CSP violation
//! among them) and the First Contentful Paint; and it leaves no chromedriver
//! or Chromium behind, whether the test ends well or panics.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use vibemon_testkit::browser::{processes_naming, Browser};

/// A page with a title, an input, a copy button, a script error, an image its
/// own CSP refuses, and a session-like cookie.
const PAGE: &str = r#"<!doctype html>
<html><head><title>harness</title></head>
<body>
  <h1 id="title">Hello harness</h1>
  <input id="name" value="placeholder">
  <button id="copy" onclick="navigator.clipboard.writeText('copied: ' + document.getElementById('name').value).then(() => document.getElementById('status').textContent = 'copied')">Copy</button>
  <p id="status">idle</p>
  <img src="/blocked.png" alt="">
  <script>console.error("harness-error-marker");</script>
</body></html>"#;

async fn page() -> impl IntoResponse {
    (
        [
            // Inline script allowed, images not: the <img> is a CSP violation.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; img-src 'none'",
            ),
            (
                header::SET_COOKIE,
                "session=abc; Path=/; HttpOnly; SameSite=Strict",
            ),
        ],
        Html(PAGE),
    )
}

async fn serve_page() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(page));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[tokio::test]
async fn the_harness_reads_a_page_types_copies_screenshots_and_sees_console_errors_and_fcp() {
    let addr = serve_page().await;
    let browser = Browser::start(800, 600).await;
    eprintln!(
        "chromedriver + chromium session ready in {:?}",
        browser.started_in
    );
    let shot = std::env::temp_dir().join(format!("harness-{}.png", uuid::Uuid::new_v4()));

    browser.goto(&format!("http://{addr}/")).await;
    assert_eq!(browser.current_url().await, format!("http://{addr}/"));
    assert_eq!(browser.text_of("#title").await, "Hello harness");

    browser.fill("#name", "vmk_example").await;
    browser.click("#copy").await;
    vibemon_testkit::eventually(Duration::from_secs(5), || async {
        (browser.text_of("#status").await == "copied").then_some(())
    })
    .await
    .expect("the page says it copied");
    assert_eq!(browser.clipboard_text().await, "copied: vmk_example");

    let png = browser.screenshot(&shot).await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
    assert_eq!(
        png_size(&png),
        (800, 600),
        "the viewport is the window size"
    );
    if std::env::var_os("KEEP_SCREENSHOT").is_none() {
        std::fs::remove_file(&shot).unwrap();
    } else {
        eprintln!("screenshot kept at {}", shot.display());
    }

    let errors = browser.console_errors().await;
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("harness-error-marker")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.message.contains("Content Security Policy")),
        "no CSP violation in {errors:?}"
    );

    let fcp = browser.first_contentful_paint_ms().await.expect("an FCP");
    assert!(fcp > 0.0 && fcp < 10_000.0, "{fcp}");

    let cookies = browser.cookies().await;
    let session = cookies.iter().find(|c| c.name == "session").unwrap();
    assert!(session.http_only);
    assert_eq!(session.same_site.as_deref(), Some("Strict"));
    assert!(!session.secure, "served over plain HTTP");

    let profile = browser.profile_dir();
    assert!(!processes_naming(&profile).is_empty(), "Chromium runs");
    browser.close().await;
    assert_all_gone(&profile).await;
}

#[tokio::test]
async fn a_test_that_panics_leaves_no_chromedriver_or_chromium_behind() {
    let addr = serve_page().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let test = tokio::spawn(async move {
        let browser = Browser::start(400, 300).await;
        browser.goto(&format!("http://{addr}/")).await;
        tx.send((browser.profile_dir(), browser.driver_pid()))
            .unwrap();
        panic!("a failing assertion in a dashboard test");
    });
    assert!(test.await.unwrap_err().is_panic());
    let (profile, driver) = rx.await.unwrap();

    assert_all_gone(&profile).await;
    assert!(
        !std::path::Path::new(&format!("/proc/{driver}")).exists(),
        "chromedriver {driver} outlived its Browser"
    );
    assert!(!profile.exists(), "the profile directory was removed");
}

/// No process names the profile directory any more (killed processes may
/// take a moment to be reaped by their parent).
async fn assert_all_gone(profile: &std::path::Path) {
    let gone = vibemon_testkit::eventually(Duration::from_secs(5), || async {
        processes_naming(profile).is_empty().then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "left behind: {:?}",
        processes_naming(profile)
    );
}
