//! Request limits: the cap on requests in flight ([`InFlight`]), and rate
//! limits, a token bucket per client IP (checked before anything else,
//! so a flood of random keys cannot reach argon2) and one per API key
//! (checked once the key is known, so one noisy CI system cannot crowd out
//! the others). Over a rate the answer is 429 with `Retry-After`; over the
//! in-flight cap it is 503 with `Retry-After`, before the body is read.
//! (The caps on TCP connections live in the accept loop, `server.rs`.)
//!
//! The client IP is the TCP peer; behind a proxy that is the proxy, so set
//! the per-IP limit to 0 (off) there and rely on the proxy's own limits.
//! An IPv6 client is bucketed by its /64, the block one subscriber or host
//! is given, so rotating through it escapes nothing; an IPv4-mapped IPv6
//! address counts as its IPv4 address.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use crate::error::ApiError;

/// The cap on requests being worked on at once: what bounds ingest's memory
/// under overload. Connections are cheap to hold (a few KiB each); a request
/// in flight holds its body, its event and, once handed over, a record in
/// the producer's queue until the broker acknowledges it. Past the cap a
/// request is refused with a 503 before its body is read, which costs
/// nearly nothing, so shedding stays cheap however hard the load.
#[derive(Clone)]
pub struct InFlight {
    slots: Arc<Semaphore>,
    max: usize,
}

/// The slot of one admitted request, given back when the last clone is
/// dropped: the webhook hands a clone to its publish task, so a request
/// whose client hung up still counts until its record is acknowledged.
#[derive(Clone)]
pub struct Admission {
    _slot: Arc<OwnedSemaphorePermit>,
}

impl InFlight {
    /// At most `max` requests at once (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot for one more request, or `Overloaded` at once when none is free.
    pub fn admit(&self) -> Result<Admission, ApiError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(|permit| Admission {
                _slot: Arc::new(permit),
            })
            .map_err(|_| ApiError::Overloaded)
    }

    /// Slots taken now, for the in-flight gauge.
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

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

/// The address a client is limited by: IPv4 as it is, IPv6 by its /64.
pub(crate) fn client_bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
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
            (Some(l), Some(ip)) => check(l, &client_bucket(ip), "client address"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(limits: &RateLimits, ip: &str) -> bool {
        limits.check_ip(Some(ip.parse().unwrap())).is_ok()
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_a_bucket_and_other_prefixes_do_not() {
        let limits = RateLimits::new(1, 0);

        let burst = [
            allowed(&limits, "2001:db8:0:7::1"),
            allowed(&limits, "2001:db8:0:7::2"),
        ];
        let rotated = allowed(&limits, "2001:db8:0:7:dead:beef:0:1");
        let next_prefix = allowed(&limits, "2001:db8:0:8::1");

        assert_eq!(burst, [true, true], "a burst of twice the rate");
        assert!(!rotated, "rotating within the /64 escapes nothing");
        assert!(next_prefix, "another /64 is another client");
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_shares_the_bucket_of_its_ipv4_address() {
        let limits = RateLimits::new(1, 0);

        let seen = [
            allowed(&limits, "192.0.2.7"),
            allowed(&limits, "::ffff:192.0.2.7"),
            allowed(&limits, "::ffff:192.0.2.7"),
        ];

        assert_eq!(seen, [true, true, false]);
    }
}
