//! Part 7: the dashboard's first screen. A timeline of 10,000 deployments in
//! one environment (written straight into the read model), opened in
//! Debian's Chromium over WebDriver: First Contentful Paint from the
//! browser's own Paint Timing entry, and the server's share (request start
//! to response end) from Navigation Timing, over several fresh loads.
//!
//! The instrument's ceiling is measured beside it: the same page's HTML and
//! CSS, saved and served as static bytes by a trivial server, loaded the
//! same way. Its FCP is what this browser on this machine needs for that
//! page whatever the dashboard does; the difference is the dashboard's.

use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use vibemon_store::scopes::Scopes;
use vibemon_testkit::browser::Browser;
use vibemon_testkit::spawned::Spawned;
use vibemon_testkit::{Tenant, TestDb};

use crate::report::{Report, Row};

/// Deployments in the environment.
pub const DEPLOYMENTS: i64 = 10_000;
/// Fresh loads measured (after one warm-up load each).
const LOADS: usize = 15;

/// Writes `DEPLOYMENTS` deployments over 90 days into `production`, with
/// failures, three repositories and lineage rows with rollbacks, in one
/// statement per table.
async fn seed(db: &TestDb, tenant: &Tenant) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO deployments (id, workspace_id, environment_id, environment, repo_full_name,
             branch, commit_sha, status, source, deployed_at, extra_data, external_id,
             created_at, updated_at, status_rank, last_event_id, reports)
         SELECT id, $1, $2, 'production', 'acme/service-' || (i % 3), 'main',
                md5(i::text) || substr(md5((i + 1)::text), 1, 8),
                CASE WHEN i % 17 = 0 THEN 'failed' ELSE 'success' END, 'github_actions',
                now() - (i || ' minutes')::interval * 13, '{}', NULL, now(), now(), 0, id, 1
         FROM (SELECT gen_random_uuid() AS id, i FROM generate_series(1, $3) i) s",
    )
    .bind(tenant.workspace_id)
    .bind(tenant.environment_id)
    .bind(DEPLOYMENTS as i32)
    .execute(&db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO deployment_lineage (deployment_id, workspace_id, environment_id,
             repo_full_name, deployed_at, commit_sha, rolled_back_by)
         SELECT id, workspace_id, environment_id, repo_full_name, deployed_at, commit_sha,
                CASE WHEN row_number() OVER (ORDER BY deployed_at) % 50 = 0 THEN id END
         FROM deployments WHERE status = 'success'",
    )
    .execute(&db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO current_deployments (workspace_id, environment_id, repo_full_name,
             deployment_id, commit_sha, branch, deployed_at)
         SELECT DISTINCT ON (repo_full_name) workspace_id, environment_id, repo_full_name,
                id, commit_sha, branch, deployed_at
         FROM deployments WHERE status = 'success'
         ORDER BY repo_full_name, deployed_at DESC",
    )
    .execute(&db.pool)
    .await?;
    sqlx::query("ANALYZE").execute(&db.pool).await?;
    Ok(())
}

/// One fresh load of `url`: FCP and the server's time, in ms.
async fn load(browser: &Browser, url: &str) -> anyhow::Result<(f64, f64)> {
    browser.goto("about:blank").await;
    browser.goto(url).await;
    let timing: Value = browser
        .eval(
            "const n = performance.getEntriesByType('navigation')[0];
             return [n.responseEnd - n.requestStart, n.domContentLoadedEventEnd];",
            vec![],
        )
        .await;
    let fcp = browser
        .first_contentful_paint_ms()
        .await
        .ok_or_else(|| anyhow::anyhow!("no first-contentful-paint entry for {url}"))?;
    let server = timing[0].as_f64().unwrap_or(f64::NAN);
    Ok((fcp, server))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::MIN, f64::max)
}

/// Serves fixed bytes for the page and its stylesheet: the ceiling.
async fn static_copy(html: String, css_path: String, css: String) -> Spawned {
    let app = Router::new()
        .route(
            "/page",
            get(move || {
                let html = html.clone();
                async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html) }
            }),
        )
        .route(
            &css_path,
            get(move || {
                let css = css.clone();
                async move { ([(header::CONTENT_TYPE, "text/css")], css) }
            }),
        );
    Spawned::start(|listener, shutdown| async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    })
    .await
}

pub async fn run(report: &mut Report) -> anyhow::Result<()> {
    let db = TestDb::new().await;
    let tenant = Tenant::create(&db.pool, "bench").await;
    eprintln!("dashboard: writing {DEPLOYMENTS} deployments into one environment");
    seed(&db, &tenant).await?;
    let (_, key) = vibemon_store::keys::create(
        &db.pool,
        tenant.workspace_id,
        &vibemon_schemas::DisplayName::parse("bench").unwrap(),
        Scopes::parse_list("read")?,
    )
    .await?;
    let config = vibemon_dashboard::config::Config::new(&db.url);
    let dashboard = Spawned::start(|l, s| vibemon_dashboard::serve(config, l, s)).await;
    let browser = Browser::start(1280, 900).await;
    browser.goto(&dashboard.url("/sign-in")).await;
    browser.fill("#key", &key).await;
    browser.click("button[type=submit]").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timeline = dashboard.url("/environments/production");

    // The page as served, for the static copy.
    browser.goto(&timeline).await;
    let html: Value = browser
        .eval("return document.documentElement.outerHTML", vec![])
        .await;
    let mut html = format!("<!DOCTYPE html>{}", html.as_str().unwrap_or_default());
    let items = browser
        .eval(
            "return document.querySelectorAll('li.deployment').length",
            vec![],
        )
        .await;
    anyhow::ensure!(
        items == json!(50),
        "the first screen holds {items} deployments, not 50"
    );
    let css_path = html
        .split("href=\"")
        .find(|s| s.starts_with("/assets/app."))
        .and_then(|s| s.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("no stylesheet link in the page"))?
        .to_owned();
    let css = reqwest::get(dashboard.url(&css_path)).await?.text().await?;
    // The script is left out of the copy: it does nothing until a click.
    if let (Some(start), Some(end)) = (html.find("<script"), html.find("</script>")) {
        html.replace_range(start..end + "</script>".len(), "");
    }
    let ceiling = static_copy(html, css_path, css).await;

    let (mut fcps, mut servers, mut static_fcps) = (Vec::new(), Vec::new(), Vec::new());
    load(&browser, &timeline).await?;
    load(&browser, &ceiling.url("/page")).await?;
    for _ in 0..LOADS {
        // Side by side: one of each, in turn.
        let (fcp, server) = load(&browser, &timeline).await?;
        fcps.push(fcp);
        servers.push(server);
        static_fcps.push(load(&browser, &ceiling.url("/page")).await?.0);
    }
    browser.close().await;
    let fcp = median(fcps.clone());
    let server = median(servers.clone());
    let floor = median(static_fcps.clone());
    eprintln!(
        "dashboard: FCP median {fcp:.1} ms (max {:.1}), server {server:.1} ms, static copy {floor:.1} ms",
        max(&fcps)
    );
    report.figures.dashboard_fcp_ms = Some(fcp);
    report.rows.push(Row {
        part: "dashboard",
        what: format!("timeline of {DEPLOYMENTS} deployments, first screen (FCP)"),
        rate: None,
        unit: "",
        latency_ms: Some([fcp, max(&fcps), max(&fcps)]),
        peak_rss_mib: None,
        note: format!(
            "median and max of {LOADS} fresh loads in Chromium; the server's part (request start \
             to response end) median {server:.1} ms, max {:.1} ms",
            max(&servers)
        ),
    });
    report.rows.push(Row {
        part: "dashboard",
        what: "the same page as static bytes (the instrument's floor)".into(),
        rate: None,
        unit: "",
        latency_ms: Some([floor, max(&static_fcps), max(&static_fcps)]),
        peak_rss_mib: None,
        note: format!(
            "same browser, same loads, taken in turn with the dashboard's; FCP over the floor: \
             {:.1} ms",
            fcp - floor
        ),
    });
    dashboard.stop().await?;
    ceiling.stop().await?;
    Ok(())
}
