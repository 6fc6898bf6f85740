//! Signing in and out, and the one extractor every page takes.
//!
//! Signing in checks a `read` or `admin` key once (argon2, on a blocking
//! thread behind a small semaphore) and starts a session: 32 random bytes
//! that the browser holds in an HttpOnly, SameSite=Strict, signed cookie and
//! Postgres holds as a SHA-256. The key itself is never stored, put in a
//! cookie or a URL, or logged. A session lasts `DASHBOARD_SESSION_MINUTES`
//! at most; signing out deletes it, and revoking its key ends it on the next
//! request (every request joins the session with its key's row).
//!
//! [`Signed<S>`] is the session of a page that needs scope `S`; a missing
//! session redirects to the sign-in page, a missing scope is a 403 naming
//! it. [`Mutation<S>`] is the same for a form post, and also refuses a post
//! without the session's CSRF token or from another origin, so no handler
//! that changes anything can forget either check.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum_extra::extract::cookie::{Cookie, SameSite};
use axum_extra::extract::SignedCookieJar;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use vibemon_store::keys::{self, PresentedKey};
use vibemon_store::scopes::{Scope, Scopes};

use crate::error::DashboardError;
use crate::state::SharedState;

/// The cookie's name: with the `__Host-` prefix when it is `Secure`, so the
/// browser also refuses it from a sub-domain or another path.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-vibemon_session"
    } else {
        "vibemon_session"
    }
}

/// Who is signed in: the key that signed in, as its row says now.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub key_id: Uuid,
    pub key_name: String,
    pub workspace_id: Uuid,
    pub workspace_name: String,
    pub scopes: Scopes,
    pub expires_at: DateTime<Utc>,
    /// The token forms must carry back (see [`csrf_token`]).
    pub csrf: String,
    token_sha256: [u8; 32],
}

/// What a page needs, as a type.
pub trait Need: Send + Sync + 'static {
    /// `None`: any session will do (signing out).
    const SCOPE: Option<Scope>;
}

/// Environments, timelines, deployments.
pub struct ReadPages;
impl Need for ReadPages {
    const SCOPE: Option<Scope> = Some(Scope::Read);
}

/// Settings > API Keys and Environments.
pub struct AdminPages;
impl Need for AdminPages {
    const SCOPE: Option<Scope> = Some(Scope::Admin);
}

/// Any signed-in key.
pub struct AnySession;
impl Need for AnySession {
    const SCOPE: Option<Scope> = None;
}

/// The session of a page that needs `S`.
pub struct Signed<S: Need>(pub Viewer, pub PhantomData<S>);

impl<S: Need> FromRequestParts<SharedState> for Signed<S> {
    type Rejection = DashboardError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let viewer = current(&parts.headers, state)
            .await?
            .ok_or(DashboardError::SignInRequired)?;
        if let Some(scope) = S::SCOPE {
            if !viewer.scopes.contains(scope) {
                return Err(DashboardError::Forbidden(scope));
            }
        }
        Ok(Self(viewer, PhantomData))
    }
}

/// A form post from a page that needs `S`: the session, checked against
/// the post's origin and CSRF token, and the form's fields.
pub struct Mutation<S: Need> {
    pub viewer: Viewer,
    pub form: Fields,
    _need: PhantomData<S>,
}

/// A form's fields, in order, as sent.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of a field, trimmed of nothing.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a field (checkboxes).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Need> FromRequest<SharedState> for Mutation<S> {
    type Rejection = DashboardError;

    async fn from_request(req: Request, state: &SharedState) -> Result<Self, Self::Rejection> {
        check_same_origin(req.headers(), state.public_origin.as_deref())?;
        let (mut parts, body) = req.into_parts();
        let Signed(viewer, _) = Signed::<S>::from_request_parts(&mut parts, state).await?;
        let form_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return Err(DashboardError::BadRequest("Expected a form post.".into()));
        }
        let bytes = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(|e| DashboardError::BadRequest(format!("The form could not be read: {e}")))?;
        let form = Fields(parse_form(&bytes)?);
        let sent = form.get("csrf").unwrap_or_default();
        if !verify_csrf(state, &viewer.token_sha256, sent) {
            return Err(DashboardError::CrossSite("missing or wrong CSRF token"));
        }
        Ok(Self {
            viewer,
            form,
            _need: PhantomData,
        })
    }
}

/// Refuses a post that the browser says came from another site, or whose
/// `Origin` is not the dashboard's: `DASHBOARD_PUBLIC_ORIGIN` when set,
/// else this request's `Host`. Browsers send `Origin` on every POST; a
/// request without one (curl) still needs the session cookie and the CSRF
/// token, which a third-party page cannot read.
pub fn check_same_origin(
    headers: &HeaderMap,
    public_origin: Option<&str>,
) -> Result<(), DashboardError> {
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if value("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none") {
        return Err(DashboardError::CrossSite(
            "Sec-Fetch-Site is not same-origin",
        ));
    }
    let Some(origin) = value(header::ORIGIN.as_str()) else {
        return Ok(());
    };
    let same = match public_origin {
        Some(public) => origin == public,
        None => {
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            authority.is_some() && authority == value(header::HOST.as_str())
        }
    };
    if same {
        Ok(())
    } else {
        Err(DashboardError::CrossSite("Origin is not this dashboard's"))
    }
}

/// A form body, refused unless every name and value is UTF-8 after
/// percent-decoding (a browser never sends anything else; a lossy decode
/// would store U+FFFD in a key's name).
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, DashboardError> {
    let decode = |raw: &[u8]| -> Result<String, DashboardError> {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_encoding::percent_decode(&spaced)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                DashboardError::BadRequest("The form held bytes that are not UTF-8.".into())
            })
    };
    body.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut it = pair.splitn(2, |&b| b == b'=');
            let name = decode(it.next().unwrap_or_default())?;
            let value = decode(it.next().unwrap_or_default())?;
            Ok((name, value))
        })
        .collect()
}

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The CSRF token of a session: an HMAC of the session under the signing
/// key, so it needs no storage and no other session's token fits.
fn csrf_token(state: &SharedState, token_sha256: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(csrf_mac(state, token_sha256).finalize().into_bytes())
}

fn csrf_mac(state: &SharedState, token_sha256: &[u8; 32]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(state.cookie_key.signing())
        .expect("HMAC takes any key length");
    mac.update(b"vibemon-dashboard csrf\0");
    mac.update(token_sha256);
    mac
}

fn verify_csrf(state: &SharedState, token_sha256: &[u8; 32], sent: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(sent) {
        // `verify_slice` compares in constant time.
        Ok(bytes) => csrf_mac(state, token_sha256).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The client's address (the TCP peer), when the router runs behind the
/// accept loop; `None` when driven without a socket (tests).
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<SharedState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(Self(peer.map(|p| p.0.ip())))
    }
}

/// The session this request carries, if any is still valid.
pub async fn current(
    headers: &HeaderMap,
    state: &SharedState,
) -> Result<Option<Viewer>, DashboardError> {
    let jar = SignedCookieJar::from_headers(headers, state.cookie_key.clone());
    let Some(cookie) = jar.get(cookie_name(state.secure_cookie)) else {
        return Ok(None);
    };
    let digest = token_digest(cookie.value());
    #[derive(sqlx::FromRow)]
    struct Row {
        key_id: Uuid,
        key_name: String,
        workspace_id: Uuid,
        workspace_name: String,
        #[sqlx(try_from = "Vec<String>")]
        scopes: Scopes,
        expires_at: DateTime<Utc>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT k.id AS key_id, k.name AS key_name, k.workspace_id, w.name AS workspace_name,
                k.scopes, s.expires_at
         FROM dashboard_sessions s
         JOIN api_keys k ON k.id = s.key_id
         JOIN workspaces w ON w.id = k.workspace_id
         WHERE s.token_sha256 = $1 AND s.expires_at > now() AND k.revoked_at IS NULL",
    )
    .bind(digest.as_slice())
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.map(|r| Viewer {
        key_id: r.key_id,
        key_name: r.key_name,
        workspace_id: r.workspace_id,
        workspace_name: r.workspace_name,
        scopes: r.scopes,
        expires_at: r.expires_at,
        csrf: csrf_token(state, &digest),
        token_sha256: digest,
    }))
}

/// Why a sign-in was refused; the page says which, since the person
/// holding the key needs to know (a key that may only ingest is not a typo).
#[derive(Debug)]
pub enum SignInRefused {
    /// Not a key, an unknown key, a wrong secret or a revoked key: one answer.
    InvalidKey,
    /// A valid key that may neither read nor administer.
    NoDashboardScope(Scopes),
    Failed(DashboardError),
}

impl From<sqlx::Error> for SignInRefused {
    fn from(e: sqlx::Error) -> Self {
        SignInRefused::Failed(e.into())
    }
}

/// Checks a key and starts a session for it; returns the cookie to set and
/// what the key may do. `client` is the TCP peer, whose attempts are
/// limited before any key work, so a flood cannot hold the argon2 slots
/// that other people's sign-ins need.
pub async fn sign_in(
    state: &SharedState,
    client: Option<IpAddr>,
    presented: &str,
) -> Result<(Cookie<'static>, Scopes), SignInRefused> {
    if let Some(ip) = client {
        if state.sign_in_limit.check_key(&ip).is_err() {
            return Err(SignInRefused::Failed(DashboardError::TooManySignIns));
        }
    }
    let presented = presented.trim();
    let Some(parts) = PresentedKey::parse(presented) else {
        return Err(SignInRefused::InvalidKey);
    };
    let row = keys::find_by_lookup(&state.pool, parts.lookup).await?;
    let hash = row
        .as_ref()
        .map_or_else(|| keys::DUMMY_HASH.clone(), |r| r.hash.clone());
    let secret = parts.secret.to_owned();
    let permit = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        Arc::clone(&state.sign_in_slots).acquire_owned(),
    )
    .await
    .map_err(|_| SignInRefused::Failed(DashboardError::Busy))?
    .expect("the semaphore is never closed");
    let ok = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        keys::verify_secret(&secret, &hash)
    })
    .await
    .expect("argon2 does not panic");
    let key = match row {
        Some(row) if ok && row.revoked_at.is_none() => row,
        _ => return Err(SignInRefused::InvalidKey),
    };
    if !key.scopes.contains(Scope::Read) && !key.scopes.contains(Scope::Admin) {
        return Err(SignInRefused::NoDashboardScope(key.scopes));
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = URL_SAFE_NO_PAD.encode(raw);
    let ttl = chrono::Duration::from_std(state.session_ttl).expect("minutes fit");
    // Sessions that ran out are removed here, where one is made, so the
    // table holds about one session-lifetime of sign-ins.
    sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at < now()")
        .execute(&state.pool)
        .await?;
    sqlx::query(
        "INSERT INTO dashboard_sessions (token_sha256, key_id, expires_at) VALUES ($1, $2, now() + $3)",
    )
    .bind(token_digest(&token).as_slice())
    .bind(key.id)
    .bind(ttl)
    .execute(&state.pool)
    .await?;
    keys::touch_last_used(&state.pool, &[(key.id, Utc::now())]).await?;
    tracing::info!(key_id = %key.id, workspace_id = %key.workspace_id, "dashboard sign-in");
    Ok((session_cookie(state, token), key.scopes))
}

/// A browser-session cookie (no `Max-Age`: gone when the browser closes);
/// the server ends the session at `expires_at` whatever the browser keeps.
fn session_cookie(state: &SharedState, value: String) -> Cookie<'static> {
    Cookie::build((cookie_name(state.secure_cookie), value))
        .http_only(true)
        .secure(state.secure_cookie)
        .same_site(SameSite::Strict)
        .path("/")
        .build()
}

/// Ends the viewer's session; returns the jar that clears the cookie.
pub async fn sign_out(
    state: &SharedState,
    viewer: &Viewer,
    jar: SignedCookieJar,
) -> Result<SignedCookieJar, DashboardError> {
    sqlx::query("DELETE FROM dashboard_sessions WHERE token_sha256 = $1")
        .bind(viewer.token_sha256.as_slice())
        .execute(&state.pool)
        .await?;
    tracing::info!(key_id = %viewer.key_id, "dashboard sign-out");
    Ok(jar.remove(Cookie::build(cookie_name(state.secure_cookie)).path("/")))
}
