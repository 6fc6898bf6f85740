//! The frame every page shares (head, navigation, sign-out) and the small
//! pieces several pages show the same way: times, statuses, commits.

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{html, Markup, DOCTYPE};
use vibemon_store::scopes::Scope;

use crate::assets;
use crate::session::Viewer;

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Environments,
    Keys,
    SettingsEnvironments,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Vibe Monitor" }
            link rel="stylesheet" href=(*assets::CSS_PATH);
            link rel="icon" href=(*assets::ICON_PATH) type="image/svg+xml";
            script src=(*assets::JS_PATH) defer {}
        }
    }
}

/// A page for a signed-in viewer: navigation by scope, and sign-out.
pub fn page(viewer: &Viewer, nav: Nav, title: &str, content: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            li {
                @if nav == target {
                    a href=(href) aria-current="page" { (label) }
                } @else {
                    a href=(href) { (label) }
                }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/environments" { "Vibe Monitor" }
                    span.workspace title="Workspace" { (viewer.workspace_name) }
                    nav aria-label="Main" {
                        ul {
                            @if viewer.scopes.contains(Scope::Read) {
                                (item(Nav::Environments, "/environments", "Environments"))
                            }
                            @if viewer.scopes.contains(Scope::Admin) {
                                (item(Nav::Keys, "/settings/keys", "Settings › API Keys"))
                                (item(Nav::SettingsEnvironments, "/settings/environments", "Settings › Environments"))
                            }
                        }
                    }
                    form.sign-out method="post" action="/sign-out" {
                        input type="hidden" name="csrf" value=(viewer.csrf);
                        span.who { "Signed in as " strong { (viewer.key_name) } }
                        button type="submit" { "Sign out" }
                    }
                }
                main #main tabindex="-1" { (content) }
            }
        }
    }
}

/// A page without navigation: sign-in and errors.
pub fn bare(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/environments" { "Vibe Monitor" } }
                main #main tabindex="-1" { (content) }
            }
        }
    }
}

/// A time in UTC, machine-readable too.
pub fn when(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(SecondsFormat::Secs, true)) {
            (at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// A status as a coloured badge; the word is always there, so colour is
/// never the only sign.
pub fn status(status: &str) -> Markup {
    let class = match status {
        "success" => "badge ok",
        "failed" => "badge bad",
        "in_progress" => "badge busy",
        _ => "badge",
    };
    html! { span class=(class) data-status=(status) { (status.replace('_', " ")) } }
}

/// A commit as its first 12 digits, the whole SHA in the title.
pub fn commit(sha: Option<&str>) -> Markup {
    match sha {
        Some(sha) => html! { code title=(sha) { (sha.get(..12).unwrap_or(sha)) } },
        None => html! { span.muted { "no commit" } },
    }
}

/// A form's CSRF field.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}

/// The confirmation of a destructive action: a form posting to `action`
/// with a danger button (id `button_id`) and a way back to `cancel`.
pub fn confirm(
    viewer: &Viewer,
    action: &str,
    button_id: &str,
    label: &str,
    cancel: &str,
) -> Markup {
    html! {
        form method="post" action=(action) {
            (csrf(viewer))
            button.danger id=(button_id) type="submit" { (label) }
            " "
            a href=(cancel) { "Cancel" }
        }
    }
}

/// A message above a form: what went wrong with what was sent.
pub fn problem(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p.problem role="alert" { (text) }
        }
    }
}

/// A path segment or query value, percent-encoded (environment names may
/// hold `/`, branches `&`).
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A query string from pairs, empty values left out.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", segment(v)))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}
