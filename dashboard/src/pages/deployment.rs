//! One deployment: what it was, where it sits among its environment's
//! successes (predecessor, rollbacks), the commits it shipped, and every
//! report of it (who reported what, when, and where in Kafka).

use axum::extract::{Path, State};
use axum_extra::extract::WithRejection;
use maud::{html, Markup};
use uuid::Uuid;
use vibemon_store::read;

use crate::error::DashboardError;
use crate::pages::layout::{self, Nav};
use crate::session::{ReadPages, Signed};
use crate::state::SharedState;

/// `GET /deployments/{id}`.
pub async fn show(
    State(state): State<SharedState>,
    Signed(viewer, _): Signed<ReadPages>,
    WithRejection(Path(id), _): WithRejection<Path<String>, DashboardError>,
) -> Result<Markup, DashboardError> {
    let not_found = || DashboardError::NotFound(format!("Deployment {id}"));
    let uuid: Uuid = id.parse().map_err(|_| not_found())?;
    let detail = read::get_deployment(&state.pool, viewer.workspace_id, uuid)
        .await?
        .ok_or_else(not_found)?;
    let d = &detail.deployment;
    // The environment as it is called now (it may have been renamed since
    // the report, whose name `d.environment` keeps), or none if deleted.
    let env_now = vibemon_store::reference::list_environments(&state.pool, viewer.workspace_id)
        .await?
        .into_iter()
        .find(|e| e.id == d.environment_id);
    let env_crumb = match &env_now {
        Some(env) => html! {
            a href={ "/environments/" (layout::segment(&env.name)) } { (env.name) }
        },
        None => html! { (d.environment) " (deleted)" },
    };
    let extra = serde_json::to_string_pretty(&d.extra_data).unwrap_or_default();
    let deployment_link = |id: Uuid| html! { a href={ "/deployments/" (id) } { code { (id) } } };
    Ok(layout::page(
        &viewer,
        Nav::Environments,
        &format!("Deployment of {}", d.repo_full_name),
        html! {
            p.crumbs {
                a href="/environments" { "Environments" } " › "
                (env_crumb) " › deployment"
            }
            h1 { (d.repo_full_name) " in " (d.environment) " " (layout::status(&d.status)) }
            dl.facts {
                dt { "Commit" } dd { code.full { (d.commit_sha.as_deref().unwrap_or("none reported")) } }
                dt { "Branch" } dd { (d.branch.as_deref().unwrap_or("none reported")) }
                dt { "Deployed" } dd { (layout::when(d.deployed_at)) }
                dt { "CI system" } dd { (d.source.replace('_', " ")) }
                dt { "First reported" } dd { (layout::when(d.created_at)) }
                dt { "Last changed" } dd { (layout::when(d.updated_at)) }
                dt { "External id" } dd { (d.external_id.as_deref().unwrap_or("none")) }
                dt { "Deployment id" } dd { code { (d.id) } }
                dt { "Reports" } dd { (d.reports) }
            }
            @if let Some(l) = &detail.lineage {
                section.card {
                    h2 { "What changed" }
                    dl.facts {
                        dt { "Previous success" }
                        dd {
                            @match l.predecessor_id {
                                Some(p) => { (deployment_link(p)) " at " (layout::commit(l.predecessor_commit_sha.as_deref())) }
                                None => { "none: the first success of this repository here" }
                            }
                        }
                        @if let (Some(from), Some(to)) = (&l.predecessor_commit_sha, &d.commit_sha) {
                            dt { "Commit range" } dd { code { (from) ".." (to) } }
                        }
                        @if let Some(to) = l.rollback_to {
                            dt { "Rollback" } dd { span.badge.mark { "rollback" } " to the commit of " (deployment_link(to)) }
                        }
                        @if let Some(by) = l.rolled_back_by {
                            dt { "Rolled back" } dd { span.badge.mark { "rolled back" } " by " (deployment_link(by)) }
                        }
                    }
                }
            }
            section.card {
                h2 { "Commits" }
                @if detail.commits.is_empty() {
                    p.empty { "No commit list was reported with this deployment." }
                } @else {
                    div.scroll { table {
                        thead { tr { th scope="col" { "Commit" } th scope="col" { "Subject" } th scope="col" { "Author" } th scope="col" { "Committed" } } }
                        tbody { @for c in &detail.commits { tr {
                            td { (layout::commit(Some(&c.sha))) }
                            td { (c.subject.as_deref().unwrap_or("")) }
                            td { (c.author.as_deref().unwrap_or("")) }
                            td { (layout::when(c.committed_at)) }
                        } } }
                    } }
                }
            }
            section.card {
                h2 { "Reports" }
                p.muted { "Every report of this deployment, oldest first, as the audit trail holds it." }
                div.scroll { table.reports {
                    thead { tr {
                        th scope="col" { "Received" } th scope="col" { "Status" } th scope="col" { "Reported by" }
                        th scope="col" { "CI system" } th scope="col" { "Kafka" } th scope="col" { "Event" }
                    } }
                    tbody { @for r in &detail.report_log { tr {
                        td { (layout::when(r.received_at)) }
                        td { (layout::status(&r.status)) }
                        td { (r.api_key_name) }
                        td { (r.source.replace('_', " ")) }
                        td { code { (r.kafka_topic) "/" (r.kafka_partition) "@" (r.kafka_offset) } }
                        td { code { (r.event_id) } }
                    } } }
                } }
            }
            section.card {
                h2 { "Extra data" }
                pre.json { (extra) }
            }
        },
    ))
}
