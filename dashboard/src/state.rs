//! What every handler shares.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum_extra::extract::cookie::Key;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::metrics::Metrics;

/// The pool, the key that signs cookies and CSRF tokens, and the session rules.
pub struct AppState {
    pub pool: PgPool,
    pub cookie_key: Key,
    pub session_ttl: Duration,
    pub secure_cookie: bool,
    /// argon2 verifications of sign-ins allowed at once (each takes a core
    /// for tens of milliseconds).
    pub sign_in_slots: Arc<Semaphore>,
    pub metrics: Metrics,
    /// Form posts must come from this origin; `None`: from the `Host` of
    /// the request.
    pub public_origin: Option<String>,
    /// Sign-in attempts per client IP.
    pub sign_in_limit: DefaultKeyedRateLimiter<IpAddr>,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    pub fn new(pool: PgPool, config: &Config) -> Self {
        let cookie_key = match config.session_key_bytes() {
            Some(key) => Key::try_from(key).expect("the config checks 64 bytes or more"),
            None => Key::generate(),
        };
        Self {
            pool,
            cookie_key,
            session_ttl: Duration::from_secs(u64::from(config.session_minutes.max(1)) * 60),
            secure_cookie: config.secure_cookie,
            sign_in_slots: Arc::new(Semaphore::new(2)),
            metrics: Metrics::new(),
            public_origin: config.public_origin.clone(),
            sign_in_limit: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(config.sign_ins_per_minute.max(1)).expect("at least 1"),
            )),
        }
    }
}
