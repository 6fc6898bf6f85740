//! `X-Workspace-Key` authentication that is both safe and fast.
//!
//! argon2id is deliberately slow, so it stays off the hot path: a verified key
//! is cached in memory under the SHA-256 of the presented key (never the key
//! itself) for a TTL, which also bounds how long a revoked key keeps working.
//! Unknown keys are negatively cached briefly. A cache miss verifies on a
//! blocking thread behind a small semaphore, so a flood of random keys queues
//! there instead of on the async workers; an unknown lookup id is verified
//! against a dummy hash so it costs the same as a wrong secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use moka::future::Cache;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use uuid::Uuid;
use vibemon_store::keys::{self, PresentedKey};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub key_name: vibemon_schemas::DisplayName,
    pub workspace_id: Uuid,
}

/// Knobs for [`Authenticator`].
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// How long a verified key is trusted without asking Postgres again; a
    /// revoked key stops working within this.
    pub key_ttl: Duration,
    /// How long an unknown key is remembered as unknown.
    pub negative_ttl: Duration,
    /// argon2 verifications allowed at once (each takes a core for ~20 ms).
    pub argon2_concurrency: usize,
    /// How long a request may wait for a verification slot before 503.
    pub argon2_queue_timeout: Duration,
}

type Digest32 = [u8; 32];

#[derive(Clone)]
pub struct Authenticator {
    pool: PgPool,
    positive: Cache<Digest32, Arc<Principal>>,
    negative: Cache<Digest32, ()>,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    metrics: Metrics,
    /// Keys used since the last flush, with the latest use; written to
    /// `api_keys.last_used_at` in batches by [`Authenticator::flush_last_used`].
    used: Arc<Mutex<HashMap<Uuid, DateTime<Utc>>>>,
}

/// Why a cache miss failed; cloned out of moka's shared error.
#[derive(Debug, Clone)]
enum MissError {
    Invalid,
    Unavailable(String),
    Busy,
}

impl Authenticator {
    pub fn new(pool: PgPool, config: &AuthConfig, metrics: Metrics) -> Self {
        Self {
            pool,
            positive: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.key_ttl)
                .build(),
            negative: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.negative_ttl)
                .build(),
            slots: Arc::new(Semaphore::new(config.argon2_concurrency.max(1))),
            queue_timeout: config.argon2_queue_timeout,
            metrics,
            used: Arc::default(),
        }
    }

    /// Authenticates the raw header value.
    pub async fn authenticate(&self, raw: Option<&str>) -> Result<Arc<Principal>, ApiError> {
        let raw = raw.ok_or(ApiError::Unauthorized)?;
        let presented = PresentedKey::parse(raw).ok_or(ApiError::Unauthorized)?;
        let digest: Digest32 = Sha256::digest(raw.as_bytes()).into();

        if let Some(p) = self.positive.get(&digest).await {
            self.metrics.auth_cache.with_label_values(&["hit"]).inc();
            self.record_use(p.key_id);
            return Ok(p);
        }
        if self.negative.contains_key(&digest) {
            self.metrics
                .auth_cache
                .with_label_values(&["negative_hit"])
                .inc();
            return Err(ApiError::Unauthorized);
        }
        self.metrics.auth_cache.with_label_values(&["miss"]).inc();

        // Concurrent misses for the same key share one verification.
        let lookup = presented.lookup.to_owned();
        let secret = presented.secret.to_owned();
        let result = self
            .positive
            .try_get_with(digest, self.verify(lookup, secret))
            .await;
        match result {
            Ok(p) => {
                self.record_use(p.key_id);
                Ok(p)
            }
            Err(e) => match &*e {
                MissError::Invalid => {
                    self.negative.insert(digest, ()).await;
                    Err(ApiError::Unauthorized)
                }
                MissError::Unavailable(why) => Err(ApiError::ReferenceUnavailable(why.clone())),
                MissError::Busy => Err(ApiError::AuthBusy),
            },
        }
    }

    async fn verify(&self, lookup: String, secret: String) -> Result<Arc<Principal>, MissError> {
        let row = keys::find_by_lookup(&self.pool, &lookup)
            .await
            .map_err(|e| MissError::Unavailable(e.to_string()))?;
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| MissError::Busy)?
            .expect("semaphore never closed");
        let hash = row
            .as_ref()
            .map_or_else(|| keys::DUMMY_HASH.clone(), |r| r.hash.clone());
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            keys::verify_secret(&secret, &hash)
        })
        .await
        .map_err(|e| MissError::Unavailable(e.to_string()))?;
        let outcome = if ok { "valid" } else { "invalid" };
        self.metrics
            .argon2_verifications
            .with_label_values(&[outcome])
            .inc();
        match row {
            Some(row) if ok && row.revoked_at.is_none() => Ok(Arc::new(Principal {
                key_id: row.id,
                key_name: vibemon_schemas::DisplayName::sanitized(&row.name),
                workspace_id: row.workspace_id,
            })),
            _ => Err(MissError::Invalid),
        }
    }

    fn record_use(&self, key_id: Uuid) {
        self.used
            .lock()
            .expect("not poisoned")
            .insert(key_id, Utc::now());
    }

    /// Writes the batched `last_used_at` updates; called periodically.
    pub async fn flush_last_used(&self) -> Result<(), sqlx::Error> {
        let batch: Vec<(Uuid, DateTime<Utc>)> =
            std::mem::take(&mut *self.used.lock().expect("not poisoned"))
                .into_iter()
                .collect();
        keys::touch_last_used(&self.pool, &batch).await
    }

    /// Whether a key could be authenticated right now without Postgres.
    pub fn has_warm_cache(&self) -> bool {
        self.positive.entry_count() > 0
    }
}
