//! Receivers of a code host's own deployment events (GitHub
//! `deployment_status`, GitLab "Deployment Hook"): created and revoked by
//! `vibemon integration`, looked up by ingest on every delivery.
//!
//! No secret is stored. A receiver's secret is derived from the
//! [`SecretKey`] in the environment (`VIBEMON_INTEGRATION_KEY`) and the
//! receiver's id and salt, so a dump of the database signs nothing, and the
//! secret shown once at creation is derived again on each delivery to check
//! its signature or token.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

/// The environment variable that holds the [`SecretKey`], base64.
pub const SECRET_KEY_ENV: &str = "VIBEMON_INTEGRATION_KEY";

/// A code host that sends its own deployment events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "github" => Ok(Provider::Github),
            "gitlab" => Ok(Provider::Gitlab),
            _ => Err(format!("provider must be github or gitlab, got {s:?}")),
        }
    }
}

/// The key receivers' secrets are derived from: at least 32 random bytes.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Reads standard base64 of at least 32 bytes (`openssl rand -base64 32`).
    pub fn parse(base64: &str) -> Result<Self, String> {
        let bytes = STANDARD.decode(base64.trim()).map_err(|e| {
            format!("{SECRET_KEY_ENV} must be base64 (openssl rand -base64 32): {e}")
        })?;
        if bytes.len() < 32 {
            return Err(format!(
                "{SECRET_KEY_ENV} must hold at least 32 bytes, got {}",
                bytes.len()
            ));
        }
        Ok(Self(bytes))
    }

    /// The key in `VIBEMON_INTEGRATION_KEY`; `None` when it is not set.
    pub fn from_env() -> Result<Option<Self>, String> {
        match std::env::var(SECRET_KEY_ENV) {
            Ok(v) => Self::parse(&v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(format!("{SECRET_KEY_ENV}: {e}")),
        }
    }

    /// The secret of receiver `id` with `salt`: what the code host signs
    /// with (GitHub) or sends (GitLab). 43 URL-safe characters.
    pub fn secret_for(&self, id: Uuid, salt: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"vibemon-integration-v1:");
        mac.update(id.to_string().as_bytes());
        mac.update(b":");
        mac.update(salt);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }
}

/// A receiver as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Integration {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub provider: Provider,
    pub name: String,
    /// The code host's environment name -> an environment name here.
    pub environment_map: BTreeMap<String, String>,
    /// Whether an environment neither mapped nor known is created.
    pub create_environments: bool,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub secret_salt: Vec<u8>,
}

impl Integration {
    /// Where the code host sends its events.
    pub fn path(&self) -> String {
        format!(
            "/api/v1/integrations/{}/{}",
            self.provider.as_str(),
            self.id
        )
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    workspace_id: Uuid,
    provider: String,
    name: String,
    environment_map: sqlx::types::Json<BTreeMap<String, String>>,
    create_environments: bool,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    secret_salt: Vec<u8>,
}

impl TryFrom<Row> for Integration {
    type Error = sqlx::Error;

    fn try_from(r: Row) -> Result<Self, Self::Error> {
        Ok(Integration {
            id: r.id,
            workspace_id: r.workspace_id,
            provider: Provider::parse(&r.provider).map_err(|e| sqlx::Error::Decode(e.into()))?,
            name: r.name,
            environment_map: r.environment_map.0,
            create_environments: r.create_environments,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
            secret_salt: r.secret_salt,
        })
    }
}

const COLUMNS: &str = "id, workspace_id, provider, name, environment_map, create_environments, \
                       created_at, last_used_at, revoked_at, secret_salt";

/// What a new receiver is.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub workspace_id: Uuid,
    pub provider: Provider,
    pub name: String,
    pub environment_map: BTreeMap<String, String>,
    pub create_environments: bool,
}

/// Creates a receiver; returns it with its secret, which is shown once.
pub async fn create(
    pool: &PgPool,
    key: &SecretKey,
    new: &NewIntegration,
) -> Result<(Integration, String), sqlx::Error> {
    let id = Uuid::new_v4();
    let salt: [u8; 16] = rand::random();
    let row: Row = sqlx::query_as(&format!(
        "INSERT INTO integrations (id, workspace_id, provider, name, secret_salt, environment_map,
             create_environments)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(new.workspace_id)
    .bind(new.provider.as_str())
    .bind(&new.name)
    .bind(&salt[..])
    .bind(sqlx::types::Json(&new.environment_map))
    .bind(new.create_environments)
    .fetch_one(pool)
    .await?;
    let integration = Integration::try_from(row)?;
    let secret = key.secret_for(integration.id, &integration.secret_salt);
    Ok((integration, secret))
}

/// The receivers of a workspace, oldest first, revoked ones included.
pub async fn list(pool: &PgPool, workspace_id: Uuid) -> Result<Vec<Integration>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM integrations WHERE workspace_id = $1 ORDER BY created_at, id"
    ))
    .bind(workspace_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Integration::try_from).collect()
}

/// One receiver by id, revoked or not; `None` when there is none.
pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<Integration>, sqlx::Error> {
    let row: Option<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM integrations WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.map(Integration::try_from).transpose()
}

/// Revokes a receiver; false when there is none or it was revoked already.
pub async fn revoke(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE integrations SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records a delivery that passed its signature check, at most once a
/// minute per receiver (a busy receiver does not rewrite its row each time).
pub async fn touch(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE integrations SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_depends_on_the_key_the_receiver_and_its_salt() {
        let key = SecretKey::parse(&STANDARD.encode([7u8; 32])).unwrap();
        let other = SecretKey::parse(&STANDARD.encode([8u8; 32])).unwrap();
        let id = Uuid::from_u128(1);
        let s = key.secret_for(id, &[1; 16]);
        assert_eq!(s.len(), 43);
        assert_eq!(s, key.secret_for(id, &[1; 16]), "derived again, the same");
        assert_ne!(s, other.secret_for(id, &[1; 16]));
        assert_ne!(s, key.secret_for(Uuid::from_u128(2), &[1; 16]));
        assert_ne!(s, key.secret_for(id, &[2; 16]));
    }

    #[test]
    fn a_short_or_garbled_key_is_refused_with_how_to_make_one() {
        assert!(SecretKey::parse(&STANDARD.encode([0u8; 31]))
            .unwrap_err()
            .contains("at least 32 bytes"));
        assert!(SecretKey::parse("not base64!")
            .unwrap_err()
            .contains("openssl rand -base64 32"));
        assert_eq!(
            format!(
                "{:?}",
                SecretKey::parse(&STANDARD.encode([0u8; 32])).unwrap()
            ),
            "SecretKey(..)"
        );
    }
}
