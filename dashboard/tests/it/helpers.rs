//! A dashboard router on a database of its own, signed in as keys of any
//! scope, and deployments written straight into the read model.

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use tower::ServiceExt;
use uuid::Uuid;
use vibemon_dashboard::config::Config;
use vibemon_schemas::DisplayName;
use vibemon_store::keys;
use vibemon_store::scopes::Scopes;
use vibemon_testkit::{Tenant, TestDb};

pub const ORIGIN: &str = "http://dashboard.test";
const HOST: &str = "dashboard.test";

/// An answer: status, headers and body text.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> Option<&str> {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
    }
}

/// A signed-in browser: its cookie and the CSRF token its pages carry.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub struct Dash {
    pub db: TestDb,
    pub tenant: Tenant,
    pub app: Router,
}

impl Dash {
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// With the configuration changed by `adjust`.
    pub async fn with(adjust: impl FnOnce(&mut Config)) -> Self {
        let db = TestDb::new().await;
        let tenant = Tenant::create(&db.pool, "legacy").await;
        let mut config = Config::new(&db.url);
        adjust(&mut config);
        let state = vibemon_dashboard::build_state(&config).unwrap();
        let app = vibemon_dashboard::app::app(state);
        Self { db, tenant, app }
    }

    /// A new key of the tenant's workspace with these scopes (`read,admin`).
    pub async fn key(&self, scopes: &str) -> (Uuid, String) {
        let (info, key) = keys::create(
            &self.db.pool,
            self.tenant.workspace_id,
            &DisplayName::parse(format!("{scopes} key")).unwrap(),
            Scopes::parse_list(scopes).unwrap(),
        )
        .await
        .unwrap();
        (info.id, key)
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub async fn get(&self, path: &str, session: Option<&Session>) -> Answer {
        let mut req = Request::get(path).header(header::HOST, HOST);
        if let Some(s) = session {
            req = req.header(header::COOKIE, &s.cookie);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// A form post from this dashboard's own page (its Origin).
    pub async fn post(
        &self,
        path: &str,
        session: Option<&Session>,
        form: &[(&str, &str)],
    ) -> Answer {
        self.post_from(path, session, form, Some(ORIGIN)).await
    }

    pub async fn post_from(
        &self,
        path: &str,
        session: Option<&Session>,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Answer {
        let body = form
            .iter()
            .map(|(k, v)| format!("{k}={}", percent(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.post_raw(path, session, body.into_bytes(), origin, &[])
            .await
    }

    /// A post of raw body bytes with extra headers, from `origin`.
    pub async fn post_raw(
        &self,
        path: &str,
        session: Option<&Session>,
        body: Vec<u8>,
        origin: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::post(path).header(header::HOST, HOST);
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(origin) = origin {
            req = req.header(header::ORIGIN, origin);
        }
        if let Some(s) = session {
            req = req.header(header::COOKIE, &s.cookie);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// A sign-in attempt from the TCP peer `ip`.
    pub async fn sign_in_from(&self, ip: [u8; 4], key: &str) -> Answer {
        let body = format!("key={}", percent(key));
        let mut req = Request::post("/sign-in")
            .header(header::HOST, HOST)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let peer = std::net::SocketAddr::from((ip, 40000));
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        self.send(req).await
    }

    /// Signs in with `key`; panics unless it worked.
    pub async fn sign_in(&self, key: &str) -> Session {
        let answer = self.post("/sign-in", None, &[("key", key)]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let set = answer
            .headers
            .get(header::SET_COOKIE)
            .expect("a session cookie")
            .to_str()
            .unwrap();
        let cookie = set.split(';').next().unwrap().to_owned();
        let landing = answer.location().unwrap().to_owned();
        let mut session = Session {
            cookie,
            csrf: String::new(),
        };
        let page = self.get(&landing, Some(&session)).await;
        session.csrf = csrf_of(&page.body).expect("a page with the sign-out form");
        session
    }

    /// Writes a deployment straight into the read model (the browser test
    /// goes through the real webhook and projector instead).
    pub async fn deployment(&self, d: Row<'_>) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO deployments (id, workspace_id, environment_id, environment, repo_full_name,
                 branch, commit_sha, status, source, deployed_at, extra_data, external_id,
                 created_at, updated_at, status_rank, last_event_id, reports)
             VALUES ($1, $2, $3, 'production', $4, $5, $6, $7, 'webhook', $8, $9, NULL,
                 now(), now(), 0, $1, 1)",
        )
        .bind(id)
        .bind(self.tenant.workspace_id)
        .bind(self.tenant.environment_id)
        .bind(d.repo)
        .bind(d.branch)
        .bind(d.sha)
        .bind(d.status)
        .bind(d.at)
        .bind(d.extra)
        .execute(&self.db.pool)
        .await
        .unwrap();
        if d.status == "success" {
            sqlx::query(
                "INSERT INTO current_deployments (workspace_id, environment_id, repo_full_name,
                     deployment_id, commit_sha, branch, deployed_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (workspace_id, environment_id, repo_full_name) DO UPDATE
                 SET deployment_id = EXCLUDED.deployment_id, commit_sha = EXCLUDED.commit_sha,
                     branch = EXCLUDED.branch, deployed_at = EXCLUDED.deployed_at
                 WHERE current_deployments.deployed_at < EXCLUDED.deployed_at",
            )
            .bind(self.tenant.workspace_id)
            .bind(self.tenant.environment_id)
            .bind(d.repo)
            .bind(id)
            .bind(d.sha)
            .bind(d.branch)
            .bind(d.at)
            .execute(&self.db.pool)
            .await
            .unwrap();
        }
        id
    }
}

/// A deployment for [`Dash::deployment`], in `production`.
pub struct Row<'a> {
    pub repo: &'a str,
    pub branch: &'a str,
    pub sha: &'a str,
    pub status: &'a str,
    pub at: chrono::DateTime<chrono::Utc>,
    pub extra: serde_json::Value,
}

impl Default for Row<'_> {
    fn default() -> Self {
        Self {
            repo: "acme/api",
            branch: "main",
            sha: "0123456789abcdef0123456789abcdef01234567",
            status: "success",
            at: chrono::Utc::now(),
            extra: serde_json::json!({}),
        }
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let rest = &html[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
