//! Kafka brokers of a test's own, real KRaft JVMs started by the scripts in
//! `deploy/local/`, for tests that kill and restart them: one broker
//! ([`PrivateBroker`]), one that also speaks SASL_SSL ([`SaslBroker`]), and
//! three ([`PrivateCluster`]). Each deletes its data directory on drop.

use std::path::{Path, PathBuf};

use uuid::Uuid;

use crate::certs::make_test_ca_and_server_cert;
use crate::ports::{free_block, free_port};
use crate::scripts::{self, KAFKA_CLUSTER, KAFKA_NODE};

/// A Kafka broker of this test's own (a real `kafka.Kafka` JVM started by
/// `deploy/local/kafka-node`), for tests that kill and restart it. Its data
/// directory is deleted on drop.
pub struct PrivateBroker {
    pub dir: PathBuf,
    pub port: u16,
    pub controller_port: u16,
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
        scripts::run(
            KAFKA_NODE,
            &[
                "start",
                "--dir",
                &self.dir_arg(),
                "--port",
                &port,
                "--controller-port",
                &cport,
            ],
        );
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&self) {
        scripts::run(KAFKA_NODE, &["kill", "--dir", &self.dir_arg()]);
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        scripts::kill_node_quietly(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private broker that also listens with SASL_SSL (SCRAM-SHA-512, a
/// certificate signed by a test CA made with openssl).
pub struct SaslBroker {
    pub broker: PrivateBroker,
    pub sasl_port: u16,
    pub ca: PathBuf,
    pub username: String,
    pub password: String,
}

impl SaslBroker {
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("vibemon-sasl-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        make_test_ca_and_server_cert(&dir);
        let (port, cport, sasl_port) = (free_port(), free_port(), free_port());
        let extra = write_sasl_config(&dir, port, cport, sasl_port);
        let (username, password) = (
            "pipeline".to_owned(),
            format!("pw-{}", Uuid::new_v4().simple()),
        );
        let node = dir.join("node");
        scripts::run(
            KAFKA_NODE,
            &[
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
            ],
        );
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

/// The server's PEM keystore and the broker properties that add the
/// SASL_SSL listener, in `dir` (which holds the test CA's server
/// certificate); returns the properties file.
fn write_sasl_config(dir: &Path, port: u16, cport: u16, sasl_port: u16) -> PathBuf {
    let keystore = dir.join("keystore.pem");
    let pem = std::fs::read_to_string(dir.join("server.key")).unwrap()
        + &std::fs::read_to_string(dir.join("server.crt")).unwrap();
    std::fs::write(&keystore, pem).unwrap();
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
    extra
}

impl Drop for SaslBroker {
    fn drop(&mut self) {
        self.broker.kill();
        if let Some(parent) = self.broker.dir.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// Three real KRaft brokers of this test's own (`deploy/local/kafka-cluster`)
/// on free ports, for replication tests that kill one. Deleted on drop.
pub struct PrivateCluster {
    pub dir: PathBuf,
    pub base_port: u16,
}

impl PrivateCluster {
    pub fn start() -> Self {
        // Six ports: P..P+2 for clients, P+100..P+102 for the controllers.
        let base_port = free_block(&[0, 1, 2, 100, 101, 102]);
        let dir = std::env::temp_dir().join(format!("vibemon-cluster-{}", Uuid::new_v4().simple()));
        let c = Self { dir, base_port };
        scripts::run(
            KAFKA_CLUSTER,
            &[
                "up",
                "--dir",
                &c.dir_arg(),
                "--base-port",
                &base_port.to_string(),
            ],
        );
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
        let n = n.to_string();
        scripts::run(
            KAFKA_CLUSTER,
            &["kill", "--dir", &self.dir_arg(), "--node", &n],
        );
    }

    /// Start node `n` again, keeping its data.
    pub fn restart(&self, n: u8) {
        let n = n.to_string();
        scripts::run(
            KAFKA_CLUSTER,
            &["start", "--dir", &self.dir_arg(), "--node", &n],
        );
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        for n in 1..=3 {
            scripts::kill_node_quietly(&self.dir.join(format!("node{n}")));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
