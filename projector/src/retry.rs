//! The pause between retries of a Postgres or Kafka call that may pass on a
//! later try: exponential, capped at 5 s, with jitter so that projectors
//! retrying together do not stay in step.

use std::time::Duration;

use rand::Rng;

/// The pause before retry number `attempt` (0 for the first retry).
pub fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    Duration::from_millis(base + rand::rng().random_range(0..=base / 2))
}
