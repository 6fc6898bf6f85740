//! Who may see and do what: sessions, scopes, CSRF, headers, escaping.

use axum::http::{header, StatusCode};
use serde_json::json;
use vibemon_store::keys;

use crate::helpers::{Dash, Row, Session};

/// The read pages that need no id, for the redirect test.
const PAGES: &[(&str, &str)] = &[
    ("/environments", "read"),
    ("/environments/production", "read"),
    ("/settings/keys", "admin"),
    ("/settings/environments", "admin"),
];

/// Every route a session may use: method, path (`{deployment}`, `{key}`,
/// `{env}` filled in), the scope it needs, and the status a key holding it
/// gets (with the CSRF token, on a post).
const ROUTES: &[(&str, &str, &str, u16)] = &[
    ("GET", "/environments", "read", 200),
    ("GET", "/environments/production", "read", 200),
    ("GET", "/deployments/{deployment}", "read", 200),
    ("GET", "/settings/keys", "admin", 200),
    ("POST", "/settings/keys", "admin", 200),
    ("GET", "/settings/keys/{key}/revoke", "admin", 200),
    ("POST", "/settings/keys/{key}/revoke", "admin", 303),
    ("GET", "/settings/environments", "admin", 200),
    ("POST", "/settings/environments", "admin", 303),
    ("POST", "/settings/environments/{env}/rename", "admin", 303),
    ("GET", "/settings/environments/{env}/delete", "admin", 200),
    ("POST", "/settings/environments/{env}/delete", "admin", 303),
];

#[tokio::test]
async fn every_route_is_listed_with_its_scope_and_refuses_a_key_without_it_naming_the_scope() {
    // The router's routes, from its source: a route added without a line
    // in ROUTES fails here.
    let app = include_str!("../../src/app.rs");
    let mut listed: Vec<&str> = ROUTES.iter().map(|(_, p, _, _)| *p).collect();
    listed.extend([
        "/",
        "/sign-in",
        "/sign-out",
        "/assets/{file}",
        "/healthz",
        "/readyz",
        "/metrics",
        "/environments/{name}",
        "/deployments/{id}",
        "/settings/keys/{id}/revoke",
        "/settings/environments/{id}/rename",
        "/settings/environments/{id}/delete",
    ]);
    for route in app.split(".route(").skip(1) {
        let path = route.trim_start().trim_start_matches('"');
        let path = &path[..path.find('"').unwrap()];
        assert!(
            listed.contains(&path),
            "{path} is not in ROUTES with its scope"
        );
    }

    for scopes in ["read", "admin", "ingest,read", "read,admin"] {
        let dash = Dash::new().await;
        let deployment = dash.deployment(Row::default()).await;
        let (_, key) = dash.key(scopes).await;
        let session = dash.sign_in(&key).await;
        for (method, path, needs, ok) in ROUTES {
            let (victim, _) = dash.key("ingest").await;
            let env = vibemon_store::reference::create_environment(
                &dash.db.pool,
                dash.tenant.workspace_id,
                &format!("e{}", uuid::Uuid::new_v4().simple()),
            )
            .await
            .unwrap();
            let path = path
                .replace("{deployment}", &deployment.to_string())
                .replace("{key}", &victim.to_string())
                .replace("{env}", &env.id.to_string());
            let fresh = format!("f{}", uuid::Uuid::new_v4().simple());
            let form = [
                ("csrf", session.csrf.as_str()),
                ("name", fresh.as_str()),
                ("scope", "ingest"),
            ];
            let answer = match *method {
                "GET" => dash.get(&path, Some(&session)).await,
                _ => dash.post(&path, Some(&session), &form).await,
            };
            if scopes.split(',').any(|s| s == *needs) {
                assert_eq!(
                    answer.status.as_u16(),
                    *ok,
                    "{scopes} {method} {path}: {}",
                    answer.body
                );
            } else {
                assert_eq!(
                    answer.status,
                    StatusCode::FORBIDDEN,
                    "{scopes} {method} {path}"
                );
                assert!(
                    answer
                        .body
                        .contains(&format!("the &#39;{needs}&#39; scope"))
                        || answer.body.contains(&format!("the '{needs}' scope")),
                    "{scopes} {method} {path}: {}",
                    answer.body
                );
                // And nothing changed.
                let revoked = keys::list(&dash.db.pool, dash.tenant.workspace_id)
                    .await
                    .unwrap()
                    .iter()
                    .any(|k| k.revoked_at.is_some());
                assert!(!revoked, "{scopes} {method} {path} revoked a key");
                let envs = vibemon_store::reference::list_environments(
                    &dash.db.pool,
                    dash.tenant.workspace_id,
                )
                .await
                .unwrap();
                assert!(
                    envs.iter().any(|e| e.id == env.id && e.name == env.name),
                    "{scopes} {method} {path}"
                );
                assert!(
                    envs.iter().all(|e| e.name != fresh),
                    "{scopes} {method} {path} created"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_sign_in_from_another_site_is_refused_and_a_public_origin_replaces_the_host_check() {
    let dash = Dash::new().await;
    let (_, key) = dash.key("read").await;
    let form = format!("key={key}").into_bytes();
    for (origin, fetch_site) in [
        (Some("http://evil.example"), None),
        (Some("null"), None),
        (None, Some("cross-site")),
        (None, Some("same-site")),
    ] {
        let headers: Vec<(&str, &str)> = fetch_site
            .map(|s| ("sec-fetch-site", s))
            .into_iter()
            .collect();
        let answer = dash
            .post_raw("/sign-in", None, form.clone(), origin, &headers)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{origin:?} {fetch_site:?}"
        );
        assert!(answer.headers.get(header::SET_COOKIE).is_none());
    }
    let behind_proxy =
        Dash::with(|c| c.public_origin = Some("https://dash.example.com".into())).await;
    let (_, key) = behind_proxy.key("read").await;
    let form = format!("key={key}").into_bytes();
    let own_host = behind_proxy
        .post_raw(
            "/sign-in",
            None,
            form.clone(),
            Some(crate::helpers::ORIGIN),
            &[],
        )
        .await;
    assert_eq!(
        own_host.status,
        StatusCode::FORBIDDEN,
        "the Host no longer counts"
    );
    let public = behind_proxy
        .post_raw(
            "/sign-in",
            None,
            form,
            Some("https://dash.example.com"),
            &[],
        )
        .await;
    assert_eq!(public.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_flood_of_sign_ins_from_one_address_is_cut_off_before_any_key_work_and_others_still_sign_in(
) {
    let dash = Dash::with(|c| c.sign_ins_per_minute = 5).await;
    let (_, key) = dash.key("read").await;
    let fake = vibemon_store::keys::generate_unhashed_plaintext();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            dash.sign_in_from([10, 0, 0, 1], &fake)
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429, 429, 429]);
    // The flooder's own valid key waits too; another address signs in.
    assert_eq!(
        dash.sign_in_from([10, 0, 0, 1], &key).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        dash.sign_in_from([10, 0, 0, 2], &key).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_form_that_is_not_utf8_or_not_a_form_is_refused_and_stores_nothing() {
    let dash = Dash::new().await;
    let (_, key) = dash.key("admin").await;
    let session = dash.sign_in(&key).await;
    let csrf = format!("csrf={}&", session.csrf);
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let bad = [csrf.as_bytes(), b"name=%FF%FE&scope=read"].concat();
    let answer = dash
        .post_raw(
            "/settings/keys",
            Some(&session),
            bad,
            Some(crate::helpers::ORIGIN),
            &ct,
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let multipart = [("content-type", "multipart/form-data; boundary=x")];
    let body = format!(
        "--x\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{}\r\n--x--\r\n",
        session.csrf
    );
    let answer = dash
        .post_raw(
            "/settings/environments",
            Some(&session),
            body.into_bytes(),
            Some(crate::helpers::ORIGIN),
            &multipart,
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let all = keys::list(&dash.db.pool, dash.tenant.workspace_id)
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "only the tenant's and the admin's keys");
}

#[tokio::test]
async fn every_page_without_a_session_sends_the_browser_to_sign_in() {
    let dash = Dash::new().await;
    let id = dash.deployment(Row::default()).await;
    let detail = format!("/deployments/{id}");
    for path in PAGES.iter().map(|(p, _)| *p).chain([detail.as_str(), "/"]) {
        let answer = dash.get(path, None).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{path}");
        let to = answer.location().unwrap();
        assert!(
            to == "/sign-in" || (path == "/" && to == "/environments"),
            "{path} → {to}"
        );
    }
    let forged = Session {
        cookie: "__Host-vibemon_session=made-up".into(),
        csrf: String::new(),
    };
    let answer = dash.get("/environments", Some(&forged)).await;
    assert_eq!(answer.location(), Some("/sign-in"));
}

#[tokio::test]
async fn each_scope_sees_exactly_its_pages_and_a_403_names_the_missing_scope() {
    let dash = Dash::new().await;
    for scopes in ["read", "admin", "read,admin", "ingest,read"] {
        let (_, key) = dash.key(scopes).await;
        let session = dash.sign_in(&key).await;
        for (path, needs) in PAGES {
            let answer = dash.get(path, Some(&session)).await;
            if scopes.split(',').any(|s| s == *needs) {
                assert_eq!(
                    answer.status,
                    StatusCode::OK,
                    "{scopes} {path}: {}",
                    answer.body
                );
            } else {
                assert_eq!(answer.status, StatusCode::FORBIDDEN, "{scopes} {path}");
                assert!(
                    answer
                        .body
                        .contains(&format!("the &#39;{needs}&#39; scope"))
                        || answer.body.contains(&format!("the '{needs}' scope")),
                    "{scopes} {path}: {}",
                    answer.body
                );
            }
        }
        // A key without admin cannot create a key either, with or without a token.
        if !scopes.contains("admin") {
            let answer = dash
                .post(
                    "/settings/keys",
                    Some(&session),
                    &[("csrf", &session.csrf), ("name", "x"), ("scope", "admin")],
                )
                .await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{scopes}");
        }
    }
    let all = keys::list(&dash.db.pool, dash.tenant.workspace_id)
        .await
        .unwrap();
    assert!(all.iter().all(|k| k.name != "x"), "no key was created");
}

#[tokio::test]
async fn a_key_that_may_only_ingest_cannot_sign_in_and_is_told_why() {
    let dash = Dash::new().await;
    let (_, key) = dash.key("ingest").await;
    let answer = dash.post("/sign-in", None, &[("key", &key)]).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(
        answer.body.contains("read or admin scope"),
        "{}",
        answer.body
    );
    assert!(answer.headers.get(header::SET_COOKIE).is_none());
}

#[tokio::test]
async fn a_wrong_malformed_or_revoked_key_gets_one_answer_and_no_cookie() {
    let dash = Dash::new().await;
    let (id, key) = dash.key("read").await;
    let wrong = format!("{}A", &key[..key.len() - 1]);
    keys::revoke(&dash.db.pool, id, None).await.unwrap();
    for presented in [key.as_str(), wrong.as_str(), "not a key", ""] {
        let answer = dash.post("/sign-in", None, &[("key", presented)]).await;
        assert!(
            answer.status == StatusCode::UNAUTHORIZED
                || (presented.is_empty() && answer.status.is_client_error()),
            "{presented:?}: {}",
            answer.status
        );
        assert!(answer.headers.get(header::SET_COOKIE).is_none());
        assert!(
            !answer.body.contains(presented) || presented.len() < 5,
            "the key is never echoed"
        );
    }
}

#[tokio::test]
async fn the_session_cookie_is_httponly_strict_secure_signed_and_never_the_key() {
    let dash = Dash::new().await;
    let (_, key) = dash.key("read").await;
    let answer = dash.post("/sign-in", None, &[("key", &key)]).await;
    let set = answer
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(set.starts_with("__Host-vibemon_session="), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    assert!(!set.contains(&key) && !set.contains(&key[20..]), "{set}");
    // Postgres holds only a digest of the token.
    let token = set.split(';').next().unwrap().split_once('=').unwrap().1;
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_sha256 FROM dashboard_sessions")
        .fetch_all(&dash.db.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!String::from_utf8_lossy(&stored[0]).contains(token));
    // A cookie whose signature does not match is no session.
    let tampered = Session {
        cookie: format!(
            "__Host-vibemon_session={}{}",
            if token.starts_with('A') { 'B' } else { 'A' },
            &token[1..]
        ),
        csrf: String::new(),
    };
    let answer = dash.get("/environments", Some(&tampered)).await;
    assert_eq!(
        answer.location(),
        Some("/sign-in"),
        "{} {}",
        answer.status,
        tampered.cookie
    );
}

#[tokio::test]
async fn signing_out_ends_the_session_on_the_server_not_only_in_the_browser() {
    let dash = Dash::new().await;
    let (_, key) = dash.key("read").await;
    let session = dash.sign_in(&key).await;
    assert_eq!(
        dash.get("/environments", Some(&session)).await.status,
        StatusCode::OK
    );
    let out = dash
        .post("/sign-out", Some(&session), &[("csrf", &session.csrf)])
        .await;
    assert_eq!(out.location(), Some("/sign-in"));
    assert!(out
        .headers
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // The old cookie, replayed, is no longer a session.
    assert_eq!(
        dash.get("/environments", Some(&session)).await.location(),
        Some("/sign-in")
    );
}

#[tokio::test]
async fn revoking_a_key_or_reaching_the_expiry_ends_its_sessions_at_the_next_request() {
    let dash = Dash::new().await;
    let (id, key) = dash.key("read").await;
    let session = dash.sign_in(&key).await;
    keys::revoke(&dash.db.pool, id, None).await.unwrap();
    assert_eq!(
        dash.get("/environments", Some(&session)).await.location(),
        Some("/sign-in")
    );

    let (_, key) = dash.key("read").await;
    let session = dash.sign_in(&key).await;
    sqlx::query("UPDATE dashboard_sessions SET expires_at = now() - interval '1 second'")
        .execute(&dash.db.pool)
        .await
        .unwrap();
    assert_eq!(
        dash.get("/environments", Some(&session)).await.location(),
        Some("/sign-in")
    );
}

#[tokio::test]
async fn a_post_without_the_token_with_another_sessions_token_or_from_another_origin_changes_nothing(
) {
    let dash = Dash::new().await;
    let (_, key) = dash.key("read,admin").await;
    let session = dash.sign_in(&key).await;
    let other = dash.sign_in(&key).await;
    assert_ne!(session.csrf, other.csrf);
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let attempts: Vec<(Form, Option<&str>)> = vec![
        (vec![("name", "evil")], Some(crate::helpers::ORIGIN)),
        (
            vec![("csrf", "AAAA"), ("name", "evil")],
            Some(crate::helpers::ORIGIN),
        ),
        (
            vec![("csrf", &other.csrf), ("name", "evil")],
            Some(crate::helpers::ORIGIN),
        ),
        (
            vec![("csrf", &session.csrf), ("name", "evil")],
            Some("http://evil.example"),
        ),
        (
            vec![("csrf", &session.csrf), ("name", "evil")],
            Some("null"),
        ),
    ];
    for (form, origin) in attempts {
        let answer = dash
            .post_from("/settings/environments", Some(&session), &form, origin)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{form:?} from {origin:?}"
        );
    }
    let envs = vibemon_store::reference::list_environments(&dash.db.pool, dash.tenant.workspace_id)
        .await
        .unwrap();
    assert!(envs.iter().all(|e| e.name != "evil"));
    // The same post, done right, works.
    let ok = dash
        .post(
            "/settings/environments",
            Some(&session),
            &[("csrf", &session.csrf), ("name", "evil")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    // Signing out needs the token too.
    let out = dash.post("/sign-out", Some(&session), &[]).await;
    assert_eq!(out.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_answer_carries_the_strict_policy_and_pages_are_never_cached() {
    let dash = Dash::new().await;
    let (_, key) = dash.key("read,admin").await;
    let session = dash.sign_in(&key).await;
    let page = dash.get("/environments", Some(&session)).await;
    let css = page
        .body
        .split("href=\"")
        .find_map(|s| s.strip_prefix("/assets/"))
        .unwrap();
    let css = format!("/assets/{}", &css[..css.find('"').unwrap()]);
    for (path, s) in [
        ("/environments", Some(&session)),
        ("/sign-in", None),
        ("/deployments/nope", Some(&session)),
        (css.as_str(), None),
        ("/assets/nope.css", None),
    ] {
        let answer = dash.get(path, s).await;
        let csp = answer
            .headers
            .get(header::CONTENT_SECURITY_POLICY)
            .unwrap()
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{path}"
        );
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(answer.headers.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        assert_eq!(
            answer.headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff"
        );
        let cache = answer
            .headers
            .get(header::CACHE_CONTROL)
            .unwrap()
            .to_str()
            .unwrap();
        if path == css {
            assert!(cache.contains("immutable"), "{cache}");
        } else {
            assert_eq!(cache, "no-store", "{path}");
        }
    }
    // No page has inline script or style for the policy to refuse.
    for needle in ["<script>", "style=", "onclick", "onerror"] {
        assert!(!page.body.contains(needle), "{needle}");
    }
}

#[tokio::test]
async fn names_from_webhooks_are_shown_as_text_on_every_page() {
    let dash = Dash::new().await;
    let hostile = "<img src=x onerror=alert(1)>";
    let id = dash
        .deployment(Row {
            repo: "acme/\"><script>alert(2)</script>",
            branch: hostile,
            extra: json!({"note": "</pre><script>alert(3)</script>", "k": hostile}),
            ..Row::default()
        })
        .await;
    let (_, key) = dash.key("read").await;
    let session = dash.sign_in(&key).await;
    for path in [
        "/environments".to_owned(),
        "/environments/production".to_owned(),
        format!("/deployments/{id}"),
    ] {
        let page = dash.get(&path, Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains("<img src=x"), "{path}");
        assert!(!page.body.contains("<script>alert"), "{path}");
        assert!(
            page.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{path}: shown as text"
        );
    }
}
