//! Postgres for tests: a fresh migrated database per test ([`TestDb`]), a
//! tenant in it ([`Tenant`]), and a server of the test's own that it may
//! stop and restart ([`PrivatePostgres`]).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;
use vibemon_schemas::DisplayName;

use crate::certs::make_test_ca_and_server_cert;
use crate::ports::free_port;

/// The local stack's database (a role that may create databases).
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://vibemon:vibemon@127.0.0.1:5432/vibemon".to_owned())
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
        let url = vibemon_store::url_with_database(&admin, &name);
        let pool = vibemon_store::connect(&url, 5)
            .await
            .expect("connect to test database");
        Self { name, url, pool }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (admin_database_url(), self.name.clone());
        crate::cleanup::on_own_thread(move || async move {
            if let Ok(mut conn) = PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        });
    }
}

/// A workspace with a `production` environment and a key, in `db`.
pub struct Tenant {
    pub workspace_id: Uuid,
    pub environment_id: Uuid,
    pub key_id: Uuid,
    pub key: String,
}

impl Tenant {
    pub async fn create(pool: &PgPool, key_name: &str) -> Self {
        use vibemon_store::{keys, reference};
        let ws = reference::create_workspace(pool, &DisplayName::parse("test workspace").unwrap())
            .await
            .unwrap();
        let env = reference::create_environment(pool, ws.id, "production")
            .await
            .unwrap();
        let (info, key) = keys::create(
            pool,
            ws.id,
            &DisplayName::parse(key_name).unwrap(),
            vibemon_store::scopes::Scopes::LEGACY,
        )
        .await
        .unwrap();
        Self {
            workspace_id: ws.id,
            environment_id: env.id,
            key_id: info.id,
            key,
        }
    }
}

/// A PostgreSQL server of this test's own (Debian's binaries, a temporary
/// data directory, a free port), for tests that stop and restart it. Its
/// data directory is deleted on drop.
pub struct PrivatePostgres {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn as_postgres(cmd: &Path, args: &[&str]) -> ExitStatus {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(cmd)
        .args(args)
        // The postgres user may not enter the test's directory (a 0700 clone).
        .current_dir("/")
        .stdout(Stdio::null())
        .status()
        .expect("runuser")
}

/// The newest PostgreSQL's binaries that Debian installed.
fn postgres_bin() -> PathBuf {
    let version = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Debian's postgresql is installed")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .expect("a PostgreSQL version");
    PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"))
}

impl PrivatePostgres {
    /// initdb and start a fresh server with a `vibemon` superuser (trust auth).
    pub fn start() -> Self {
        Self::start_with_tls(false)
    }

    /// The same; with `tls`, the server also gets a self-signed certificate
    /// for 127.0.0.1 signed by a test CA (made with openssl) and `ssl = on`.
    /// The CA is `dir/ca.crt`, usable as `sslrootcert`.
    pub fn start_with_tls(tls: bool) -> Self {
        let bin = postgres_bin();
        let dir = std::env::temp_dir().join(format!("vibemon-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let chown = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success());
        let dir_s = dir.display().to_string();
        let ok = as_postgres(
            &bin.join("initdb"),
            &["-D", &dir_s, "-A", "trust", "-U", "vibemon", "--no-sync"],
        );
        assert!(ok.success(), "initdb failed");
        if tls {
            enable_tls(&dir);
        }
        let pg = Self {
            dir,
            port: free_port(),
            bin,
        };
        pg.up();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://vibemon@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn up(&self) {
        let opts = format!(
            "-p {} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port
        );
        let dir = self.dir.display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        let ok = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &dir, "-o", &opts, "-l", &log, "-w", "start"],
        );
        assert!(ok.success(), "pg_ctl start failed (see {log})");
    }

    /// Stops the server at once, as a crash or a kill would (`-m immediate`).
    pub fn stop(&self) {
        let dir = self.dir.display().to_string();
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &dir, "-m", "immediate", "-w", "stop"],
        );
    }
}

/// A test CA (`dir/ca.crt`), a server certificate it signed for 127.0.0.1,
/// and `ssl = on`, in a data directory.
fn enable_tls(dir: &Path) {
    make_test_ca_and_server_cert(dir);
    for f in ["server.key", "server.crt"] {
        Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.join(f))
            .status()
            .unwrap();
    }
    Command::new("chmod")
        .arg("600")
        .arg(dir.join("server.key"))
        .status()
        .unwrap();
    let conf = dir.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    std::fs::write(&conf, text).unwrap();
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
