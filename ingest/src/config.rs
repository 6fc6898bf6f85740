//! ingest's configuration: every knob is a flag and an environment variable,
//! with a default and a line saying what it is for.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use vibemon_runtime::KafkaArgs;
use vibemon_store::integrations::SecretKey;

use crate::auth::AuthConfig;
use crate::sink::{ProducerConfig, SinkKind};

const EXAMPLES: &str = "\
Examples:
  # Against the local stack (deploy/local/services up; eval \"$(deploy/local/services env)\"):
  ingest

  # Measure the HTTP path alone, without Kafka:
  ingest --sink noop

  # A SASL_SSL cluster:
  KAFKA_OPTIONS=security.protocol=SASL_SSL,sasl.mechanisms=SCRAM-SHA-512,sasl.username=ingest,sasl.password=secret,ssl.ca.location=/etc/kafka/ca.pem ingest
";

/// The webhook service: authenticates `X-Workspace-Key`, validates the body,
/// publishes one DeploymentReported event to Kafka and answers 201 only after
/// Kafka acknowledged it.
#[derive(Debug, Clone, Parser)]
#[command(name = "ingest", version, after_help = EXAMPLES)]
pub struct Config {
    /// Postgres holding workspaces, environments and API keys.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Address to listen on.
    #[arg(long = "addr", env = "INGEST_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Where events go: `kafka` (durable) or `noop` (benchmarking only).
    #[arg(long, env = "INGEST_SINK", value_enum, default_value = "kafka")]
    pub sink: SinkKind,

    /// Largest accepted request body, in bytes (413 above it). 256 KiB holds
    /// 100 maximal `commits` even with every non-ASCII character written as a
    /// `\u` escape (about 217 KiB) and about 40 KiB for the rest; with 256
    /// requests in flight, bodies take at most 64 MiB.
    // The numbers, for JSON as Python's json.dumps writes it by default
    // (", " and ": " separators, non-ASCII escaped): a maximal commit is
    //   {"sha": "<40>", "committed_at": "<64>", "authored_at": "<64>",
    //    "author": "<64 x 12>", "subject": "<100 x 12>"}
    // 79 bytes of keys, quotes, braces and separators, 40 of SHA, 128 of two
    // 64-character timestamps (COMMIT_TIMESTAMP_MAX_LEN), 768 of author and
    // 1,200 of subject (each character above U+FFFF a 12-byte surrogate-pair
    // escape): 2,215 bytes (2,206 in compact JSON), so 100 take 221,700 with
    // the list's brackets and separators, which leaves 40,444 bytes. The
    // seed's fields at their maximum, escaped the same way (branch and
    // external_id 255 x 12 bytes each), take about 7 KiB, which leaves about
    // 33 KiB for `extra_data`; tests/it/commits.rs sends that body. (Escaping
    // ASCII too, which no encoder does by default, is not covered.)
    // INGEST_MAX_IN_FLIGHT (256) x 256 KiB = 64 MiB is the worst-case body
    // memory; 250 such commits would have needed 540 KiB bodies.
    #[arg(long, env = "INGEST_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Largest accepted body of a code host's delivery to
    /// `/api/v1/integrations/...`, in bytes (413 above it). GitHub's and
    /// GitLab's deployment events carry whole repository and user objects,
    /// typically 10 to 30 KiB; GitHub caps its payloads at 25 MiB, but a
    /// deployment event is nowhere near. Deliveries share
    /// `INGEST_MAX_IN_FLIGHT` with the webhook, so the default keeps the
    /// bodies held at once to 256 × 256 KiB = 64 MiB, as for the webhook;
    /// raising it raises that bound.
    #[arg(long, env = "INGEST_MAX_INTEGRATION_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_integration_body_bytes: usize,

    /// The key receivers' secrets are derived from (base64 of at least 32
    /// bytes, `openssl rand -base64 32`), the same as `vibemon integration`
    /// uses. Unset or empty: the integration routes answer 503 saying
    /// integrations are not configured.
    #[arg(long, env = "VIBEMON_INTEGRATION_KEY", hide_env_values = true, value_parser = SecretKey::parse)]
    pub integration_key: Option<SecretKey>,

    /// How far in the future `deployed_at` may be, in seconds (CI clock skew).
    #[arg(long, env = "INGEST_MAX_FUTURE_SKEW_SECS", default_value_t = 300)]
    pub max_future_skew_secs: i64,

    /// Highest `DeploymentReported` schema version this ingest writes (1 to
    /// 3). Version 2 carries `commits` and `previous_commit_sha`; version 3
    /// the sources `github` and `gitlab` of native intake. A projector or
    /// consumer of an older release dead-letters a newer version as
    /// unsupported_version. To roll out: keep it at the version every
    /// consumer of the topic reads while they are upgraded, then raise it.
    /// Below 2, a body with `commits` or `previous_commit_sha` gets a 422
    /// naming the field (`vibemon report` resends without them); below 3,
    /// native intake answers 503 (nothing recorded; GitHub and GitLab do not
    /// retry by themselves, so connect receivers once this is 3).
    #[arg(long, env = "INGEST_MAX_EVENT_VERSION", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub max_event_version: u8,

    /// Time allowed to receive a request's headers, in milliseconds (slowloris).
    #[arg(long, env = "INGEST_HEADER_TIMEOUT_MS", default_value_t = 5_000)]
    pub header_timeout_ms: u64,

    /// Time allowed to receive a request's body, in milliseconds.
    #[arg(long, env = "INGEST_BODY_TIMEOUT_MS", default_value_t = 5_000)]
    pub body_timeout_ms: u64,

    /// Deadline for a request, in milliseconds. For the webhook it covers the
    /// stages before the event is handed to Kafka (408 when the client is
    /// slow, 503 when we are); after the hand-off the Kafka delivery timeout
    /// bounds the rest, so a webhook may take up to both. Other routes answer
    /// 408 past it.
    #[arg(long, env = "INGEST_REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    pub request_timeout_ms: u64,

    /// Kafka delivery timeout in milliseconds: how long a handed-over event may
    /// wait for the broker's acknowledgement before the webhook answers 503.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 5_000)]
    pub kafka_message_timeout_ms: u64,

    /// How long the producer waits to batch records, in milliseconds.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 2)]
    pub kafka_linger_ms: u32,

    /// Producer compression: none, gzip, snappy, lz4 or zstd.
    #[arg(long, env = "KAFKA_COMPRESSION", default_value = "lz4")]
    pub kafka_compression: String,

    /// Most records the producer may queue; a full queue answers 503.
    #[arg(long, env = "KAFKA_QUEUE_MAX_MESSAGES", default_value_t = 100_000)]
    pub kafka_queue_max_messages: u32,

    /// Most KiB of records the producer may queue (librdkafka's default is
    /// 1 GiB); bounds the memory of events waiting for the broker. A full
    /// queue answers 503.
    #[arg(long, env = "KAFKA_QUEUE_MAX_KBYTES", default_value_t = 65_536)]
    pub kafka_queue_max_kbytes: u32,

    /// How long a verified key is cached, in seconds; a revoked key stops
    /// working within this (at most 60).
    #[arg(long, env = "INGEST_KEY_CACHE_TTL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub key_cache_ttl_secs: u64,

    /// How long an unknown key is remembered as unknown, in seconds.
    #[arg(long, env = "INGEST_NEGATIVE_CACHE_TTL_SECS", default_value_t = 5)]
    pub negative_cache_ttl_secs: u64,

    /// How long an environment lookup is cached, in seconds; a new
    /// environment is accepted within this.
    #[arg(long, env = "INGEST_ENV_CACHE_TTL_SECS", default_value_t = 5)]
    pub env_cache_ttl_secs: u64,

    /// argon2 verifications run at once; more queue (and 503 past the queue timeout).
    #[arg(long, env = "INGEST_ARGON2_CONCURRENCY", default_value_t = 1)]
    pub argon2_concurrency: usize,

    /// How long a request may wait for an argon2 slot, in milliseconds, before 503.
    #[arg(long, env = "INGEST_ARGON2_QUEUE_TIMEOUT_MS", default_value_t = 2_000)]
    pub argon2_queue_timeout_ms: u64,

    /// For how long after its last use a key, once verified by argon2, is
    /// re-checked against Postgres alone (not revoked, same hash) when its
    /// cache entry has expired, in seconds: a valid key in use never queues
    /// behind unknown ones.
    #[arg(long, env = "INGEST_KEY_RECHECK_WINDOW_SECS", default_value_t = 3_600)]
    pub key_recheck_window_secs: u64,

    /// TCP connections served at once; one more is answered 503 at once and
    /// closed, so a connection flood cannot exhaust file descriptors or memory.
    /// A connection costs about 20 KiB once it has served a request and 37 KiB
    /// while busy (hyper's 8 KiB read and write buffers, the request's state),
    /// so 768 busy connections, with the in-flight cap below, keep ingest
    /// within 64 MiB with room to spare (1024 measured 63 MiB, too close).
    #[arg(long, env = "INGEST_MAX_CONNECTIONS", default_value_t = 768)]
    pub max_connections: usize,

    /// TCP connections one client (an IPv4 address, or an IPv6 /64) may hold
    /// at once, so one host holding idle connections cannot take every slot
    /// of the cap above; 0 turns it off (do that behind a proxy).
    #[arg(long, env = "INGEST_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Requests (webhook and read API) worked on at once; one more is
    /// answered 503 with `Retry-After` before its body is read. Each holds
    /// its body, its event and, until the broker acknowledges, a record in
    /// the producer queue (about 28 KiB for a typical webhook), so this is
    /// what bounds memory when Kafka is slower than the load: bodies take at
    /// most this times `INGEST_MAX_BODY_BYTES` (256 x 256 KiB = 64 MiB). 256 is several
    /// times what full throughput needs (rate × ack latency, about 100).
    #[arg(long, env = "INGEST_MAX_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,

    /// Postgres connections for keys and environments (authentication).
    #[arg(long, env = "INGEST_DB_POOL_SIZE", default_value_t = 8)]
    pub db_pool_size: u32,

    /// Postgres connections for the read API, apart from authentication's, so
    /// slow reads queue among themselves and never delay a webhook.
    #[arg(long, env = "INGEST_READ_DB_POOL_SIZE", default_value_t = 4)]
    pub read_db_pool_size: u32,

    /// Longest a read-API query may run, in milliseconds, before Postgres
    /// cancels it (503); bounds how long one read holds a read connection.
    #[arg(
        long,
        env = "INGEST_READ_STATEMENT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub read_statement_timeout_ms: u64,

    /// Webhook requests per second per client IP (burst twice that), checked
    /// before authentication; 0 turns it off (do that behind a proxy).
    #[arg(long, env = "INGEST_RATE_LIMIT_PER_IP", default_value_t = 200)]
    pub rate_limit_per_ip: u32,

    /// Requests per second per API key (burst twice that); 0 turns it off.
    #[arg(long, env = "INGEST_RATE_LIMIT_PER_KEY", default_value_t = 100)]
    pub rate_limit_per_key: u32,
}

impl Config {
    pub fn auth(&self) -> AuthConfig {
        AuthConfig {
            key_ttl: Duration::from_secs(self.key_cache_ttl_secs),
            negative_ttl: Duration::from_secs(self.negative_cache_ttl_secs),
            argon2_concurrency: self.argon2_concurrency,
            argon2_queue_timeout: Duration::from_millis(self.argon2_queue_timeout_ms),
            recheck_window: Duration::from_secs(self.key_recheck_window_secs),
        }
    }

    pub fn producer(&self) -> ProducerConfig {
        ProducerConfig {
            linger_ms: self.kafka_linger_ms,
            compression: self.kafka_compression.clone(),
            queue_max_messages: self.kafka_queue_max_messages,
            queue_max_kbytes: self.kafka_queue_max_kbytes,
            message_timeout: Duration::from_millis(self.kafka_message_timeout_ms),
        }
    }

    /// An ingest for these connections, every other setting as the binary
    /// would take it (its `INGEST_*` environment variable where set, else the
    /// default `--help` shows): for embedding ingest in-process (tests,
    /// examples).
    pub fn new(database_url: &str, kafka: KafkaArgs) -> Self {
        let mut args = vec![
            "ingest".to_owned(),
            "--database-url".to_owned(),
            database_url.to_owned(),
        ];
        args.extend(["--kafka-brokers".to_owned(), kafka.brokers.clone()]);
        args.extend(["--kafka-topic".to_owned(), kafka.topic.clone()]);
        let mut config = Config::parse_from(args);
        config.kafka = kafka;
        config
    }
}
