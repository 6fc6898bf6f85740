//! Test-only helpers: a fresh database and a fresh topic per test.
//!
//! Every integration test runs against the real Postgres and Kafka of
//! `deploy/local/services up` and gets resources nobody else touches, so the
//! suite runs in parallel. Both clean up on drop.

pub mod events;
pub mod ledger;
pub mod spawned;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;
use vibemon_schemas::DisplayName;

/// The local stack's database (a role that may create databases).
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://vibemon:vibemon@127.0.0.1:5432/vibemon".to_owned())
}

/// The local stack's brokers.
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
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
        Self::replicated(brokers, partitions, 1).await
    }

    /// The same with `replication` replicas (min ISR comes from the cluster).
    pub async fn replicated(brokers: &str, partitions: i32, replication: i32) -> Self {
        let name = format!("test-{}", Uuid::new_v4().simple());
        let dlq = format!("{name}.dlq");
        let admin = admin_client(brokers);
        let topics = [
            NewTopic::new(&name, partitions, TopicReplication::Fixed(replication)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(replication)),
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

/// One record read back from a test topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl ReadRecord {
    /// A copy of what a consumer received.
    pub fn of(m: &impl rdkafka::message::Message) -> Self {
        use rdkafka::message::Headers;
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }
}

/// Reads records of `topic` from the beginning until `want` were seen or
/// `timeout` passed; returns what it saw (so a test can assert "exactly n").
pub async fn read_topic(
    brokers: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Vec<ReadRecord> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("test-reader-{}", Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < want {
        let Ok(msg) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        out.push(ReadRecord::of(&msg.expect("kafka message")));
    }
    out
}

/// Counts every record on a topic (sum of high watermarks).
pub fn count_records(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "test-counter")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

/// Polls `check` every 100 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
        let (info, key) = keys::create(pool, ws.id, &DisplayName::parse(key_name).unwrap())
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

/// A Kafka broker of this test's own (a real `kafka.Kafka` JVM started by
/// `deploy/local/kafka-node`), for tests that kill and restart it. Its data
/// directory is deleted on drop.
pub struct PrivateBroker {
    pub dir: std::path::PathBuf,
    pub port: u16,
    pub controller_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kafka_node(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/kafka-node");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env("KAFKA_HEAP", "256m")
        .status()
        .expect("run kafka-node");
    assert!(status.success(), "kafka-node {args:?} failed");
}

impl PrivateBroker {
    /// Starts a fresh single-node KRaft broker on free ports.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("vibemon-broker-{}", Uuid::new_v4().simple()));
        let broker = Self {
            dir,
            port: free_port(),
            controller_port: free_port(),
        };
        broker.up();
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    /// Starts it again (after `kill`), keeping its data.
    pub fn up(&self) {
        let (port, cport) = (self.port.to_string(), self.controller_port.to_string());
        kafka_node(&[
            "start",
            "--dir",
            &self.dir_arg(),
            "--port",
            &port,
            "--controller-port",
            &cport,
        ]);
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&self) {
        kafka_node(&["kill", "--dir", &self.dir_arg()]);
    }
}

/// A private broker that also listens with SASL_SSL (SCRAM-SHA-512, a
/// certificate signed by a test CA made with openssl).
pub struct SaslBroker {
    pub broker: PrivateBroker,
    pub sasl_port: u16,
    pub ca: std::path::PathBuf,
    pub username: String,
    pub password: String,
}

impl SaslBroker {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("vibemon-sasl-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        make_test_ca_and_server_cert(&dir);
        let keystore = dir.join("keystore.pem");
        let pem = std::fs::read_to_string(dir.join("server.key")).unwrap()
            + &std::fs::read_to_string(dir.join("server.crt")).unwrap();
        std::fs::write(&keystore, pem).unwrap();
        let (port, cport, sasl_port) = (free_port(), free_port(), free_port());
        let extra = dir.join("sasl.properties");
        std::fs::write(
            &extra,
            format!(
                "listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport},SASL_SSL://127.0.0.1:{sasl_port}\n\
                 advertised.listeners=PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{sasl_port}\n\
                 sasl.enabled.mechanisms=SCRAM-SHA-512\n\
                 listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
                 ssl.keystore.type=PEM\n\
                 ssl.keystore.location={}\n",
                keystore.display()
            ),
        )
        .unwrap();
        let (username, password) = (
            "pipeline".to_owned(),
            format!("pw-{}", Uuid::new_v4().simple()),
        );
        let node = dir.join("node");
        kafka_node(&[
            "start",
            "--dir",
            &node.display().to_string(),
            "--port",
            &port.to_string(),
            "--controller-port",
            &cport.to_string(),
            "--extra-config",
            &extra.display().to_string(),
            "--scram",
            &format!("{username}={password}"),
        ]);
        let broker = PrivateBroker {
            dir: node,
            port,
            controller_port: cport,
        };
        Self {
            broker,
            sasl_port,
            ca: dir.join("ca.crt"),
            username,
            password,
        }
    }

    /// librdkafka properties for the SASL_SSL listener (`KAFKA_OPTIONS` form).
    pub fn options(&self, password: &str) -> Vec<(String, String)> {
        [
            ("security.protocol", "SASL_SSL".to_owned()),
            ("sasl.mechanisms", "SCRAM-SHA-512".to_owned()),
            ("sasl.username", self.username.clone()),
            ("sasl.password", password.to_owned()),
            ("ssl.ca.location", self.ca.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn sasl_brokers(&self) -> String {
        format!("127.0.0.1:{}", self.sasl_port)
    }
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        self.broker.kill();
        if let Some(parent) = self.broker.dir.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../deploy/local/kafka-node"
            ))
            .args(["kill", "--dir", &self.dir_arg()])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A PostgreSQL server of this test's own (Debian's binaries, a temporary
/// data directory, a free port), for tests that stop and restart it. Its
/// data directory is deleted on drop.
pub struct PrivatePostgres {
    pub dir: std::path::PathBuf,
    pub port: u16,
    bin: std::path::PathBuf,
}

fn as_postgres(cmd: &std::path::Path, args: &[&str]) -> std::process::ExitStatus {
    std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(cmd)
        .args(args)
        // The postgres user may not enter the test's directory (a 0700 clone).
        .current_dir("/")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("runuser")
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
        let version = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql is installed")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
            .expect("a PostgreSQL version");
        let bin = std::path::PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
        let dir = std::env::temp_dir().join(format!("vibemon-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let chown = std::process::Command::new("chown")
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

/// A test CA (`dir/ca.crt`, `ca.key`) and a server certificate it signed for
/// 127.0.0.1 (`server.crt`, `server.key`), made with openssl.
fn make_test_ca_and_server_cert(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(ok.success(), "openssl {args:?} failed");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=vibemon test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
}

/// A test CA (`dir/ca.crt`), a server certificate it signed for 127.0.0.1,
/// and `ssl = on`, in a data directory.
fn enable_tls(dir: &std::path::Path) {
    make_test_ca_and_server_cert(dir);
    for f in ["server.key", "server.crt"] {
        std::process::Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.join(f))
            .status()
            .unwrap();
    }
    std::process::Command::new("chmod")
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

/// Three real KRaft brokers of this test's own (`deploy/local/kafka-cluster`)
/// on free ports, for replication tests that kill one. Deleted on drop.
pub struct PrivateCluster {
    pub dir: std::path::PathBuf,
    pub base_port: u16,
}

fn kafka_cluster(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/kafka-cluster");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(args)
        .env("KAFKA_HEAP", "256m")
        .status()
        .expect("run kafka-cluster");
    assert!(status.success(), "kafka-cluster {args:?} failed");
}

impl PrivateCluster {
    pub fn start() -> Self {
        // Six ports: P..P+2 for clients, P+100..P+102 for the controllers.
        let base_port = loop {
            let p: u16 = 20_000 + (rand_port_offset() % 20_000);
            let free = [0, 1, 2, 100, 101, 102]
                .iter()
                .all(|o| std::net::TcpListener::bind(("127.0.0.1", p + o)).is_ok());
            if free {
                break p;
            }
        };
        let dir = std::env::temp_dir().join(format!("vibemon-cluster-{}", Uuid::new_v4().simple()));
        let c = Self { dir, base_port };
        kafka_cluster(&[
            "up",
            "--dir",
            &c.dir_arg(),
            "--base-port",
            &base_port.to_string(),
        ]);
        c
    }

    fn dir_arg(&self) -> String {
        self.dir.display().to_string()
    }

    pub fn brokers(&self) -> String {
        (0..3)
            .map(|i| format!("127.0.0.1:{}", self.base_port + i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// SIGKILL node `n` (1..=3).
    pub fn kill(&self, n: u8) {
        kafka_cluster(&["kill", "--dir", &self.dir_arg(), "--node", &n.to_string()]);
    }

    /// Start node `n` again, keeping its data.
    pub fn restart(&self, n: u8) {
        kafka_cluster(&["start", "--dir", &self.dir_arg(), "--node", &n.to_string()]);
    }
}

fn rand_port_offset() -> u16 {
    (Uuid::new_v4().as_u128() % 65_536) as u16
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for n in 1..=3 {
            let _ = std::process::Command::new("bash")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../deploy/local/kafka-node"
                ))
                .args([
                    "kill",
                    "--dir",
                    &self.dir.join(format!("node{n}")).display().to_string(),
                ])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
