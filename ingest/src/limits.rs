//! Rate limits: a token bucket per client IP (checked before anything else,
//! so a flood of random keys cannot reach argon2) and one per API key
//! (checked once the key is known, so one noisy CI system cannot crowd out
//! the others). Over the limit the answer is 429 with `Retry-After`.
//!
//! The client IP is the TCP peer; behind a proxy that is the proxy, so set
//! the per-IP limit to 0 (off) there and rely on the proxy's own limits.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::error::ApiError;

/// Both limiters; a limit of 0 turns that one off.
#[derive(Clone)]
pub struct RateLimits {
    per_ip: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    per_key: Option<Arc<DefaultKeyedRateLimiter<Uuid>>>,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(
    per_second: u32,
) -> Option<Arc<DefaultKeyedRateLimiter<K>>> {
    let rate = NonZeroU32::new(per_second)?;
    // A burst of twice the rate absorbs a CI fleet finishing together.
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    Some(Arc::new(RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    )))
}

fn check<K: std::hash::Hash + Eq + Clone>(
    l: &DefaultKeyedRateLimiter<K>,
    key: &K,
    what: &'static str,
) -> Result<(), ApiError> {
    l.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::RateLimited {
            what,
            retry_after_secs: wait.as_secs().max(1),
        }
    })
}

impl RateLimits {
    pub fn new(per_ip_per_second: u32, per_key_per_second: u32) -> Self {
        Self {
            per_ip: limiter(per_ip_per_second),
            per_key: limiter(per_key_per_second),
        }
    }

    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        match (&self.per_ip, ip) {
            (Some(l), Some(ip)) => check(l, &ip, "client address"),
            _ => Ok(()),
        }
    }

    pub fn check_key(&self, key_id: Uuid) -> Result<(), ApiError> {
        match &self.per_key {
            Some(l) => check(l, &key_id, "API key"),
            None => Ok(()),
        }
    }

    /// Forgets idle buckets; called periodically so memory stays bounded.
    pub fn shrink(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_key {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
