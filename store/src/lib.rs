//! Postgres for the whole pipeline: the embedded migrations, pool set-up, and
//! the reference data (workspaces, environments, API keys) that ingest reads
//! and `vibemon` writes.
//!
//! Projection SQL lives with the projector and read queries with the read API;
//! this crate holds only what more than one binary needs.

pub mod keys;
pub mod reference;

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
