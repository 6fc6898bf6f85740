//! `vibemon tail`: the topic as decoded NDJSON, for debugging and for RCA
//! consumers in other languages to see the real shape of the events.

use std::io::Write;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use vibemon_runtime::watermarks::{partitions, TopicError};
use vibemon_schemas::DeploymentReported;

use crate::cli::TailArgs;
use crate::error::{CliError, CliResult};

pub async fn run(args: TailArgs) -> CliResult<()> {
    let consumer = assigned_consumer(&args).await?;
    let mut printed = 0usize;
    let stop = vibemon_runtime::shutdown_signal();
    tokio::pin!(stop);
    while args.limit.is_none_or(|l| printed < l) {
        let msg = tokio::select! {
            m = consumer.recv() => m.map_err(|e| CliError::Unavailable(e.to_string()))?,
            () = &mut stop => break,
        };
        match print(&args, &msg) {
            Printed::Yes => printed += 1,
            Printed::No => {}
            Printed::PipeClosed => break,
        }
    }
    Ok(())
}

/// A consumer of its own group, assigned every partition of the topic at
/// the start (`--from-beginning`) or the end.
async fn assigned_consumer(args: &TailArgs) -> CliResult<StreamConsumer> {
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
    let (consumer, ids) = topic_partitions(consumer, args).await?;
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut tpl = TopicPartitionList::new();
    for p in ids {
        tpl.add_partition_offset(topic, p, start)
            .map_err(|e| CliError::Other(e.into()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| CliError::Other(e.into()))?;
    Ok(consumer)
}

/// The topic's partition ids, asked of the brokers on a blocking thread (the
/// metadata request blocks for up to 10 s). The consumer goes to that thread
/// and comes back with them.
async fn topic_partitions(
    consumer: StreamConsumer,
    args: &TailArgs,
) -> CliResult<(StreamConsumer, Vec<i32>)> {
    let topic = args.kafka.topic.clone();
    let (consumer, found) = tokio::task::spawn_blocking(move || {
        let found = partitions(consumer.client(), &topic, Duration::from_secs(10));
        (consumer, found)
    })
    .await
    .map_err(|e| CliError::Other(e.into()))?;
    let ids = found.map_err(|e| match e {
        TopicError::Kafka(e) => {
            CliError::Unavailable(format!("cannot reach Kafka at {}: {e}", args.kafka.brokers))
        }
        missing => missing.into(),
    })?;
    Ok((consumer, ids))
}

/// What became of one record.
enum Printed {
    Yes,
    /// Filtered out, or not an event (reported on stderr).
    No,
    /// Standard output was closed (`| head`): the tail ends quietly.
    PipeClosed,
}

/// Prints the record as one NDJSON line if it passes the filters.
fn print(args: &TailArgs, msg: &BorrowedMessage<'_>) -> Printed {
    let Some(payload) = msg.payload() else {
        return Printed::No;
    };
    let e = match DeploymentReported::decode(payload) {
        Ok(e) => e,
        Err(err) => {
            eprintln!(
                "tail: partition {} offset {}: {err}",
                msg.partition(),
                msg.offset()
            );
            return Printed::No;
        }
    };
    let wanted = args.workspace.is_none_or(|w| w == e.workspace_id)
        && args
            .environment
            .as_deref()
            .is_none_or(|n| n == e.environment.as_str());
    if !wanted {
        return Printed::No;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", String::from_utf8_lossy(&e.encode()))
        .and_then(|()| out.flush())
        .is_err()
    {
        return Printed::PipeClosed;
    }
    Printed::Yes
}
