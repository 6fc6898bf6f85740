//! The timeline of one environment: its deployments, newest first, coloured
//! by status, with failed and rolled-back deployments marked; filtered by
//! repository and time window, fifty to a page.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum_extra::extract::WithRejection;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use vibemon_schemas::{EnvironmentName, RepoFullName};
use vibemon_store::read::{self, Cursor, DeploymentFilter, LineageMarks};
use vibemon_store::reference;

use crate::error::DashboardError;
use crate::pages::layout::{self, Nav};
use crate::session::{ReadPages, Signed};
use crate::state::SharedState;

/// Deployments on one page.
pub const PAGE: i64 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct TimelineQuery {
    #[serde(default)]
    repository: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
}

/// A time as a form sends it: `2026-11-29T09:30` (a `datetime-local`
/// field), `2026-11-29`, or what the read API takes (RFC 3339); a time
/// without an offset is UTC.
fn parse_time(field: &str, raw: &str) -> Result<Option<DateTime<Utc>>, DashboardError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    // What the read API takes, and the two forms a browser's date fields send.
    let parsed = vibemon_schemas::fields::parse_timestamp(raw)
        .or_else(|| {
            NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        });
    match parsed {
        Some(t) if vibemon_schemas::fields::check_timestamp_range(t, field).is_ok() => Ok(Some(t)),
        _ => Err(DashboardError::BadRequest(format!(
            "'{field}' must be a time such as 2026-11-29T09:30 (UTC) or 2026-11-29."
        ))),
    }
}

/// `GET /environments/{name}`.
pub async fn show(
    State(state): State<SharedState>,
    Signed(viewer, _): Signed<ReadPages>,
    WithRejection(Path(name), _): WithRejection<Path<String>, DashboardError>,
    WithRejection(Query(q), _): WithRejection<Query<TimelineQuery>, DashboardError>,
) -> Result<Markup, DashboardError> {
    let not_found = || DashboardError::NotFound(format!("Environment '{name}'"));
    // A name ingest would refuse (a NUL, a control character) names no
    // environment, and must not reach Postgres, which refuses NUL itself.
    EnvironmentName::parse(&name).map_err(|_| not_found())?;
    let env = reference::find_environment(&state.pool, viewer.workspace_id, &name)
        .await?
        .ok_or_else(not_found)?;
    let since = parse_time("since", &q.since)?;
    let until = parse_time("until", &q.until)?;
    let cursor = match q.cursor.as_str() {
        "" => None,
        raw => Some(Cursor::decode(raw).ok_or_else(|| {
            DashboardError::BadRequest("That page link is damaged; start from the newest.".into())
        })?),
    };
    let repository = q.repository.trim();
    if !repository.is_empty() {
        RepoFullName::parse(repository).map_err(|e| {
            DashboardError::BadRequest(format!("'repository' must be owner/name: {e}"))
        })?;
    }
    let filter = DeploymentFilter {
        environment_id: Some(env.id),
        repository: (!repository.is_empty()).then(|| repository.to_owned()),
        status: None,
        since,
        until,
    };
    let page =
        read::list_deployments(&state.pool, viewer.workspace_id, &filter, cursor, PAGE).await?;
    let ids: Vec<_> = page.items.iter().map(|d| d.id).collect();
    let marks: HashMap<_, LineageMarks> =
        read::lineage_marks(&state.pool, viewer.workspace_id, &ids)
            .await?
            .into_iter()
            .map(|m| (m.deployment_id, m))
            .collect();
    let repos: Vec<String> =
        read::overview_repositories(&state.pool, viewer.workspace_id, env.id).await?;
    let base = format!("/environments/{}", layout::segment(&env.name));
    let window = |days: i64| {
        let since = (Utc::now() - Duration::days(days))
            .format("%Y-%m-%dT%H:%M")
            .to_string();
        format!(
            "{base}{}",
            layout::query(&[("repository", repository), ("since", &since)])
        )
    };
    let older = page.next_cursor.as_deref().map(|c| {
        format!(
            "{base}{}",
            layout::query(&[
                ("repository", repository),
                ("since", q.since.trim()),
                ("until", q.until.trim()),
                ("cursor", c)
            ])
        )
    });
    let newest = format!(
        "{base}{}",
        layout::query(&[
            ("repository", repository),
            ("since", q.since.trim()),
            ("until", q.until.trim())
        ])
    );
    let mut days: Vec<(chrono::NaiveDate, Vec<&read::DeploymentView>)> = Vec::new();
    for d in &page.items {
        let day = d.deployed_at.date_naive();
        match days.last_mut() {
            Some((last, list)) if *last == day => list.push(d),
            _ => days.push((day, vec![d])),
        }
    }
    Ok(layout::page(
        &viewer,
        Nav::Environments,
        &format!("Timeline of {}", env.name),
        html! {
            p.crumbs { a href="/environments" { "Environments" } " › " (env.name) }
            h1 { "Timeline of " (env.name) }
            form.filters method="get" action=(base) {
                div {
                    label for="repository" { "Repository" }
                    input #repository name="repository" list="repositories" value=(repository) placeholder="all repositories";
                    datalist #repositories { @for r in &repos { option value=(r) {} } }
                }
                div {
                    label for="since" { "From (UTC)" }
                    input #since type="datetime-local" name="since" value=(q.since.trim());
                }
                div {
                    label for="until" { "Until (UTC)" }
                    input #until type="datetime-local" name="until" value=(q.until.trim());
                }
                button type="submit" { "Apply" }
            }
            p.windows {
                "Show: "
                a href=(window(1)) { "last 24 hours" } " · "
                a href=(window(7)) { "7 days" } " · "
                a href=(window(30)) { "30 days" } " · "
                a href={ (base) (layout::query(&[("repository", repository)])) } { "all time" }
            }
            p.legend aria-hidden="true" {
                span.badge.ok { "success" } " " span.badge.bad { "failed" } " "
                span.badge.busy { "in progress" } " " span.badge { "pending" } " "
                span.badge.mark { "rolled back" }
            }
            @if page.items.is_empty() {
                p.empty { "No deployments match." }
            } @else {
                @for (day, list) in &days {
                    h2.day { (day.format("%A %Y-%m-%d")) }
                    ol.timeline {
                    @for d in list {
                        @let mark = marks.get(&d.id);
                        @let rolled_back = mark.is_some_and(|m| m.rolled_back_by.is_some());
                        @let rollback = mark.is_some_and(|m| m.rollback_to.is_some());
                        li class={ "deployment status-" (d.status) @if rolled_back { " rolled-back" } } data-id=(d.id) {
                            a.entry href={ "/deployments/" (d.id) } {
                                span.at { (layout::when(d.deployed_at)) }
                                span.repo { (d.repo_full_name) }
                                span.sha { (layout::commit(d.commit_sha.as_deref())) }
                                span.branch { (d.branch.as_deref().unwrap_or("")) }
                                span.marks {
                                    (layout::status(&d.status))
                                    @if rolled_back { " " span.badge.mark { "rolled back" } }
                                    @if rollback { " " span.badge.mark { "rollback" } }
                                }
                                span.source.muted { (d.source.replace('_', " ")) }
                            }
                        }
                    }
                    }
                }
            }
            nav.pager aria-label="Pages" {
                @if cursor.is_some() { a href=(newest) { "← Newest" } }
                @if let Some(older) = older { a href=(older) rel="next" { "Older deployments →" } }
            }
        },
    ))
}
