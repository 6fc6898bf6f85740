//! What the pages show and do: environments, timelines and their pages,
//! deployments, and the settings.

use std::collections::HashSet;

use axum::http::StatusCode;
use chrono::{Duration, DurationRound, Utc};
use vibemon_store::{keys, reference};

use crate::helpers::{Dash, Row};

fn ids_on(page: &str) -> Vec<String> {
    page.split("data-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

fn next_link(page: &str) -> Option<String> {
    let at = page.find("rel=\"next\"")?;
    let before = &page[..at];
    let href = &before[before.rfind("href=\"")? + 6..];
    Some(href[..href.find('"')?].replace("&amp;", "&"))
}

#[tokio::test]
async fn a_long_timeline_pages_through_every_deployment_once_newest_first_and_filters() {
    let dash = Dash::new().await;
    let start = (Utc::now() - Duration::days(10))
        .duration_trunc(Duration::minutes(1))
        .unwrap();
    let mut made = Vec::new();
    for i in 0..123 {
        let repo = if i % 3 == 0 { "acme/web" } else { "acme/api" };
        let status = if i % 10 == 0 { "failed" } else { "success" };
        let id = dash
            .deployment(Row {
                repo,
                status,
                at: start + Duration::hours(i),
                ..Row::default()
            })
            .await;
        made.push((id.to_string(), repo, start + Duration::hours(i)));
    }
    let (_, key) = dash.key("read").await;
    let session = dash.sign_in(&key).await;

    let mut seen = Vec::new();
    let mut next = Some("/environments/production".to_owned());
    let mut pages = 0;
    while let Some(path) = next {
        let page = dash.get(&path, Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        let ids = ids_on(&page.body);
        assert!(ids.len() <= 50);
        seen.extend(ids);
        next = next_link(&page.body);
        pages += 1;
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = made.iter().rev().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(seen, newest_first);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 123);

    let web = dash
        .get(
            "/environments/production?repository=acme/web",
            Some(&session),
        )
        .await;
    let expected: Vec<String> = made
        .iter()
        .rev()
        .filter(|(_, r, _)| *r == "acme/web")
        .map(|(id, _, _)| id.clone())
        .collect();
    assert_eq!(ids_on(&web.body), expected);

    let since = (start + Duration::hours(100))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let until = (start + Duration::hours(110))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let window = dash
        .get(
            &format!("/environments/production?since={since}&until={until}"),
            Some(&session),
        )
        .await;
    assert_eq!(
        ids_on(&window.body).len(),
        11,
        "both ends are in the window"
    );
    assert!(
        window.body.contains("class=\"deployment status-failed"),
        "failed deployments are marked"
    );
}

#[tokio::test]
async fn bad_parameters_are_a_page_that_says_so_not_a_server_error() {
    let dash = Dash::new().await;
    let (_, key) = dash.key("read,admin").await;
    let session = dash.sign_in(&key).await;
    for (path, status) in [
        (
            "/environments/production?since=yesterday",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/environments/production?until=99999-01-01",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/environments/production?cursor=%00%FF",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/environments/production?repository=%00",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/environments/production?repository=a%2Fb%00c",
            StatusCode::BAD_REQUEST,
        ),
        ("/environments/pro%00duction", StatusCode::NOT_FOUND),
        ("/environments/%FF", StatusCode::BAD_REQUEST),
        ("/environments/nowhere", StatusCode::NOT_FOUND),
        ("/deployments/not-a-uuid", StatusCode::NOT_FOUND),
        (
            "/deployments/0193f5d0-3333-7aaa-8bbb-eeeeeeeeeeee",
            StatusCode::NOT_FOUND,
        ),
        (
            "/settings/keys/0193f5d0-3333-7aaa-8bbb-eeeeeeeeeeee/revoke",
            StatusCode::NOT_FOUND,
        ),
        ("/settings/environments/nope/delete", StatusCode::NOT_FOUND),
    ] {
        let answer = dash.get(path, Some(&session)).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert!(
            answer.body.contains("<h1>") || answer.body.contains("<h1 "),
            "{path}: a page"
        );
    }
}

#[tokio::test]
async fn the_environments_page_shows_what_runs_where_per_repository() {
    let dash = Dash::new().await;
    let old = Utc::now() - Duration::hours(5);
    dash.deployment(Row {
        sha: "1111111111111111111111111111111111111111",
        at: old,
        ..Row::default()
    })
    .await;
    let now = dash
        .deployment(Row {
            sha: "2222222222222222222222222222222222222222",
            branch: "release/2",
            ..Row::default()
        })
        .await;
    dash.deployment(Row {
        status: "failed",
        sha: "3333333333333333333333333333333333333333",
        ..Row::default()
    })
    .await;
    reference::create_environment(&dash.db.pool, dash.tenant.workspace_id, "staging")
        .await
        .unwrap();
    let (_, key) = dash.key("read").await;
    let session = dash.sign_in(&key).await;
    let page = dash.get("/environments", Some(&session)).await.body;
    assert!(page.contains(&format!("/deployments/{now}")));
    assert!(page.contains("222222222222") && page.contains("release/2"));
    assert!(
        !page.contains("111111111111") && !page.contains("333333333333"),
        "only what runs now"
    );
    assert!(
        page.contains("data-environment=\"staging\"") && page.contains("Nothing deployed here yet")
    );
}

#[tokio::test]
async fn a_created_key_is_shown_once_works_with_its_scopes_and_is_listed_without_its_secret() {
    let dash = Dash::new().await;
    let (_, admin) = dash.key("admin").await;
    let session = dash.sign_in(&admin).await;
    let created = dash
        .post(
            "/settings/keys",
            Some(&session),
            &[
                ("csrf", &session.csrf),
                ("name", "Jenkins CI"),
                ("scope", "ingest"),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert!(
        created
            .body
            .contains("Copy the key immediately - it won&#39;t be shown again")
            || created
                .body
                .contains("Copy the key immediately - it won't be shown again")
    );
    let at = created.body.find("id=\"new-key\"").unwrap();
    let value = &created.body[at..];
    let value = &value[value.find("value=\"").unwrap() + 7..];
    let key = &value[..value.find('"').unwrap()];
    assert!(key.starts_with("vmk_"));
    let all = keys::list(&dash.db.pool, dash.tenant.workspace_id)
        .await
        .unwrap();
    let row = all.iter().find(|k| k.name == "Jenkins CI").unwrap();
    assert_eq!(row.scopes.to_string(), "ingest,read");
    // The key signs in (it may read), and no page shows it again.
    dash.sign_in(key).await;
    let list = dash.get("/settings/keys", Some(&session)).await;
    assert!(list.body.contains("Jenkins CI") && !list.body.contains(key));
    // A name that breaks the rules, or no scope, is said on the page.
    for form in [
        vec![("name", "")],
        vec![("name", "ok")],
        vec![("name", "bad\u{7}"), ("scope", "read")],
    ] {
        let mut form = form;
        form.push(("csrf", &session.csrf));
        let answer = dash.post("/settings/keys", Some(&session), &form).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{form:?}");
        assert!(answer.body.contains("role=\"alert\""));
    }
    let answer = dash
        .post(
            "/settings/keys",
            Some(&session),
            &[("csrf", &session.csrf), ("name", "x"), ("scope", "write")],
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn revoking_asks_first_then_revokes_only_this_workspaces_key_and_never_the_sessions_own() {
    let dash = Dash::new().await;
    let (admin_id, admin) = dash.key("admin").await;
    let (victim, _) = dash.key("ingest").await;
    let session = dash.sign_in(&admin).await;
    let ask = dash
        .get(&format!("/settings/keys/{victim}/revoke"), Some(&session))
        .await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.body.contains("cannot be undone"));
    let listed = keys::list(&dash.db.pool, dash.tenant.workspace_id)
        .await
        .unwrap();
    assert!(
        listed.iter().all(|k| k.revoked_at.is_none()),
        "asking revokes nothing"
    );
    let done = dash
        .post(
            &format!("/settings/keys/{victim}/revoke"),
            Some(&session),
            &[("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(done.location(), Some("/settings/keys"));
    let own = dash
        .post(
            &format!("/settings/keys/{admin_id}/revoke"),
            Some(&session),
            &[("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(own.status, StatusCode::BAD_REQUEST);
    // Another workspace's key is not found from here.
    let other = vibemon_testkit::Tenant::create(&dash.db.pool, "other").await;
    let theirs = dash
        .post(
            &format!("/settings/keys/{}/revoke", other.key_id),
            Some(&session),
            &[("csrf", &session.csrf)],
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    let all = keys::list(&dash.db.pool, dash.tenant.workspace_id)
        .await
        .unwrap();
    let revoked: Vec<_> = all
        .iter()
        .filter(|k| k.revoked_at.is_some())
        .map(|k| k.id)
        .collect();
    assert_eq!(revoked, vec![victim]);
    let theirs = keys::list(&dash.db.pool, other.workspace_id).await.unwrap();
    assert!(theirs[0].revoked_at.is_none());
}

#[tokio::test]
async fn environments_are_created_renamed_and_deleted_with_their_rules_said_on_the_page() {
    let dash = Dash::new().await;
    let (_, admin) = dash.key("admin").await;
    let session = dash.sign_in(&admin).await;
    let csrf = session.csrf.as_str();
    let made = dash
        .post(
            "/settings/environments",
            Some(&session),
            &[("csrf", csrf), ("name", "staging")],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER);
    for bad in ["staging", "", "has space", "bad\u{200b}name"] {
        let answer = dash
            .post(
                "/settings/environments",
                Some(&session),
                &[("csrf", csrf), ("name", bad)],
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?}: {}",
            answer.body
        );
        assert!(answer.body.contains("role=\"alert\""));
    }
    let envs = reference::list_environments(&dash.db.pool, dash.tenant.workspace_id)
        .await
        .unwrap();
    let staging = envs.iter().find(|e| e.name == "staging").unwrap().id;
    let renamed = dash
        .post(
            &format!("/settings/environments/{staging}/rename"),
            Some(&session),
            &[("csrf", csrf), ("name", "qa")],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER);
    let clash = dash
        .post(
            &format!("/settings/environments/{staging}/rename"),
            Some(&session),
            &[("csrf", csrf), ("name", "production")],
        )
        .await;
    assert_eq!(clash.status, StatusCode::UNPROCESSABLE_ENTITY);
    dash.deployment(Row::default()).await;
    let production = dash.tenant.environment_id;
    let ask = dash
        .get(
            &format!("/settings/environments/{production}/delete"),
            Some(&session),
        )
        .await;
    assert!(ask.body.contains("1 deployments"), "{}", ask.body);
    let gone = dash
        .post(
            &format!("/settings/environments/{production}/delete"),
            Some(&session),
            &[("csrf", csrf)],
        )
        .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    let names: Vec<String> = reference::list_environments(&dash.db.pool, dash.tenant.workspace_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["qa".to_owned()]);
}

#[tokio::test]
async fn a_deployment_links_to_its_environment_by_its_name_now() {
    let dash = Dash::new().await;
    let id = dash.deployment(Row::default()).await;
    reference::rename_environment(
        &dash.db.pool,
        dash.tenant.workspace_id,
        "production",
        "prod",
    )
    .await
    .unwrap();
    let (_, key) = dash.key("read").await;
    let session = dash.sign_in(&key).await;
    let page = dash
        .get(&format!("/deployments/{id}"), Some(&session))
        .await
        .body;
    assert!(page.contains("href=\"/environments/prod\""), "{page}");
    assert!(!page.contains("href=\"/environments/production\""));
    reference::delete_environment(&dash.db.pool, dash.tenant.environment_id)
        .await
        .unwrap();
    let page = dash
        .get(&format!("/deployments/{id}"), Some(&session))
        .await
        .body;
    assert!(page.contains("production (deleted)"), "{page}");
}
