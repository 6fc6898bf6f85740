//! `vibemon topics ensure`: the event topic and its DLQ, created explicitly
//! with their configuration instead of relying on broker auto-creation.

use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use vibemon_schemas::Topic;

use crate::cli::TopicsCommand;
use crate::error::{CliError, CliResult};
use crate::output;

pub async fn run(cmd: TopicsCommand, json: bool) -> CliResult<()> {
    let TopicsCommand::Ensure {
        kafka,
        partitions,
        replication_factor,
        min_insync_replicas,
    } = cmd;
    if partitions < 1 || replication_factor < 1 {
        return Err(CliError::Invalid(
            "--partitions and --replication-factor must be at least 1".into(),
        ));
    }
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config("vibemon-cli")
        .create()
        .map_err(|e| CliError::Unavailable(format!("creating a Kafka admin client: {e}")))?;
    let ensure = Ensure {
        admin,
        opts: AdminOptions::new()
            .operation_timeout(Some(Duration::from_secs(30)))
            .request_timeout(Some(Duration::from_secs(30))),
        brokers: &kafka.brokers,
        partitions,
        replication_factor,
        min_isr: min_insync_replicas.map(|n| n.to_string()),
    };
    let mut report = Vec::new();
    for topic in Topic::ALL {
        let name = topic.name(&kafka.topic);
        let (parts, state) = ensure.topic(topic, &name).await?;
        report.push(serde_json::json!({ "topic": name, "partitions": parts, "state": state }));
        if !json {
            eprintln!("{name}: {state}");
        }
    }
    if json {
        output::json(&report);
    }
    Ok(())
}

/// What `topics ensure` was asked for, and the client that does it.
struct Ensure<'a> {
    admin: AdminClient<DefaultClientContext>,
    opts: AdminOptions,
    /// For the error message when Kafka cannot be reached.
    brokers: &'a str,
    partitions: i32,
    replication_factor: i32,
    /// `--min-insync-replicas`, added to every topic's configuration.
    min_isr: Option<String>,
}

impl Ensure<'_> {
    /// Creates `topic` as `name`, or applies its configuration if it exists;
    /// returns its partition count and what was done.
    async fn topic(&self, topic: Topic, name: &str) -> CliResult<(i32, &'static str)> {
        // The DLQ sees little traffic: one partition keeps it in order.
        let parts = if topic == Topic::Deployments {
            self.partitions
        } else {
            1
        };
        let mut config: Vec<(&str, &str)> = topic.config().to_vec();
        if let Some(n) = &self.min_isr {
            config.push(("min.insync.replicas", n));
        }
        let mut new = NewTopic::new(
            name,
            parts,
            TopicReplication::Fixed(self.replication_factor),
        );
        for (k, v) in &config {
            new = new.set(k, v);
        }
        let created = self
            .admin
            .create_topics([&new], &self.opts)
            .await
            .map_err(|e| {
                CliError::Unavailable(format!("cannot reach Kafka at {}: {e}", self.brokers))
            })?;
        let Some(created) = created.into_iter().next() else {
            return Err(CliError::Other(anyhow::anyhow!(
                "creating topic {name}: Kafka answered with no result"
            )));
        };
        let state = match created {
            Ok(_) => "created",
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                self.apply_config(name, &config).await?;
                "exists, configuration applied"
            }
            Err((_, code)) => {
                return Err(CliError::Other(anyhow::anyhow!(
                "creating topic {name}: {code} (is --replication-factor {} more than the brokers?)",
                self.replication_factor
            )))
            }
        };
        Ok((parts, state))
    }

    /// Sets `config` on an existing topic.
    async fn apply_config(&self, name: &str, config: &[(&str, &str)]) -> CliResult<()> {
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in config {
            alter = alter.set(k, v);
        }
        let results = self
            .admin
            .alter_configs([&alter], &self.opts)
            .await
            .map_err(|e| CliError::Unavailable(e.to_string()))?;
        for r in results {
            r.map_err(|(_, code)| {
                CliError::Other(anyhow::anyhow!(
                    "updating the configuration of {name}: {code}"
                ))
            })?;
        }
        Ok(())
    }
}
