//! Signing in with a key, and out.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::SignedCookieJar;
use maud::{html, Markup};
use serde::Deserialize;
use vibemon_store::scopes::{Scope, Scopes};

use crate::error::DashboardError;
use crate::pages::layout;
use crate::session::{self, AnySession, ClientIp, Mutation, SignInRefused};
use crate::state::SharedState;

/// Where a key lands after signing in: the environments when it may read,
/// its settings when it may only administer.
fn landing(scopes: Scopes) -> &'static str {
    if scopes.contains(Scope::Read) {
        "/environments"
    } else {
        "/settings/keys"
    }
}

fn form(problem: Option<&str>) -> Markup {
    layout::bare(
        "Sign in",
        html! {
            section.narrow {
                h1 { "Sign in" }
                p {
                    "Sign in with a workspace API key that has the " code { "read" }
                    " or " code { "admin" } " scope. The key is checked once; the browser then "
                    "holds a session, never the key."
                }
                (layout::problem(problem))
                form method="post" action="/sign-in" {
                    label for="key" { "API key" }
                    input #key type="password" name="key" autocomplete="off" required
                        placeholder="vmk_…" spellcheck="false" autofocus;
                    button type="submit" { "Sign in" }
                }
                p.muted {
                    "No key? An admin creates one in Settings › API Keys, or with "
                    code { "vibemon key create --scope read" } "."
                }
            }
        },
    )
}

/// `GET /sign-in`: the form, or onwards when already signed in.
pub async fn show(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    match session::current(&headers, &state).await {
        Ok(Some(viewer)) => Redirect::to(landing(viewer.scopes)).into_response(),
        _ => form(None).into_response(),
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    key: String,
}

/// `POST /sign-in`: checks the key, sets the session cookie.
pub async fn submit(
    State(state): State<SharedState>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Form(sent): Form<SignInForm>,
) -> Result<Response, DashboardError> {
    session::check_same_origin(&headers, state.public_origin.as_deref())?;
    let jar = SignedCookieJar::from_headers(&headers, state.cookie_key.clone());
    match session::sign_in(&state, client, &sent.key).await {
        Ok((cookie, scopes)) => {
            Ok((jar.add(cookie), Redirect::to(landing(scopes))).into_response())
        }
        Err(SignInRefused::InvalidKey) => Ok((
            StatusCode::UNAUTHORIZED,
            form(Some(
                "Invalid API key: check that it was copied whole and has not been revoked.",
            )),
        )
            .into_response()),
        Err(SignInRefused::NoDashboardScope(scopes)) => Ok((
            StatusCode::FORBIDDEN,
            form(Some(&format!(
                "This key has the scope {scopes}, which only lets it send reports. The \
                 dashboard needs a key with the read or admin scope."
            ))),
        )
            .into_response()),
        Err(SignInRefused::Failed(e)) => Err(e),
    }
}

/// `POST /sign-out`: ends the session.
pub async fn sign_out(
    State(state): State<SharedState>,
    headers: HeaderMap,
    done: Mutation<AnySession>,
) -> Result<Response, DashboardError> {
    let jar = SignedCookieJar::from_headers(&headers, state.cookie_key.clone());
    let jar = session::sign_out(&state, &done.viewer, jar).await?;
    Ok((jar, Redirect::to("/sign-in")).into_response())
}
