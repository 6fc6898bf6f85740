//! The one authentication of every API route: the [`Authenticated`]
//! extractor, which the webhook and the read API both take, each naming the
//! scope it needs in its type (`Authenticated<IngestScope>`,
//! `Authenticated<ReadScope>`), so no handler can forget to check it.
//!
//! Order matters and is the same everywhere: the per-client-IP rate limit
//! first (before any key work, so a flood of random keys cannot reach
//! argon2), then the `X-Workspace-Key`, then that key's own rate limit (so a
//! key hammering routes it may not use is limited too), then the scope: a
//! valid key without it gets a 403 naming the missing scope.
//! When the request carries a [`Deadline`] (the webhook), the key work is
//! cut off at it with a 503.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::Principal;
use crate::deadline::Deadline;
use crate::error::ApiError;
use crate::server::PeerAddr;
use crate::state::SharedState;
use vibemon_store::scopes::Scope;

/// The scope a route needs, as a type.
pub trait RequiredScope: Send + Sync + 'static {
    const SCOPE: Scope;
}

/// The webhook: `ingest`.
#[derive(Debug, Clone, Copy)]
pub struct IngestScope;
impl RequiredScope for IngestScope {
    const SCOPE: Scope = Scope::Ingest;
}

/// The read API: `read`.
#[derive(Debug, Clone, Copy)]
pub struct ReadScope;
impl RequiredScope for ReadScope {
    const SCOPE: Scope = Scope::Read;
}

/// Who sent the request; rejected with the [`ApiError`] that says why not.
/// A handler that must see the rejection itself (the webhook counts it)
/// takes `Result<Authenticated, ApiError>`.
#[derive(Debug, Clone)]
pub struct Authenticated<S: RequiredScope>(pub Arc<Principal>, pub PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<SharedState> for Authenticated<S> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        // The TCP peer is absent when the router is driven without the accept
        // loop (`oneshot` tests): then there is no client address to limit.
        let peer = parts.extensions.get::<PeerAddr>().map(|p| p.0.ip());
        state.rate_limits.check_ip(peer)?;
        let key = parts
            .headers
            .get("x-workspace-key")
            .and_then(|v| v.to_str().ok());
        let authenticating = state.auth.authenticate(key);
        let principal = match parts.extensions.get::<Deadline>() {
            Some(deadline) => deadline.bound("authentication", authenticating).await?,
            None => authenticating.await?,
        };
        state.rate_limits.check_key(principal.key_id)?;
        if !principal.scopes.contains(S::SCOPE) {
            return Err(ApiError::Forbidden(S::SCOPE));
        }
        Ok(Self(principal, PhantomData))
    }
}
