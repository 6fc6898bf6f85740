//! Workspace API keys: their format, how they are hashed, and their table.
//!
//! A key reads `vmk_<lookup>_<secret>`: `vmk_` lets secret scanners recognise
//! it, `<lookup>` (16 hex digits) is public and finds the one row to verify
//! against, and `<secret>` is 256 random bits in base64url. Only an argon2id
//! PHC hash of the secret is stored, with parameters at OWASP's current
//! recommendation (m = 19 MiB, t = 2, p = 1). The plaintext exists once, in
//! the output of `vibemon key create`.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sqlx::PgPool;
use uuid::Uuid;

use crate::scopes::Scopes;

/// What every key starts with; also the pattern secret scanners match:
/// `vmk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}`.
pub const KEY_PREFIX: &str = "vmk_";
const LOOKUP_HEX_LEN: usize = 16;
const SECRET_BYTES: usize = 32;
const SECRET_B64_LEN: usize = 43;

/// OWASP (Password Storage Cheat Sheet): argon2id, 19 MiB, 2 iterations, 1 lane.
const ARGON2_M_KIB: u32 = 19 * 1024;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None).expect("valid argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A key as presented in `X-Workspace-Key`, split into its parts. Parsing
/// checks the shape only; nothing is trusted until [`verify_secret`] agrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub lookup: &'a str,
    pub secret: &'a str,
}

impl<'a> PresentedKey<'a> {
    /// `None` for anything that is not shaped like one of our keys.
    pub fn parse(raw: &'a str) -> Option<Self> {
        let rest = raw.strip_prefix(KEY_PREFIX)?;
        let (lookup, secret) = rest.split_at_checked(LOOKUP_HEX_LEN)?;
        let secret = secret.strip_prefix('_')?;
        let lookup_ok = lookup
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let secret_ok = secret.len() == SECRET_B64_LEN
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (lookup_ok && secret_ok).then_some(Self { lookup, secret })
    }
}

/// A freshly generated key: the plaintext to show once, and what to store.
pub struct GeneratedKey {
    pub plaintext: String,
    pub lookup: String,
    pub hash: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the plaintext, not even in a debug dump.
        f.debug_struct("GeneratedKey")
            .field("lookup", &self.lookup)
            .finish_non_exhaustive()
    }
}

/// Makes a new random key and its argon2id hash.
pub fn generate() -> GeneratedKey {
    let plaintext = generate_unhashed_plaintext();
    let presented = PresentedKey::parse(&plaintext).expect("our own format parses");
    let (lookup, hash) = (presented.lookup.to_owned(), hash_secret(presented.secret));
    GeneratedKey {
        plaintext,
        lookup,
        hash,
    }
}

/// A well-formed key nobody holds, without paying for its hash: for load
/// generators that play an attacker guessing keys.
pub fn generate_unhashed_plaintext() -> String {
    let mut rng = rand::rng();
    let mut lookup = [0u8; LOOKUP_HEX_LEN / 2];
    rng.fill_bytes(&mut lookup);
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill_bytes(&mut secret);
    let lookup: String = lookup.iter().map(|b| format!("{b:02x}")).collect();
    format!("{KEY_PREFIX}{lookup}_{}", URL_SAFE_NO_PAD.encode(secret))
}

/// argon2id PHC string of a secret, with a fresh random salt.
pub fn hash_secret(secret: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2()
        .hash_password(secret.as_bytes(), &salt)
        .expect("argon2 hashing cannot fail with valid params")
        .to_string()
}

/// Checks a secret against a stored PHC hash. CPU-heavy (tens of ms): call it
/// from a blocking thread.
pub fn verify_secret(secret: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => argon2().verify_password(secret.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    }
}

/// A hash of a secret nobody holds. Verifying an unknown lookup against it
/// costs what a real verification costs, so a wrong lookup and a wrong secret
/// take indistinguishable time.
pub static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    hash_secret(&URL_SAFE_NO_PAD.encode(secret))
});

/// A row of `api_keys`, as the authenticator needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub hash: String,
    #[sqlx(try_from = "Vec<String>")]
    pub scopes: Scopes,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A row of `api_keys` for listing: never the hash.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct KeyInfo {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub prefix: String,
    #[sqlx(try_from = "Vec<String>")]
    pub scopes: Scopes,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Stores a new key for a workspace with the scopes it may use; returns its
/// row and the plaintext.
pub async fn create(
    pool: &PgPool,
    workspace_id: Uuid,
    name: &vibemon_schemas::DisplayName,
    scopes: Scopes,
) -> Result<(KeyInfo, String), sqlx::Error> {
    let key = tokio_blocking(generate).await;
    let info = sqlx::query_as::<_, KeyInfo>(
        "INSERT INTO api_keys (id, workspace_id, name, prefix, hash, scopes)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, workspace_id, name, prefix, scopes, created_at, last_used_at, revoked_at",
    )
    .bind(Uuid::now_v7())
    .bind(workspace_id)
    .bind(name.as_str())
    .bind(&key.lookup)
    .bind(&key.hash)
    .bind(scopes.names())
    .fetch_one(pool)
    .await?;
    Ok((info, key.plaintext))
}

/// argon2 on the caller's async worker would stall it; hash on a blocking thread.
async fn tokio_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("key generation does not panic")
}

/// The key row for a public lookup id, revoked or not.
pub async fn find_by_lookup(pool: &PgPool, lookup: &str) -> Result<Option<StoredKey>, sqlx::Error> {
    sqlx::query_as::<_, StoredKey>(
        "SELECT id, workspace_id, name, hash, scopes, revoked_at FROM api_keys WHERE prefix = $1",
    )
    .bind(lookup)
    .fetch_optional(pool)
    .await
}

/// Revokes a key; `None` when there is no such key (in `workspace`, when
/// given: the dashboard revokes only its own workspace's keys). Revoking
/// twice keeps the first revocation time.
pub async fn revoke(
    pool: &PgPool,
    key_id: Uuid,
    workspace: Option<Uuid>,
) -> Result<Option<KeyInfo>, sqlx::Error> {
    sqlx::query_as::<_, KeyInfo>(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
         WHERE id = $1 AND ($2::uuid IS NULL OR workspace_id = $2)
         RETURNING id, workspace_id, name, prefix, scopes, created_at, last_used_at, revoked_at",
    )
    .bind(key_id)
    .bind(workspace)
    .fetch_optional(pool)
    .await
}

/// Every key of a workspace, oldest first.
pub async fn list(pool: &PgPool, workspace_id: Uuid) -> Result<Vec<KeyInfo>, sqlx::Error> {
    sqlx::query_as::<_, KeyInfo>(
        "SELECT id, workspace_id, name, prefix, scopes, created_at, last_used_at, revoked_at
         FROM api_keys WHERE workspace_id = $1 ORDER BY created_at, id",
    )
    .bind(workspace_id)
    .fetch_all(pool)
    .await
}

/// Records that keys were used, in one statement for a whole batch.
pub async fn touch_last_used(
    pool: &PgPool,
    used: &[(Uuid, DateTime<Utc>)],
) -> Result<(), sqlx::Error> {
    if used.is_empty() {
        return Ok(());
    }
    let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = used.iter().copied().unzip();
    sqlx::query(
        "UPDATE api_keys k SET last_used_at = GREATEST(k.last_used_at, u.at)
         FROM UNNEST($1::uuid[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id",
    )
    .bind(ids)
    .bind(times)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_and_verifies_against_its_own_hash_only() {
        let key = generate();
        assert!(key.plaintext.starts_with("vmk_"));
        let presented = PresentedKey::parse(&key.plaintext).expect("own format parses");
        assert_eq!(presented.lookup, key.lookup);
        assert!(key.hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_secret(presented.secret, &key.hash));
        assert!(!verify_secret(presented.secret, &DUMMY_HASH));
        let other = generate();
        assert!(!verify_secret(presented.secret, &other.hash));
    }

    #[test]
    fn a_key_carries_256_bits_of_secret() {
        let key = generate();
        let secret = PresentedKey::parse(&key.plaintext).unwrap().secret;
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 32);
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let good = generate().plaintext;
        for bad in [
            "",
            "Bearer x",
            &good[..good.len() - 1],
            &good.replace("vmk_", "vmx_"),
            &format!("{good}A"),
            "vmk_XXXXXXXXXXXXXXXX_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(PresentedKey::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn the_debug_form_of_a_generated_key_hides_the_plaintext() {
        let key = generate();
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.plaintext));
        assert!(!shown.contains(PresentedKey::parse(&key.plaintext).unwrap().secret));
    }
}
