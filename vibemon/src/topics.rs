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
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let min_isr = min_insync_replicas.map(|n| n.to_string());
    let mut report = Vec::new();
    for topic in Topic::ALL {
        let name = topic.name(&kafka.topic);
        // The DLQ sees little traffic: one partition keeps it in order.
        let parts = if topic == Topic::Deployments {
            partitions
        } else {
            1
        };
        let mut config: Vec<(&str, &str)> = topic.config().to_vec();
        if let Some(n) = &min_isr {
            config.push(("min.insync.replicas", n));
        }
        let mut new = NewTopic::new(&name, parts, TopicReplication::Fixed(replication_factor));
        for (k, v) in &config {
            new = new.set(k, v);
        }
        let created = admin.create_topics([&new], &opts).await.map_err(|e| {
            CliError::Unavailable(format!("cannot reach Kafka at {}: {e}", kafka.brokers))
        })?;
        let state = match created.into_iter().next().expect("one result per topic") {
            Ok(_) => "created",
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&name));
                for (k, v) in &config {
                    alter = alter.set(k, v);
                }
                for r in admin.alter_configs([&alter], &opts).await.map_err(|e| CliError::Unavailable(e.to_string()))? {
                    r.map_err(|(_, code)| CliError::Other(anyhow::anyhow!("updating the configuration of {name}: {code}")))?;
                }
                "exists, configuration applied"
            }
            Err((_, code)) => {
                return Err(CliError::Other(anyhow::anyhow!(
                    "creating topic {name}: {code} (is --replication-factor {replication_factor} more than the brokers?)"
                )))
            }
        };
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
