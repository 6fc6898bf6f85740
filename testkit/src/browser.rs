//! A headless Chromium for the dashboard's browser tests: [`Browser::start`]
//! runs Debian's `/usr/bin/chromedriver` on a free port and opens a WebDriver
//! session (fantoccini) with `/usr/bin/chromium`, a fresh profile directory
//! and a fixed window size. Each test starts its own, so tests run in
//! parallel; `deploy/local/services up` installs both packages.
//!
//! Nothing outlives the [`Browser`]: chromedriver runs in a process group of
//! its own, and dropping the browser (also when the test panics) kills that
//! group, then any process still naming the profile directory on its command
//! line (Chromium's helpers), then deletes the directory. [`Browser::close`]
//! ends the session first, which makes chromedriver quit Chromium itself.
//!
//! The clipboard: headless Chromium keeps a clipboard of its own in memory.
//! A page's `navigator.clipboard.writeText` from a click works as it is
//! (`http://127.0.0.1` is a secure context and the click is a user
//! gesture). Reading it back needs `clipboard-read`, which Chromium refuses
//! by default; [`Browser::clipboard_text`] grants it to the current origin
//! with WebDriver's Set Permission command (permissions are per origin, so
//! granting before navigating does nothing), then calls `readText`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// Debian's paths (packages `chromium-driver` and `chromium`).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long chromedriver may take to listen, and Chromium to open a session.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags for a quiet, reproducible headless Chromium: no GPU, no sandbox (we
/// run as root in a container), no network chatter of its own (updates,
/// sync, QUIC probes), `/tmp` instead of a small `/dev/shm`.
const CHROMIUM_ARGS: [&str; 9] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// One chromedriver, one Chromium, one WebDriver session.
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    /// Holds the profile (`--user-data-dir`) and chromedriver's log.
    dir: PathBuf,
    /// Browser-log entries already fetched: chromedriver hands each out once.
    log: Mutex<Vec<LogEntry>>,
    /// From spawning chromedriver to an open session.
    pub started_in: Duration,
}

/// A cookie as the browser holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieFlags {
    pub name: String,
    pub value: String,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`; absent when the server sent no `SameSite`.
    pub same_site: Option<String>,
}

/// One line of the browser's console log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// `SEVERE` for `console.error`, uncaught exceptions, failed loads and
    /// CSP violations; `WARNING`, `INFO`, `DEBUG` for the rest.
    pub level: String,
    /// `console-api`, `javascript`, `network`, `security`, ...
    pub source: String,
    pub message: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose viewport is
    /// `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Self {
        let started = Instant::now();
        let dir =
            std::env::temp_dir().join(format!("vibemon-browser-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("profile")).expect("browser temp dir");
        let port = crate::ports::free_port();
        let driver = spawn_chromedriver(&dir, port);
        let mut browser = Self {
            client: None,
            driver,
            dir,
            log: Mutex::new(Vec::new()),
            started_in: Duration::ZERO,
        };
        wait_until_listening(port, &browser.dir).await;
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(browser.capabilities(width, height))
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", browser.driver_log()));
        browser.client = Some(client);
        browser.fit_viewport(width, height).await;
        browser.started_in = started.elapsed();
        browser
    }

    /// New headless Chromium counts its (invisible) toolbar in
    /// `--window-size`; grows the window by the difference, so the page's
    /// viewport, what media queries and screenshots see, is `width` × `height`.
    async fn fit_viewport(&self, width: u32, height: u32) {
        let inner = self.eval("return [innerWidth, innerHeight];", vec![]).await;
        let inner = |i: usize| inner[i].as_u64().unwrap_or(0) as u32;
        let (extra_w, extra_h) = (
            width.saturating_sub(inner(0)),
            height.saturating_sub(inner(1)),
        );
        if extra_w > 0 || extra_h > 0 {
            self.client()
                .set_window_size(width + extra_w, height + extra_h)
                .await
                .expect("resize the window");
        }
    }

    fn capabilities(&self, width: u32, height: u32) -> Capabilities {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", self.profile_dir().display()));
        args.push(format!("--window-size={width},{height}"));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            // The console, for `console_errors` (CSP violations land there).
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        match caps {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    /// The WebDriver client, for anything the helpers here do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    /// Chromium's `--user-data-dir`: unique to this browser.
    pub fn profile_dir(&self) -> PathBuf {
        self.dir.join("profile")
    }

    /// chromedriver's process id (its process group's id too).
    pub fn driver_pid(&self) -> u32 {
        self.driver.id()
    }

    /// Navigates and waits for the page's `load` event.
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub async fn current_url(&self) -> String {
        self.client().current_url().await.unwrap().to_string()
    }

    /// A PNG of the viewport, written to `path`; returns its bytes.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Vec<u8> {
        let png = self.client().screenshot().await.expect("screenshot");
        std::fs::write(path.as_ref(), &png).expect("write screenshot");
        png
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// Replaces the value of the input matching `css` with `text`, typed.
    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client()
            .wait()
            .at_most(Duration::from_secs(5))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css:?}: {e}"))
    }

    /// Every cookie of the current page's site, with the flags a session
    /// cookie is checked for.
    pub async fn cookies(&self) -> Vec<CookieFlags> {
        let cookies = self.client().get_all_cookies().await.unwrap();
        cookies
            .iter()
            .map(|c| CookieFlags {
                name: c.name().to_owned(),
                value: c.value().to_owned(),
                http_only: c.http_only() == Some(true),
                secure: c.secure() == Some(true),
                same_site: c.same_site().map(|s| s.to_string()),
            })
            .collect()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Every console entry since the session began (the log is drained from
    /// chromedriver on each call and kept here).
    pub async fn console(&self) -> Vec<LogEntry> {
        let fresh = self
            .client()
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver's browser log");
        let fresh = fresh.as_array().cloned().unwrap_or_default();
        let mut log = self.log.lock().unwrap();
        log.extend(fresh.iter().map(|e| LogEntry {
            level: e["level"].as_str().unwrap_or("").to_owned(),
            source: e["source"].as_str().unwrap_or("").to_owned(),
            message: e["message"].as_str().unwrap_or("").to_owned(),
        }));
        log.clone()
    }

    /// The `SEVERE` console entries so far: `console.error`, uncaught
    /// exceptions, failed loads, Content-Security-Policy violations.
    pub async fn console_errors(&self) -> Vec<LogEntry> {
        let all = self.console().await;
        all.into_iter().filter(|e| e.level == "SEVERE").collect()
    }

    /// The page's First Contentful Paint in milliseconds since navigation
    /// start, waiting up to 5 s for it; `None` when nothing was painted.
    pub async fn first_contentful_paint_ms(&self) -> Option<f64> {
        let script = "const p = performance.getEntriesByType('paint') \
                      .find(e => e.name === 'first-contentful-paint'); \
                      return p ? p.startTime : null;";
        crate::eventually(Duration::from_secs(5), || async {
            self.eval(script, vec![]).await.as_f64()
        })
        .await
    }

    /// What the page last copied with `navigator.clipboard.writeText` (the
    /// headless clipboard, read with `readText` once the current origin is
    /// granted `clipboard-read`).
    pub async fn clipboard_text(&self) -> String {
        self.grant_clipboard().await;
        let script = "const done = arguments[arguments.length - 1]; \
                      navigator.clipboard.readText() \
                        .then(t => done({ text: t }), e => done({ error: String(e) }));";
        let got = self
            .client()
            .execute_async(script, vec![])
            .await
            .expect("readText ran");
        match got["text"].as_str() {
            Some(text) => text.to_owned(),
            None => panic!("cannot read the clipboard: {}", got["error"]),
        }
    }

    async fn grant_clipboard(&self) {
        for name in ["clipboard-read", "clipboard-write"] {
            self.client()
                .issue_cmd(SetPermission(name))
                .await
                .unwrap_or_else(|e| panic!("grant {name}: {e}"));
        }
    }

    /// Ends the session, checks that chromedriver quit Chromium on its own
    /// (every process of the profile gone within 5 s), then stops
    /// chromedriver. Dropping without closing kills them all the same.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.expect("end the WebDriver session");
        }
        let profile = self.profile_dir();
        let quit = crate::eventually(Duration::from_secs(5), || async {
            processes_naming(&profile).is_empty().then_some(())
        })
        .await;
        assert!(
            quit.is_some(),
            "Chromium outlived its session: {:?}",
            processes_naming(&profile)
        );
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default()
    }
}

fn spawn_chromedriver(dir: &Path, port: u16) -> Child {
    let log = std::fs::File::create(dir.join("chromedriver.log")).expect("log file");
    Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        // Its own group, so Drop can kill it and every Chromium it started.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {CHROMEDRIVER} ({e}): run deploy/local/services up to install it")
        })
}

async fn wait_until_listening(port: u16, dir: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        let log = std::fs::read_to_string(dir.join("chromedriver.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}: {log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The session's own task dies with the client; the processes do not,
        // so they are killed here, whatever state the test left them in.
        drop(self.client.take());
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        for pid in processes_naming(&self.dir) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Process ids whose command line names `path` (a browser's profile
/// directory is unique to it): what must be gone once its [`Browser`] is.
pub fn processes_naming(path: &Path) -> Vec<u32> {
    let needle = path.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&needle))
                .unwrap_or(false)
        })
        .collect()
}

/// chromedriver's log command (`goog:loggingPrefs`), not in W3C WebDriver.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// W3C Permissions' `Set Permission` WebDriver command, which chromedriver
/// implements.
#[derive(Debug)]
struct SetPermission(&'static str);

impl WebDriverCompatibleCommand for SetPermission {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/permissions", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({ "descriptor": { "name": self.0 }, "state": "granted" });
        (http::Method::POST, Some(body.to_string()))
    }
}
