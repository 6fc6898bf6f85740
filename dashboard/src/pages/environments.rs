//! Environments: every environment with what runs there now, per repository.

use axum::extract::State;
use maud::{html, Markup};
use vibemon_store::read;

use crate::error::DashboardError;
use crate::pages::layout::{self, Nav};
use crate::session::{ReadPages, Signed};
use crate::state::SharedState;

/// `GET /environments`.
pub async fn show(
    State(state): State<SharedState>,
    Signed(viewer, _): Signed<ReadPages>,
) -> Result<Markup, DashboardError> {
    let all = read::overview(&state.pool, viewer.workspace_id).await?;
    Ok(layout::page(
        &viewer,
        Nav::Environments,
        "Environments",
        html! {
            h1 { "Environments" }
            p.muted {
                "What runs in each environment: per repository, its last successful deployment. "
                "A later deployment that failed or is still under way is shown under it."
            }
            @if all.is_empty() {
                p.empty { "This workspace has no environments yet." }
            }
            @for (env, running) in &all {
                section.card data-environment=(env.name) {
                    h2 {
                        a href={ "/environments/" (layout::segment(&env.name)) } { (env.name) }
                    }
                    @if running.is_empty() {
                        p.empty { "Nothing deployed here yet." }
                    } @else {
                        div.scroll {
                            table {
                                caption.visually-hidden { "What runs in " (env.name) " now" }
                                thead { tr {
                                    th scope="col" { "Repository" }
                                    th scope="col" { "Commit" }
                                    th scope="col" { "Branch" }
                                    th scope="col" { "Status" }
                                    th scope="col" { "Deployed" }
                                    th scope="col" { "By" }
                                } }
                                tbody {
                                    @for r in running {
                                        tr data-repository=(r.repo_full_name) {
                                            th scope="row" { (r.repo_full_name) }
                                            td { a href={ "/deployments/" (r.deployment_id) } { (layout::commit(r.commit_sha.as_deref())) } }
                                            td { (r.branch.as_deref().unwrap_or("")) }
                                            td {
                                                (layout::status(&r.status))
                                                @if r.rollback_to.is_some() { " " span.badge.mark { "rollback" } }
                                                @if let (Some(id), Some(status), Some(at)) = (r.later_id, &r.later_status, r.later_at) {
                                                    div.later {
                                                        "then " a href={ "/deployments/" (id) } { (layout::status(status)) }
                                                        " " (layout::when(at))
                                                    }
                                                }
                                            }
                                            td { (layout::when(r.deployed_at)) }
                                            td {
                                                span.source { (r.source.replace('_', " ")) }
                                                @if let Some(by) = &r.reported_by { br; span.muted { (by) } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    p { a href={ "/environments/" (layout::segment(&env.name)) } { "Timeline of " (env.name) " →" } }
                }
            }
        },
    ))
}
