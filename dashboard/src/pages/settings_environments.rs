//! Settings > Environments: create, rename, delete (after a confirmation
//! that says how much history the environment has). Admin only.
//!
//! Ingest caches environment names for a short while, so a renamed or
//! deleted environment's old name keeps being accepted for up to that
//! cache's lifetime (`INGEST_ENV_CACHE_TTL_SECS`, 5 s by default); the projected history is kept either way (the read
//! model is what the topic says happened).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::WithRejection;
use maud::{html, Markup};
use uuid::Uuid;
use vibemon_schemas::fields::ENVIRONMENT_MAX_LEN;
use vibemon_schemas::EnvironmentName;
use vibemon_store::reference::{self, Environment};

use crate::error::DashboardError;
use crate::pages::layout::{self, Nav};
use crate::session::{AdminPages, Mutation, Signed, Viewer};
use crate::state::SharedState;

fn page(viewer: &Viewer, all: &[Environment], problem: Option<&str>, name: &str) -> Markup {
    layout::page(
        viewer,
        Nav::SettingsEnvironments,
        "Environments settings",
        html! {
            p.crumbs { "Settings › Environments" }
            h1 { "Environments" }
            (layout::problem(problem))
            section.card {
                h2 { "Create an environment" }
                p.muted { "Names are case-sensitive and must match what CI systems send, e.g. " code { "production" } "." }
                form.inline method="post" action="/settings/environments" {
                    (layout::csrf(viewer))
                    label for="new-environment" { "Name" }
                    input #new-environment name="name" required maxlength=(ENVIRONMENT_MAX_LEN) value=(name);
                    button type="submit" { "Create" }
                }
            }
            section.card {
                h2 { "Environments of this workspace" }
                @if all.is_empty() { p.empty { "None yet." } }
                ul.settings-list {
                    @for env in all {
                        li data-environment=(env.name) {
                            strong { (env.name) }
                            form.inline method="post" action={ "/settings/environments/" (env.id) "/rename" } {
                                (layout::csrf(viewer))
                                label.visually-hidden for={ "rename-" (env.id) } { "New name for " (env.name) }
                                input id={ "rename-" (env.id) } name="name" required maxlength=(ENVIRONMENT_MAX_LEN) value=(env.name);
                                button type="submit" { "Rename" }
                            }
                            a.danger href={ "/settings/environments/" (env.id) "/delete" } { "Delete…" }
                        }
                    }
                }
            }
        },
    )
}

async fn render(
    state: &SharedState,
    viewer: &Viewer,
    problem: Option<&str>,
    name: &str,
) -> Result<Markup, DashboardError> {
    let all = reference::list_environments(&state.pool, viewer.workspace_id).await?;
    Ok(page(viewer, &all, problem, name))
}

/// `GET /settings/environments`.
pub async fn show(
    State(state): State<SharedState>,
    Signed(viewer, _): Signed<AdminPages>,
) -> Result<Markup, DashboardError> {
    render(&state, &viewer, None, "").await
}

/// A name refused, said on the page with a 422.
async fn refused(
    state: &SharedState,
    viewer: &Viewer,
    problem: String,
    name: &str,
) -> Result<Response, DashboardError> {
    let body = render(state, viewer, Some(&problem), name).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, body).into_response())
}

/// `POST /settings/environments`.
pub async fn create(
    State(state): State<SharedState>,
    sent: Mutation<AdminPages>,
) -> Result<Response, DashboardError> {
    let raw = sent.form.get("name").unwrap_or_default();
    let name = match EnvironmentName::parse(raw) {
        Ok(name) => name,
        Err(e) => return refused(&state, &sent.viewer, format!("Name: {e}"), raw).await,
    };
    match reference::create_environment(&state.pool, sent.viewer.workspace_id, name.as_str()).await
    {
        Ok(env) => {
            tracing::info!(environment = %env.id, by = %sent.viewer.key_id, "environment created in the dashboard");
            Ok(Redirect::to("/settings/environments").into_response())
        }
        Err(e) if vibemon_store::is_unique_violation(&e) => {
            let problem = format!("An environment called '{}' already exists.", name.as_str());
            refused(&state, &sent.viewer, problem, raw).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn find(
    state: &SharedState,
    viewer: &Viewer,
    id: &str,
) -> Result<Environment, DashboardError> {
    let not_found = || DashboardError::NotFound(format!("Environment {id}"));
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    reference::list_environments(&state.pool, viewer.workspace_id)
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(not_found)
}

/// `POST /settings/environments/{id}/rename`.
pub async fn rename(
    State(state): State<SharedState>,
    WithRejection(Path(id), _): WithRejection<Path<String>, DashboardError>,
    sent: Mutation<AdminPages>,
) -> Result<Response, DashboardError> {
    let env = find(&state, &sent.viewer, &id).await?;
    let raw = sent.form.get("name").unwrap_or_default();
    let name = match EnvironmentName::parse(raw) {
        Ok(name) => name,
        Err(e) => {
            return refused(
                &state,
                &sent.viewer,
                format!("New name for '{}': {e}", env.name),
                "",
            )
            .await
        }
    };
    match reference::rename_environment(
        &state.pool,
        sent.viewer.workspace_id,
        &env.name,
        name.as_str(),
    )
    .await
    {
        Ok(_) => {
            tracing::info!(environment = %env.id, by = %sent.viewer.key_id, "environment renamed in the dashboard");
            Ok(Redirect::to("/settings/environments").into_response())
        }
        Err(e) if vibemon_store::is_unique_violation(&e) => {
            let problem = format!("An environment called '{}' already exists.", name.as_str());
            refused(&state, &sent.viewer, problem, "").await
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /settings/environments/{id}/delete`: asks first, saying how much
/// history the environment has.
pub async fn confirm_delete(
    State(state): State<SharedState>,
    Signed(viewer, _): Signed<AdminPages>,
    WithRejection(Path(id), _): WithRejection<Path<String>, DashboardError>,
) -> Result<Markup, DashboardError> {
    let env = find(&state, &viewer, &id).await?;
    let used = reference::count_deployments(&state.pool, env.id).await?;
    Ok(layout::page(
        &viewer,
        Nav::SettingsEnvironments,
        "Delete environment",
        html! {
            p.crumbs { a href="/settings/environments" { "Settings › Environments" } " › delete" }
            h1 { "Delete " (env.name) "?" }
            p {
                @if used > 0 {
                    (env.name) " has " strong { (used) " deployments" } ". Their history is kept, but "
                    "ingest will refuse new reports for " (env.name) " with a 404 once its cache "
                    "forgets the name (INGEST_ENV_CACHE_TTL_SECS, 5 seconds by default). "
                } @else {
                    (env.name) " has no deployments. "
                }
                "Creating it again later makes a new environment."
            }
            (layout::confirm(
                &viewer,
                &format!("/settings/environments/{}/delete", env.id),
                "confirm-delete",
                &format!("Delete {}", env.name),
                "/settings/environments",
            ))
        },
    ))
}

/// `POST /settings/environments/{id}/delete`.
pub async fn delete(
    State(state): State<SharedState>,
    WithRejection(Path(id), _): WithRejection<Path<String>, DashboardError>,
    sent: Mutation<AdminPages>,
) -> Result<Redirect, DashboardError> {
    let env = find(&state, &sent.viewer, &id).await?;
    reference::delete_environment(&state.pool, env.id).await?;
    tracing::info!(environment = %env.id, by = %sent.viewer.key_id, "environment deleted in the dashboard");
    Ok(Redirect::to("/settings/environments"))
}
