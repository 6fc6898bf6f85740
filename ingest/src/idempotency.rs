//! `Idempotency-Key`: the answers already given, by event id, and the rule
//! that binds a key to the body it first came with.
//!
//! Concurrent requests with one key coalesce: one publishes, the others wait
//! for its answer and then compare their body with its body. A retry with
//! the same bytes gets the first answer without publishing again; the same
//! key with other bytes is refused.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use uuid::Uuid;
use vibemon_schemas::api::DeploymentResponse;
use vibemon_schemas::DeploymentReported;

use crate::error::ApiError;
use crate::sink::{Sink, SinkError};
use crate::trace::RecordTrace;

/// The answer given for an `Idempotency-Key`, and the body it answered.
#[derive(Debug)]
pub struct Remembered {
    /// `request_fingerprint` of the accepted body. The key is bound to it: the
    /// same key with other bytes is a reuse of the key (a client bug), not a
    /// retry, and must not get this answer.
    pub fingerprint: String,
    pub response: Arc<DeploymentResponse>,
}

/// The answers remembered for a day, by event id (which the workspace and
/// the key determine).
#[derive(Clone)]
pub struct Idempotency {
    answers: Cache<Uuid, Arc<Remembered>>,
}

impl Idempotency {
    pub fn new() -> Self {
        // LRU, not moka's default TinyLFU: a full TinyLFU cache admits a new key
        // only if it was seen more often than the victim, so once 200,000 keys
        // were remembered most new keys would not be, and their retries would
        // publish again.
        let answers = Cache::builder()
            .max_capacity(200_000)
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .time_to_live(Duration::from_secs(24 * 3600))
            .build();
        Self { answers }
    }

    /// Publishes `event` unless its key was answered already, and answers
    /// with the first outcome; a body other than the first (`fingerprint`
    /// differs) is a reused key. Only the publishing request's `trace`
    /// goes on the record: a retry answered from here has no record, and
    /// its trace ends in ingest.
    pub async fn publish_once(
        &self,
        sink: &Sink,
        event: &DeploymentReported,
        fingerprint: String,
        trace: &RecordTrace,
    ) -> Result<Arc<DeploymentResponse>, ApiError> {
        let remembered = self
            .answers
            .try_get_with(event.event_id, async {
                sink.publish(event, Some(&fingerprint), trace).await?;
                Ok::<_, SinkError>(Arc::new(Remembered {
                    fingerprint: fingerprint.clone(),
                    response: Arc::new(DeploymentResponse::from(event)),
                }))
            })
            .await
            .map_err(|e| ApiError::SinkUnavailable(e.to_string()))?;
        if remembered.fingerprint != fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        Ok(remembered.response.clone())
    }
}

impl Default for Idempotency {
    fn default() -> Self {
        Self::new()
    }
}
