//! Settings > API Keys: create a key with a name and scopes (shown once,
//! with a copy button and the seed's warning), list them, revoke one after
//! a confirmation. Admin only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::WithRejection;
use maud::{html, Markup};
use uuid::Uuid;
use vibemon_schemas::fields::DISPLAY_NAME_MAX_LEN;
use vibemon_schemas::DisplayName;
use vibemon_store::keys::{self, KeyInfo};
use vibemon_store::scopes::{Scope, Scopes};

use crate::error::DashboardError;
use crate::pages::layout::{self, Nav};
use crate::session::{AdminPages, Mutation, Signed, Viewer};
use crate::state::SharedState;

fn key_list(viewer: &Viewer, all: &[KeyInfo]) -> Markup {
    html! {
        div.scroll { table.keys {
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Key" } th scope="col" { "Scope" }
                th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { span.visually-hidden { "Actions" } }
            } }
            tbody { @for k in all {
                tr data-key-id=(k.id) class=[k.revoked_at.map(|_| "revoked")] {
                    th scope="row" { (k.name) }
                    td { code { (keys::KEY_PREFIX) (k.prefix) "_…" } }
                    td { @for s in k.scopes.iter() { span.scope { (s) } " " } }
                    td { (layout::when(k.created_at)) }
                    td { @match k.last_used_at { Some(t) => (layout::when(t)), None => span.muted { "never" } } }
                    td {
                        @match k.revoked_at {
                            Some(t) => { "revoked " (layout::when(t)) }
                            None => {
                                @if k.id == viewer.key_id {
                                    span.muted { "this session's key" }
                                } @else {
                                    a.danger href={ "/settings/keys/" (k.id) "/revoke" } { "Revoke…" }
                                }
                            }
                        }
                    }
                }
            } }
        } }
    }
}

fn create_form(viewer: &Viewer, problem: Option<&str>, name: &str) -> Markup {
    html! {
        section.card #create {
            h2 { "Create API Key" }
            (layout::problem(problem))
            form method="post" action="/settings/keys" {
                (layout::csrf(viewer))
                label for="name" { "Name" }
                input #name name="name" required maxlength=(DISPLAY_NAME_MAX_LEN) value=(name)
                    placeholder="e.g. GitHub Actions, Jenkins CI";
                fieldset {
                    legend { "Scope" }
                    @for scope in Scope::ALL {
                        label.check {
                            input type="checkbox" name="scope" value=(scope.as_str())
                                checked[scope == Scope::Ingest];
                            " " strong { (scope) } " — " (scope.grants())
                        }
                    }
                }
                button type="submit" { "Create API Key" }
            }
        }
    }
}

fn keys_page(viewer: &Viewer, all: &[KeyInfo], created: Option<Markup>, form: Markup) -> Markup {
    layout::page(
        viewer,
        Nav::Keys,
        "API Keys",
        html! {
            p.crumbs { "Settings › API Keys" }
            h1 { "API Keys" }
            @if let Some(created) = created { (created) }
            (form)
            section.card {
                h2 { "Keys of this workspace" }
                (key_list(viewer, all))
            }
        },
    )
}

/// `GET /settings/keys`.
pub async fn show(
    State(state): State<SharedState>,
    Signed(viewer, _): Signed<AdminPages>,
) -> Result<Markup, DashboardError> {
    let all = keys::list(&state.pool, viewer.workspace_id).await?;
    Ok(keys_page(
        &viewer,
        &all,
        None,
        create_form(&viewer, None, ""),
    ))
}

/// `POST /settings/keys`: creates the key and shows it, once.
pub async fn create(
    State(state): State<SharedState>,
    sent: Mutation<AdminPages>,
) -> Result<Response, DashboardError> {
    let viewer = &sent.viewer;
    let raw_name = sent.form.get("name").unwrap_or_default();
    let scopes: Option<Scopes> = sent
        .form
        .all("scope")
        .map(str::parse::<Scope>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DashboardError::BadRequest(e.to_string()))?
        .into_iter()
        .collect();
    let problem = match (DisplayName::parse(raw_name.trim()), scopes) {
        (Ok(name), Some(scopes)) => {
            let (info, plaintext) =
                keys::create(&state.pool, viewer.workspace_id, &name, scopes).await?;
            tracing::info!(key_id = %info.id, by = %viewer.key_id, scopes = %scopes, "API key created in the dashboard");
            let all = keys::list(&state.pool, viewer.workspace_id).await?;
            let created = html! {
                section.card.created role="status" {
                    h2 { "Key created: " (info.name) }
                    p.warning { strong { "Copy the key immediately - it won't be shown again." } }
                    div.copy-row {
                        label.visually-hidden for="new-key" { "The new key" }
                        input #new-key type="text" readonly value=(plaintext) spellcheck="false";
                        button #copy-key type="button" data-copy="new-key" { "Copy" }
                        span.copied role="status" aria-live="polite" {}
                    }
                    p.muted { "Scope: " (scopes) ". Send it as the " code { "X-Workspace-Key" } " header." }
                }
            };
            return Ok(
                keys_page(viewer, &all, Some(created), create_form(viewer, None, ""))
                    .into_response(),
            );
        }
        (Err(e), _) => format!("Name: {e}"),
        (Ok(_), None) => "Choose at least one scope.".to_owned(),
    };
    let all = keys::list(&state.pool, viewer.workspace_id).await?;
    let form = create_form(viewer, Some(&problem), raw_name);
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        keys_page(viewer, &all, None, form),
    )
        .into_response())
}

async fn find(state: &SharedState, viewer: &Viewer, id: &str) -> Result<KeyInfo, DashboardError> {
    let not_found = || DashboardError::NotFound(format!("API key {id}"));
    let id: Uuid = id.parse().map_err(|_| not_found())?;
    keys::list(&state.pool, viewer.workspace_id)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .ok_or_else(not_found)
}

/// `GET /settings/keys/{id}/revoke`: asks first.
pub async fn confirm_revoke(
    State(state): State<SharedState>,
    Signed(viewer, _): Signed<AdminPages>,
    WithRejection(Path(id), _): WithRejection<Path<String>, DashboardError>,
) -> Result<Markup, DashboardError> {
    let key = find(&state, &viewer, &id).await?;
    if let Some(at) = key.revoked_at {
        return Ok(layout::page(
            &viewer,
            Nav::Keys,
            "API key already revoked",
            html! {
                p.crumbs { a href="/settings/keys" { "Settings › API Keys" } " › revoke" }
                h1 { (key.name) " is already revoked" }
                p { "It was revoked " (layout::when(at)) "." }
                p { a href="/settings/keys" { "Back to the keys" } }
            },
        ));
    }
    Ok(layout::page(
        &viewer,
        Nav::Keys,
        "Revoke API key",
        html! {
            p.crumbs { a href="/settings/keys" { "Settings › API Keys" } " › revoke" }
            h1 { "Revoke " (key.name) "?" }
            p {
                "Anything that sends this key (" code { (keys::KEY_PREFIX) (key.prefix) "_…" } ") will get "
                code { "401 Invalid API key" } " within ingest's key cache time (30 seconds by default), "
                "and dashboard sessions signed in with it end at once. This cannot be undone."
            }
            (layout::confirm(
                &viewer,
                &format!("/settings/keys/{}/revoke", key.id),
                "confirm-revoke",
                &format!("Revoke {}", key.name),
                "/settings/keys",
            ))
        },
    ))
}

/// `POST /settings/keys/{id}/revoke`.
pub async fn revoke(
    State(state): State<SharedState>,
    WithRejection(Path(id), _): WithRejection<Path<String>, DashboardError>,
    sent: Mutation<AdminPages>,
) -> Result<Redirect, DashboardError> {
    let key = find(&state, &sent.viewer, &id).await?;
    if key.id == sent.viewer.key_id {
        return Err(DashboardError::BadRequest(
            "A session cannot revoke its own key; sign in with another admin key, or use \
             `vibemon key revoke`."
                .into(),
        ));
    }
    keys::revoke(&state.pool, key.id, Some(sent.viewer.workspace_id)).await?;
    tracing::info!(key_id = %key.id, by = %sent.viewer.key_id, "API key revoked in the dashboard");
    Ok(Redirect::to("/settings/keys"))
}
