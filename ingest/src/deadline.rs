//! The webhook's request deadline: set when the request arrives, it bounds
//! every stage before the event is handed to the producer (authentication,
//! the body, the environment lookup). Once the event is handed over, only
//! the producer's `message.timeout.ms` bounds the answer.
//!
//! It rides in the request's extensions, so the `Authenticated` extractor
//! can keep to it too; a request without one (the read API, which has a
//! blanket timeout instead) is not cut off here.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::ApiError;

/// When the stages before the hand-off must be done.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Self(Instant::now() + budget)
    }

    /// Runs a pre-produce stage, or answers 503 if the deadline passes first:
    /// our own slowness (argon2 queue, Postgres), not the client's.
    pub async fn bound<T>(
        self,
        stage: &'static str,
        stage_future: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        tokio::time::timeout_at(self.0, stage_future)
            .await
            .unwrap_or(Err(ApiError::DeadlineExceeded(stage)))
    }
}
