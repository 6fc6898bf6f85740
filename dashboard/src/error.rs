//! The one error type of the dashboard, and the one place it becomes a
//! status code and a page.
//!
//! A person, not a program, reads these: each page says what happened and
//! what to do. Failures that are ours to fix are logged at `error` with
//! their cause; the page never shows internals.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use vibemon_store::scopes::Scope;

use crate::pages::layout;

/// Everything a dashboard request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// No session, or one that expired, was signed out, or whose key was
    /// revoked: back to the sign-in page.
    #[error("sign-in required")]
    SignInRequired,
    /// Signed in, but the key lacks the scope the page needs (named).
    #[error("key lacks the {0} scope")]
    Forbidden(Scope),
    /// A form without a valid CSRF token, or sent from another origin.
    #[error("cross-site request refused: {0}")]
    CrossSite(&'static str),
    /// Nothing of this workspace by that name or id.
    #[error("{0} not found")]
    NotFound(String),
    /// A query parameter or form field that cannot be understood.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Too many sign-ins are being verified at once.
    #[error("sign-in is saturated")]
    Busy,
    /// This client tried to sign in too often.
    #[error("too many sign-ins from this client")]
    TooManySignIns,
    /// Postgres did not answer.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A path segment that is not UTF-8, say: the page says so with a 400.
impl From<PathRejection> for DashboardError {
    fn from(rejection: PathRejection) -> Self {
        DashboardError::BadRequest(format!(
            "This address cannot be read: {}",
            rejection.body_text()
        ))
    }
}

/// A query string that cannot be read.
impl From<QueryRejection> for DashboardError {
    fn from(rejection: QueryRejection) -> Self {
        DashboardError::BadRequest(format!(
            "This address cannot be read: {}",
            rejection.body_text()
        ))
    }
}

impl DashboardError {
    fn status(&self) -> StatusCode {
        match self {
            DashboardError::SignInRequired => StatusCode::SEE_OTHER,
            DashboardError::Forbidden(_) | DashboardError::CrossSite(_) => StatusCode::FORBIDDEN,
            DashboardError::NotFound(_) => StatusCode::NOT_FOUND,
            DashboardError::BadRequest(_) => StatusCode::BAD_REQUEST,
            DashboardError::TooManySignIns => StatusCode::TOO_MANY_REQUESTS,
            DashboardError::Busy | DashboardError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn explanation(&self) -> (String, String) {
        match self {
            DashboardError::SignInRequired => ("Sign in".into(), String::new()),
            DashboardError::Forbidden(scope) => (
                "Not allowed".into(),
                format!(
                    "This page needs a key with the '{scope}' scope (it lets a key {}). \
                     Sign in with such a key, or ask an admin for one.",
                    scope.grants()
                ),
            ),
            DashboardError::CrossSite(_) => (
                "Request refused".into(),
                "The form was not sent from this dashboard's own page, or the page was open \
                 too long. Go back, reload the page and try again."
                    .into(),
            ),
            DashboardError::NotFound(what) => (
                "Not found".into(),
                format!("{what} was not found in this workspace."),
            ),
            DashboardError::BadRequest(why) => ("Cannot show this".into(), why.clone()),
            DashboardError::Busy => (
                "Busy".into(),
                "Too many sign-ins are being checked at once; try again in a few seconds.".into(),
            ),
            DashboardError::TooManySignIns => (
                "Too many sign-ins".into(),
                "This address tried to sign in too often; wait a minute and try again.".into(),
            ),
            DashboardError::Database(_) => (
                "Database unavailable".into(),
                "The dashboard cannot reach its database right now; nothing was changed. \
                 Try again shortly."
                    .into(),
            ),
        }
    }
}

impl IntoResponse for DashboardError {
    fn into_response(self) -> Response {
        match &self {
            DashboardError::SignInRequired => return Redirect::to("/sign-in").into_response(),
            DashboardError::Database(e) => tracing::error!(error = %e, "dashboard request failed"),
            other => tracing::debug!(error = %other, "dashboard request refused"),
        }
        let (title, text) = self.explanation();
        let body = layout::bare(
            &title,
            html! {
                h1 { (title) }
                p.notice { (text) }
                p { a href="/environments" { "Back to the environments" } }
            },
        );
        (self.status(), body).into_response()
    }
}
