//! The Kafka topics, as a type instead of strings scattered around.
//!
//! Everything is named from one base (`KAFKA_TOPIC`, default `deployments.v1`):
//! the events live on the base topic, events the projector cannot apply on
//! `<base>.dlq`. Each topic also carries the configuration `vibemon topics
//! ensure` creates it with.

/// The default base topic name.
pub const DEFAULT_TOPIC: &str = "deployments.v1";

/// One of the pipeline's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `DeploymentReported` events: the source of truth, kept forever.
    Deployments,
    /// Records the projector could not apply, with the reason in headers.
    DeadLetters,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Deployments, Topic::DeadLetters];

    /// The topic's name for a given base (`KAFKA_TOPIC`).
    pub fn name(self, base: &str) -> String {
        match self {
            Topic::Deployments => base.to_owned(),
            Topic::DeadLetters => format!("{base}.dlq"),
        }
    }

    /// Topic-level configuration. Both topics keep records forever: the event
    /// topic because the read model is rebuilt from it, the DLQ because every
    /// record there is an event somebody still has to look at.
    pub fn config(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Topic::Deployments | Topic::DeadLetters => &[
                ("cleanup.policy", "delete"),
                ("retention.ms", "-1"),
                ("retention.bytes", "-1"),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dead_letter_topic_is_the_base_name_plus_dlq() {
        assert_eq!(Topic::Deployments.name("deployments.v1"), "deployments.v1");
        assert_eq!(
            Topic::DeadLetters.name("deployments.v1"),
            "deployments.v1.dlq"
        );
    }

    #[test]
    fn the_event_topic_keeps_records_forever() {
        assert!(Topic::Deployments
            .config()
            .contains(&("retention.ms", "-1")));
    }
}
