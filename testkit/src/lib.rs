//! Test-only helpers: a fresh database and a fresh topic per test.
//!
//! Every integration test runs against the real Postgres and Kafka of
//! `deploy/local/services up` and gets resources nobody else touches, so the
//! suite runs in parallel. Both clean up on drop.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// The local stack's database (a role that may create databases).
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://vibemon:vibemon@127.0.0.1:5432/vibemon".to_owned())
}

/// The local stack's brokers.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn with_database(url: &str, name: &str) -> String {
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

/// A migrated database of its own, dropped (with FORCE) when this is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    /// A new database with every migration applied.
    pub async fn new() -> Self {
        let db = Self::empty().await;
        vibemon_store::migrate(&db.pool)
            .await
            .expect("migrations apply");
        db
    }

    /// A new database with nothing in it (for testing `vibemon migrate`).
    pub async fn empty() -> Self {
        let admin = admin_database_url();
        let name = format!("test_{}", Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("Postgres is up: run deploy/local/services up");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = with_database(&admin, &name);
        let pool = vibemon_store::connect(&url, 5)
            .await
            .expect("connect to test database");
        Self { name, url, pool }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (admin_database_url(), self.name.clone());
        // Drop runs outside any async context we can borrow; use a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

fn admin_client(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client")
}

/// A topic of its own (and its `.dlq`), deleted when this is dropped.
pub struct TestTopic {
    pub name: String,
    pub brokers: String,
    pub partitions: i32,
}

impl TestTopic {
    /// A new topic with `partitions` partitions, plus its dead-letter topic.
    pub async fn new(partitions: i32) -> Self {
        Self::on(&kafka_brokers(), partitions).await
    }

    /// The same on a given cluster (a private broker of a fault test).
    pub async fn on(brokers: &str, partitions: i32) -> Self {
        let name = format!("test-{}", Uuid::new_v4().simple());
        let dlq = format!("{name}.dlq");
        let admin = admin_client(brokers);
        let topics = [
            NewTopic::new(&name, partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
        ];
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        for result in admin
            .create_topics(&topics, &opts)
            .await
            .expect("create topics")
        {
            result.expect("topic created");
        }
        Self {
            name,
            brokers: brokers.to_owned(),
            partitions,
        }
    }
}

impl Drop for TestTopic {
    fn drop(&mut self) {
        let (brokers, name) = (self.brokers.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let admin = admin_client(&brokers);
                let dlq = format!("{name}.dlq");
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    admin.delete_topics(&[&name, &dlq], &opts),
                )
                .await;
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_name_is_swapped_and_the_query_kept() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/vibemon?sslmode=require", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=require"
        );
        assert_eq!(
            with_database("postgres://u:p@h/vibemon", "t2"),
            "postgres://u:p@h/t2"
        );
    }
}
