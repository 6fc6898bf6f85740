//! [`KafkaArgs`]: how every binary reaches Kafka, as flags and environment
//! variables.

use clap::Args;
use rdkafka::config::ClientConfig;
use vibemon_schemas::Topic;

/// How to reach Kafka. Shared by every binary so the names never drift.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Bootstrap brokers, comma-separated.
    #[arg(
        long = "kafka-brokers",
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// The event topic; the dead-letter topic is this name plus `.dlq`.
    #[arg(
        long = "kafka-topic",
        env = "KAFKA_TOPIC",
        default_value = "deployments.v1"
    )]
    pub topic: String,

    /// Extra librdkafka properties, `name=value`, comma-separated or repeated:
    /// how to reach a SASL_SSL cluster, e.g.
    /// `security.protocol=SASL_SSL,sasl.mechanisms=SCRAM-SHA-512,sasl.username=u,sasl.password=p,ssl.ca.location=/ca.pem`.
    #[arg(long = "kafka-option", env = "KAFKA_OPTIONS", value_delimiter = ',', value_parser = parse_property)]
    pub options: Vec<(String, String)>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected name=value, got {s:?}")),
    }
}

impl KafkaArgs {
    /// Settings for the given brokers with defaults for everything else.
    pub fn local(brokers: &str, topic: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            options: Vec::new(),
        }
    }

    /// A client configuration with the brokers and the pass-through options
    /// (which are applied last, so they win).
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        self.client_config_tuned(client_id, &[])
    }

    /// The same, with a service's tuning defaults (sizes, timeouts) applied
    /// before the pass-through options, so an operator can still change them.
    /// Settings a service depends on for correctness are set after this.
    pub fn client_config_tuned(&self, client_id: &str, tuning: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        for (k, v) in tuning {
            config.set(*k, *v);
        }
        for (k, v) in &self.options {
            config.set(k, v);
        }
        config
    }

    /// The dead-letter topic's name, from the event topic's.
    pub fn dlq_topic(&self) -> String {
        Topic::DeadLetters.name(&self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_options_are_name_value_pairs() {
        assert_eq!(
            parse_property("security.protocol=SASL_SSL").unwrap(),
            ("security.protocol".to_owned(), "SASL_SSL".to_owned())
        );
        assert_eq!(parse_property("sasl.password=a=b").unwrap().1, "a=b");
        assert!(parse_property("novalue").is_err());
    }

    #[test]
    fn a_pass_through_option_overrides_a_services_tuning_default() {
        let mut args = KafkaArgs::local("127.0.0.1:9092", "t");
        args.options = vec![("fetch.max.bytes".into(), "1048576".into())];
        let config = args.client_config_tuned(
            "c",
            &[
                ("fetch.max.bytes", "4194304"),
                ("queued.min.messages", "10000"),
            ],
        );
        assert_eq!(config.get("fetch.max.bytes"), Some("1048576"));
        assert_eq!(config.get("queued.min.messages"), Some("10000"));
        assert_eq!(config.get("client.id"), Some("c"));
    }
}
