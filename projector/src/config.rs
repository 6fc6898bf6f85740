//! The projector's configuration: every knob a flag and an environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use vibemon_runtime::KafkaArgs;

use crate::consumer::LoopConfig;

const EXAMPLES: &str = "\
Examples:
  # Against the local stack (eval \"$(deploy/local/services env)\"):
  projector

  # Bigger transactions for a backfill:
  projector --batch-max 20000 --batch-linger-ms 500

  # Rebuild: a database with no checkpoints starts from the beginning of the topic.
  DATABASE_URL=postgres://vibemon:vibemon@127.0.0.1:5432/rebuild projector --until-caught-up
";

/// Consumes DeploymentReported events into the Postgres read model, exactly
/// once: offsets are checkpointed in the same transaction as the rows.
#[derive(Debug, Clone, Parser)]
#[command(name = "projector", version, after_help = EXAMPLES)]
pub struct Config {
    /// Postgres holding the read model (migrated with `vibemon migrate`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Consumer group; checkpoints in Postgres are kept per group.
    #[arg(
        long = "kafka-group",
        env = "KAFKA_GROUP",
        default_value = "vibemon-projector"
    )]
    pub group: String,

    /// Address for /healthz, /readyz and /metrics.
    #[arg(
        long = "addr",
        env = "PROJECTOR_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub addr: SocketAddr,

    /// Most records per batch (one transaction). A batch is written as soon
    /// as no more records are queued, so it grows to this size only while
    /// catching up; when live, batches are what arrived during the last write.
    #[arg(long, env = "PROJECTOR_BATCH_MAX", default_value_t = 5000)]
    pub batch_max: usize,

    /// Longest a record waits for its batch while records keep arriving
    /// without a pause, in milliseconds.
    #[arg(long, env = "PROJECTOR_BATCH_LINGER_MS", default_value_t = 50)]
    pub batch_linger_ms: u64,

    /// How long a pending batch waits for more records once none are
    /// queued, in milliseconds: a quiet topic's records are written this
    /// soon after they arrive.
    #[arg(long, env = "PROJECTOR_BATCH_IDLE_MS", default_value_t = 2)]
    pub batch_idle_ms: u64,

    /// Transactions a batch is written in at once, each for its own share
    /// of the partitions (a Postgres backend uses one core). Keep it at or
    /// below --db-pool-size.
    #[arg(long, env = "PROJECTOR_WRITERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub writers: u16,

    /// Longest one statement of the projector may run, or wait for a lock,
    /// in seconds. Postgres cancels it past that (`statement_timeout` and
    /// `lock_timeout` on every connection), the transaction rolls back and
    /// the batch is retried: a write stuck behind another session's lock
    /// cannot stop the projector for good.
    #[arg(long, env = "PROJECTOR_WRITE_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub write_timeout_secs: u64,

    /// Invalid records in a row after which the projector stops instead of
    /// dead-lettering more.
    #[arg(long, env = "PROJECTOR_DLQ_MAX_CONSECUTIVE", default_value_t = 100)]
    pub dlq_max_consecutive: u64,

    /// Exit once caught up with the topic's end as of start (rebuilds).
    #[arg(long, env = "PROJECTOR_UNTIL_CAUGHT_UP")]
    pub until_caught_up: bool,

    /// Postgres connections.
    #[arg(long, env = "PROJECTOR_DB_POOL_SIZE", default_value_t = 4)]
    pub db_pool_size: u32,
}

impl Config {
    pub fn loop_config(&self) -> LoopConfig {
        LoopConfig {
            group: self.group.clone(),
            topic: self.kafka.topic.clone(),
            dlq_topic: self.kafka.dlq_topic(),
            batch_max: self.batch_max,
            batch_linger: Duration::from_millis(self.batch_linger_ms),
            batch_idle: Duration::from_millis(self.batch_idle_ms),
            writers: usize::from(self.writers),
            dlq_max_consecutive: self.dlq_max_consecutive,
            until_caught_up: self.until_caught_up,
            only_workspace: None,
            probe: self.kafka.client_config("vibemon-projector-probe"),
        }
    }

    /// A projector for these connections, every other setting as the binary
    /// would take it: from its `PROJECTOR_*` environment variable where one
    /// is set, else the default `--help` shows. For `vibemon replay`, which
    /// runs a projector in-process, and for tests. An invalid variable is an
    /// error naming it.
    pub fn try_new(database_url: &str, kafka: KafkaArgs, group: &str) -> Result<Self, clap::Error> {
        let mut config = Config::try_parse_from([
            "projector",
            "--database-url",
            database_url,
            "--kafka-group",
            group,
            "--addr",
            "127.0.0.1:0",
        ])?;
        config.kafka = kafka;
        Ok(config)
    }

    /// [`Config::try_new`], for tests: panics on an invalid variable.
    pub fn new(database_url: &str, kafka: KafkaArgs, group: &str) -> Self {
        Self::try_new(database_url, kafka, group).expect("valid PROJECTOR_* variables")
    }
}
