//! `vibemon tail`: the topic as decoded NDJSON, for debugging and for RCA
//! consumers in other languages to see the real shape of the events.

use std::io::Write;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use vibemon_schemas::DeploymentReported;

use crate::cli::TailArgs;
use crate::error::{CliError, CliResult};

pub async fn run(args: TailArgs) -> CliResult<()> {
    let topic = &args.kafka.topic;
    let consumer: StreamConsumer = args
        .kafka
        .client_config("vibemon-tail")
        .set(
            "group.id",
            format!("vibemon-tail-{}", uuid::Uuid::new_v4().simple()),
        )
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| CliError::Unavailable(format!("creating a Kafka consumer: {e}")))?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| {
            CliError::Unavailable(format!("cannot reach Kafka at {}: {e}", args.kafka.brokers))
        })?;
    let partitions: Vec<i32> = md
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    if partitions.is_empty() {
        return Err(CliError::NotFound(format!(
            "topic {topic} not found: create it with `vibemon topics ensure`"
        )));
    }
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, p, start)
            .map_err(|e| CliError::Other(e.into()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| CliError::Other(e.into()))?;

    let mut printed = 0usize;
    let stdout = std::io::stdout();
    let stop = vibemon_runtime::shutdown_signal();
    tokio::pin!(stop);
    while args.limit.is_none_or(|l| printed < l) {
        let msg = tokio::select! {
            m = consumer.recv() => m.map_err(|e| CliError::Unavailable(e.to_string()))?,
            () = &mut stop => break,
        };
        let Some(payload) = msg.payload() else {
            continue;
        };
        match DeploymentReported::decode(payload) {
            Ok(e) => {
                let wanted = args.workspace.is_none_or(|w| w == e.workspace_id)
                    && args
                        .environment
                        .as_deref()
                        .is_none_or(|n| n == e.environment.as_str());
                if wanted {
                    let mut out = stdout.lock();
                    // A closed pipe (`| head`) ends the tail quietly.
                    if writeln!(out, "{}", String::from_utf8_lossy(&e.encode()))
                        .and_then(|()| out.flush())
                        .is_err()
                    {
                        break;
                    }
                    printed += 1;
                }
            }
            Err(err) => eprintln!(
                "tail: partition {} offset {}: {err}",
                msg.partition(),
                msg.offset()
            ),
        }
    }
    Ok(())
}
