//! Postgres for the whole pipeline: the embedded migrations, pool set-up, and
//! the reference data (workspaces, environments, API keys) that ingest reads
//! and `vibemon` writes.
//!
//! Projection SQL lives with the projector; this crate holds what more than one
//! binary needs: the read queries ([`read`], for the read API and the CLI), the
//! checkpoint table and the read-model digest ([`checkpoints`], for the projector
//! and `vibemon replay`), and binary `COPY` framing ([`copy`]).

pub mod checkpoints;
pub mod copy;
pub mod dora;
pub mod integrations;
pub mod keys;
pub mod read;
pub mod reference;
pub mod scopes;

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The SQL in `migrations/` at the repository root, compiled in.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Opens a pool. `DATABASE_URL` may carry `sslmode=require` or `verify-full`
/// (with `sslrootcert=`), which sqlx honours.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = database_url.parse()?;
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options.application_name("vibemon"))
        .await
}

/// Applies every pending migration; a no-op on an up-to-date database.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// True when the error is a unique-constraint violation (a duplicate name).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// The same server URL with another database name; the query (sslmode, ...)
/// is kept.
pub fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// Whether `name` is a plain database identifier we can interpolate safely.
pub fn is_plain_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_swapped_and_the_query_kept() {
        assert_eq!(
            url_with_database("postgres://u:p@h:5432/vibemon?sslmode=require", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=require"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h/vibemon", "t2"),
            "postgres://u:p@h/t2"
        );
    }

    #[test]
    fn only_plain_identifiers_are_accepted_as_database_names() {
        assert!(is_plain_identifier("rebuild_2024"));
        for bad in [
            "",
            "Rebuild",
            "a-b",
            "x; DROP DATABASE y",
            "1abc",
            &"a".repeat(64),
        ] {
            assert!(!is_plain_identifier(bad), "{bad}");
        }
    }
}
