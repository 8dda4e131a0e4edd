//! The Kafka loop: receive, hand to the [`Worker`], commit the offset once the message is done.
//!
//! Offsets are committed asynchronously after every finished message and synchronously when
//! draining on shutdown. A message interrupted by shutdown is left uncommitted.

use std::collections::BTreeMap;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use silo_runtime::Shutdown;
use silo_runtime::admin::ReadyFlag;

use crate::worker::Worker;
use silo_runtime::Backoff;

/// Consume until shutdown, then commit what was processed.
pub async fn run(
    consumer: StreamConsumer,
    worker: Worker,
    kafka_ready: ReadyFlag,
    shutdown: Shutdown,
) {
    let mut processed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut backoff = Backoff::new(worker.max_backoff);
    kafka_ready.set(true);
    loop {
        let received = tokio::select! {
            _ = shutdown.wait() => break,
            r = consumer.recv() => r,
        };
        let message = match received {
            Ok(m) => m,
            Err(error) => {
                worker.metrics.error("kafka_consume");
                kafka_ready.set(false);
                tracing::warn!(%error, "receiving from Kafka failed; retrying");
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        kafka_ready.set(true);
        if worker.handle(message.payload()).await.is_err() {
            tracing::info!(
                partition = message.partition(),
                offset = message.offset(),
                "shutdown while retrying; leaving the message for the next consumer"
            );
            break;
        }
        let next = message.offset() + 1;
        let mut tpl = TopicPartitionList::new();
        if let Err(error) =
            tpl.add_partition_offset(message.topic(), message.partition(), Offset::Offset(next))
        {
            tracing::warn!(%error, "cannot build the offset commit");
            continue;
        }
        if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
            worker.metrics.error("commit");
            tracing::warn!(%error, "committing the offset failed; a replay will be deduplicated");
        }
        processed.insert((message.topic().to_owned(), message.partition()), next);
    }
    drain(&consumer, &processed, &worker);
}

fn drain(consumer: &StreamConsumer, processed: &BTreeMap<(String, i32), i64>, worker: &Worker) {
    if processed.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in processed {
        if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(%error, "cannot build the final offset commit");
        }
    }
    match consumer.commit(&tpl, CommitMode::Sync) {
        Ok(()) => tracing::info!(
            partitions = processed.len(),
            "committed offsets before exit"
        ),
        Err(error) => {
            worker.metrics.error("commit");
            tracing::warn!(%error, "final offset commit failed; the next consumer deduplicates replays");
        }
    }
}
