//! `X-Workspace-Key` authentication that is both safe and fast.
//!
//! argon2id is deliberately slow, so it stays off the hot path: a verified key
//! is cached in memory under the SHA-256 of the presented key (never the key
//! itself) for a TTL, which also bounds how long a revoked key keeps working.
//! Unknown keys are negatively cached briefly. A cache miss verifies on a
//! blocking thread behind a small semaphore, so a flood of random keys queues
//! there instead of on the async workers; an unknown lookup id is verified
//! against a dummy hash so it costs the same as a wrong secret.
//!
//! A valid key never joins that queue again once verified. Past half its TTL
//! a hit re-checks the key in the background (the row is still there, not
//! revoked, with the hash the key was verified against) and renews the entry;
//! a key whose entry expired while idle is re-checked the same way, within
//! the recheck window, before any argon2. Both need only one indexed Postgres
//! lookup, so a flood of unknown keys cannot delay known ones, and a revoked
//! key still stops working within the TTL.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use moka::future::Cache;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Semaphore;
use uuid::Uuid;
use vibemon_store::keys::{self, PresentedKey, StoredKey};
use vibemon_store::scopes::Scopes;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: Uuid,
    pub key_name: vibemon_schemas::DisplayName,
    pub workspace_id: Uuid,
    /// What the key may do, as its row said when it was last verified.
    pub scopes: Scopes,
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
    /// How long a verified key may be re-checked against Postgres alone
    /// (instead of argon2) after its cache entry expired.
    pub recheck_window: Duration,
}

type Digest32 = [u8; 32];

/// A key known to be valid, and what makes it so: the hash it matched. While
/// the row keeps that hash and is not revoked, the key is still valid.
struct Verified {
    principal: Arc<Principal>,
    hash: Arc<str>,
    at: Instant,
}

#[derive(Clone)]
pub struct Authenticator {
    pool: PgPool,
    positive: Cache<Digest32, Arc<Verified>>,
    negative: Cache<Digest32, ()>,
    /// Hashes that presented keys (by digest) were verified against, for the
    /// recheck window: the key needs no argon2 while its row keeps the hash.
    /// The window counts from the key's last use (time to idle), so a key in
    /// constant use never falls back to the argon2 queue.
    recent: Cache<Digest32, Arc<str>>,
    /// Keys being re-checked in the background, so a hot key starts one.
    refreshing: Arc<Mutex<HashSet<Digest32>>>,
    key_ttl: Duration,
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

/// The row still vouches for a key verified against `hash`.
fn still_valid(row: &StoredKey, hash: &str) -> bool {
    row.revoked_at.is_none() && row.hash == hash
}

fn verified(row: &StoredKey, hash: Arc<str>) -> Arc<Verified> {
    Arc::new(Verified {
        principal: Arc::new(Principal {
            key_id: row.id,
            key_name: vibemon_schemas::DisplayName::sanitized(&row.name),
            workspace_id: row.workspace_id,
            scopes: row.scopes,
        }),
        hash,
        at: Instant::now(),
    })
}

fn cache<V: Clone + Send + Sync + 'static>(ttl: Duration) -> Cache<Digest32, V> {
    Cache::builder()
        .max_capacity(100_000)
        .time_to_live(ttl)
        .build()
}

impl Authenticator {
    pub fn new(pool: PgPool, config: &AuthConfig, metrics: Metrics) -> Self {
        Self {
            pool,
            positive: cache(config.key_ttl),
            negative: cache(config.negative_ttl),
            recent: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(config.recheck_window.max(config.key_ttl))
                .build(),
            refreshing: Arc::default(),
            key_ttl: config.key_ttl,
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

        if let Some(v) = self.positive.get(&digest).await {
            self.metrics.auth_cache.with_label_values(&["hit"]).inc();
            self.record_use(v.principal.key_id);
            if v.at.elapsed() >= self.key_ttl / 2 {
                self.refresh_ahead(digest, presented.lookup.to_owned(), v.hash.clone());
            }
            return Ok(v.principal.clone());
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
            .try_get_with(digest, self.verify(digest, lookup, secret))
            .await;
        match result {
            Ok(v) => {
                self.record_use(v.principal.key_id);
                Ok(v.principal.clone())
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

    async fn verify(
        &self,
        digest: Digest32,
        lookup: String,
        secret: String,
    ) -> Result<Arc<Verified>, MissError> {
        let row = keys::find_by_lookup(&self.pool, &lookup)
            .await
            .map_err(|e| MissError::Unavailable(e.to_string()))?;
        if let (Some(row), Some(hash)) = (&row, self.recent.get(&digest).await) {
            self.metrics
                .auth_cache
                .with_label_values(&["recheck"])
                .inc();
            if still_valid(row, &hash) {
                return Ok(verified(row, hash));
            }
            self.recent.invalidate(&digest).await;
            return Err(MissError::Invalid);
        }
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| MissError::Busy)?
            .expect("semaphore never closed");
        let hash: Arc<str> = row.as_ref().map_or_else(
            || keys::DUMMY_HASH.as_str().into(),
            |r| r.hash.as_str().into(),
        );
        let checked = hash.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            keys::verify_secret(&secret, &checked)
        })
        .await
        .map_err(|e| MissError::Unavailable(e.to_string()))?;
        let outcome = if ok { "valid" } else { "invalid" };
        self.metrics
            .argon2_verifications
            .with_label_values(&[outcome])
            .inc();
        match row {
            Some(row) if ok && row.revoked_at.is_none() => {
                self.recent.insert(digest, hash.clone()).await;
                Ok(verified(&row, hash))
            }
            _ => Err(MissError::Invalid),
        }
    }

    /// Re-checks a cached key in the background and renews its entry, or
    /// drops it when the key was revoked. If Postgres is away the entry is
    /// left to expire at its TTL, as before.
    fn refresh_ahead(&self, digest: Digest32, lookup: String, hash: Arc<str>) {
        if !self.refreshing.lock().expect("not poisoned").insert(digest) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            match keys::find_by_lookup(&this.pool, &lookup).await {
                Ok(Some(row)) if still_valid(&row, &hash) => {
                    // Touch the recheck entry too: this key is in use.
                    let _ = this.recent.get(&digest).await;
                    this.positive.insert(digest, verified(&row, hash)).await;
                }
                Ok(_) => {
                    this.positive.invalidate(&digest).await;
                    this.recent.invalidate(&digest).await;
                }
                Err(e) => tracing::debug!(error = %e, "could not re-check a cached key"),
            }
            this.refreshing
                .lock()
                .expect("not poisoned")
                .remove(&digest);
        });
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
