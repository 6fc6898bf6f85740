//! Key scopes on every route that takes a workspace key: a key lacking the
//! route's scope gets a 403 naming it (in the documented shape), a key
//! holding it gets the route's own answer, and a bad or revoked key gets the
//! 401 whatever its scopes, so no scope is revealed before authentication.
//! Also: keys that existed before the scopes migration keep `ingest` and
//! `read`, and new rows default to `ingest`.
//!
//! [`KEYED_ROUTES`] is held to the OpenAPI document: a route that declares
//! the `WorkspaceKey` security but is missing here fails the suite, and
//! `operability::every_route_of_the_router_is_in_the_openapi_document` holds
//! the router to the document.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::migrate::Migrator;
use uuid::Uuid;
use vibemon_schemas::DisplayName;
use vibemon_store::keys;
use vibemon_store::scopes::{Scope, Scopes};
use vibemon_testkit::openapi::assert_fits;
use vibemon_testkit::TestDb;

use crate::helpers::{json, TestApp, MINIMAL};

/// One route that takes `X-Workspace-Key`.
struct KeyedRoute {
    method: &'static str,
    /// As the OpenAPI document writes it.
    template: &'static str,
    /// A concrete request to it, with valid parameters.
    path: &'static str,
    /// The scope it needs.
    scope: Scope,
    /// What a key holding the scope gets for `path` in a fresh tenant.
    allowed_status: u16,
}

const fn route(
    method: &'static str,
    template: &'static str,
    path: &'static str,
    scope: Scope,
    allowed_status: u16,
) -> KeyedRoute {
    KeyedRoute {
        method,
        template,
        path,
        scope,
        allowed_status,
    }
}

/// Every keyed route of ingest. The GitHub and GitLab receivers are not here:
/// they are authenticated by their own receiver secret, not a workspace key.
const KEYED_ROUTES: [KeyedRoute; 6] = [
    route(
        "post",
        "/api/v1/deployments/webhook",
        "/api/v1/deployments/webhook",
        Scope::Ingest,
        201,
    ),
    route(
        "get",
        "/api/v1/deployments",
        "/api/v1/deployments",
        Scope::Read,
        200,
    ),
    // A well-formed id nobody has: the read scope lets the key learn only that.
    route(
        "get",
        "/api/v1/deployments/{id}",
        "/api/v1/deployments/0190b6a0-0000-7000-8000-000000000000",
        Scope::Read,
        404,
    ),
    route(
        "get",
        "/api/v1/environments",
        "/api/v1/environments",
        Scope::Read,
        200,
    ),
    route(
        "get",
        "/api/v1/environments/{name}/deployed",
        "/api/v1/environments/production/deployed",
        Scope::Read,
        200,
    ),
    route(
        "get",
        "/api/v1/metrics/dora",
        "/api/v1/metrics/dora?environment=production",
        Scope::Read,
        200,
    ),
];

/// The scope sets a key can be made with that the suite tries.
const SCOPE_SETS: [&str; 5] = [
    "ingest",
    "read",
    "admin",
    "ingest,read",
    "ingest,read,admin",
];

fn openapi() -> Value {
    serde_json::from_str(vibemon_schemas::OPENAPI_JSON).unwrap()
}

/// `(method, path)` of every operation the document says takes a workspace key.
fn documented_keyed_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let keyed = op["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|req| req.get("WorkspaceKey").is_some()));
            if keyed {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

async fn send(app: &TestApp, route: &KeyedRoute, key: &str) -> reqwest::Response {
    let url = app.url(route.path);
    let req = match route.method {
        "post" => app
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .body(MINIMAL),
        "get" => app.client.get(url),
        other => panic!("no request for method {other}"),
    };
    req.header("X-Workspace-Key", key)
        .send()
        .await
        .expect("ingest answers")
}

async fn key_with(app: &TestApp, scopes: Scopes) -> String {
    let name = DisplayName::parse(format!("key {scopes}")).unwrap();
    let (_, key) = keys::create(&app.db.pool, app.tenant.workspace_id, &name, scopes)
        .await
        .unwrap();
    key
}

#[test]
fn every_operation_the_openapi_document_keys_is_in_this_suite_with_the_scope_it_documents() {
    let doc = openapi();
    let listed: BTreeSet<(String, String)> = KEYED_ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.template.to_owned()))
        .collect();
    assert_eq!(
        listed,
        documented_keyed_operations(&doc),
        "KEYED_ROUTES must list exactly the operations with WorkspaceKey security"
    );
    for r in &KEYED_ROUTES {
        let op = &doc["paths"][r.template][r.method];
        let description = op["description"].as_str().unwrap_or("");
        assert!(
            description.contains(&format!("`{}` scope", r.scope)),
            "{} {}: documented as {description:?}, enforced as {}",
            r.method,
            r.template,
            r.scope
        );
        assert_eq!(
            op["responses"]["403"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Forbidden",
            "{} {}",
            r.method,
            r.template
        );
    }
}

#[tokio::test]
async fn each_key_gets_each_route_if_it_holds_the_routes_scope_and_a_403_naming_it_if_not() {
    let app = TestApp::spawn().await;
    let mut delivered = 0;
    let mut problems = Vec::new();

    for set in SCOPE_SETS {
        let scopes = Scopes::parse_list(set).unwrap();
        let key = key_with(&app, scopes).await;
        for r in &KEYED_ROUTES {
            let (status, body) = json(send(&app, r, &key).await).await;
            let case = format!("{{{set}}} {} {}", r.method, r.path);
            if scopes.contains(r.scope) {
                if status != r.allowed_status {
                    problems.push(format!("{case}: {status}, not {} {body}", r.allowed_status));
                }
                delivered += usize::from(status == 201);
                continue;
            }
            if status != 403 {
                problems.push(format!("{case}: {status}, not 403: {body}"));
                continue;
            }
            assert_fits("Forbidden", &body);
            if body["missing_scope"] != r.scope.as_str()
                || !body["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("'{}'", r.scope))
            {
                problems.push(format!("{case}: 403 names the wrong scope: {body}"));
            }
        }
    }

    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Three sets hold `ingest`; a 403 produced nothing.
    assert_eq!(delivered, 3);
    assert_eq!(app.record_count().await, 3, "records on the topic = 201s");
}

#[tokio::test]
async fn a_revoked_or_wrong_key_gets_the_401_on_every_route_whatever_its_scopes() {
    let app = TestApp::spawn().await;
    let seed_401 = json!({"detail": "Invalid API key"});
    for set in ["admin", "ingest,read,admin"] {
        let scopes = Scopes::parse_list(set).unwrap();
        let (revoked, held) = (key_with(&app, scopes).await, key_with(&app, scopes).await);
        let row = keys::find_by_lookup(
            &app.db.pool,
            keys::PresentedKey::parse(&revoked).unwrap().lookup,
        )
        .await
        .unwrap()
        .unwrap();
        keys::revoke(&app.db.pool, row.id, None).await.unwrap();
        // The held key's lookup with another key's secret: a wrong secret.
        let wrong = format!("{}{}", &held[..21], &revoked[21..]);
        assert_ne!(wrong, held);

        for r in &KEYED_ROUTES {
            for (what, key) in [("revoked", &revoked), ("wrong", &wrong)] {
                let (status, body) = json(send(&app, r, key).await).await;
                assert_eq!(
                    (status, &body),
                    (401, &seed_401),
                    "{what} {{{set}}} key, {} {}",
                    r.method,
                    r.path
                );
            }
        }
    }
    assert!(app.events(1, Duration::from_millis(300)).await.is_empty());
}

/// `vibemon_store::MIGRATOR`, cut to the migrations before `version`.
fn migrator_before(version: i64) -> Migrator {
    let all = &vibemon_store::MIGRATOR;
    assert!(all.version_exists(version), "no migration {version}");
    Migrator {
        migrations: Cow::Owned(
            all.iter()
                .filter(|m| m.version < version)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

async fn scopes_of(db: &TestDb, key_id: Uuid) -> Vec<String> {
    sqlx::query_scalar("SELECT scopes FROM api_keys WHERE id = $1")
        .bind(key_id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn insert_key_without_scopes(db: &TestDb, workspace: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    let generated = keys::generate();
    sqlx::query(
        "INSERT INTO api_keys (id, workspace_id, name, prefix, hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(workspace)
    .bind("made the old way")
    .bind(&generated.lookup)
    .bind(&generated.hash)
    .execute(&db.pool)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn a_key_made_before_the_scopes_migration_keeps_ingest_and_read_and_a_new_row_gets_ingest() {
    let db = TestDb::empty().await;
    migrator_before(20261202000001)
        .run(&db.pool)
        .await
        .expect("the migrations before scopes apply");
    let workspace = Uuid::now_v7();
    sqlx::query("INSERT INTO workspaces (id, name) VALUES ($1, 'before scopes')")
        .bind(workspace)
        .execute(&db.pool)
        .await
        .unwrap();
    let old = insert_key_without_scopes(&db, workspace).await;

    vibemon_store::migrate(&db.pool)
        .await
        .expect("the rest applies");

    assert_eq!(scopes_of(&db, old).await, ["ingest", "read"]);
    let new = insert_key_without_scopes(&db, workspace).await;
    assert_eq!(scopes_of(&db, new).await, ["ingest"]);
    // And the authenticator reads them as the named sets.
    let rows: Vec<Scopes> = keys::list(&db.pool, workspace)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.scopes)
        .collect();
    assert_eq!(rows, [Scopes::LEGACY, Scopes::DEFAULT_FOR_NEW_KEYS]);
}
