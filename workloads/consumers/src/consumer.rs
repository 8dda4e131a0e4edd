//! The Kafka loop: receive, hand to the [`Worker`], commit offsets once messages are done.
//!
//! Messages already fetched are taken in batches and processed concurrently, the first event
//! of each issue before the rest (the database pool bounds the parallelism). Offsets are committed asynchronously after every finished
//! batch and synchronously when draining on shutdown. A batch interrupted by shutdown is left
//! uncommitted.

use std::collections::BTreeMap;

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use silo_runtime::admin::ReadyFlag;
use silo_runtime::{Backoff, Shutdown};

use crate::worker::Worker;

/// Consume until shutdown in batches of at most `batch_size`, then commit what was processed.
pub async fn run(
    consumer: StreamConsumer,
    worker: Worker,
    batch_size: usize,
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
        // Take whatever else is already fetched, up to the batch size, without waiting.
        let mut batch = vec![message];
        while batch.len() < batch_size {
            match consumer.recv().now_or_never() {
                Some(Ok(m)) => batch.push(m),
                Some(Err(error)) => {
                    tracing::warn!(%error, "receiving from Kafka failed; processing the batch so far");
                    break;
                }
                None => break,
            }
        }
        // A batch's offsets are committed only when every message is finished.
        if worker
            .handle_batch(batch.iter().map(|m| m.payload()))
            .await
            .is_err()
        {
            tracing::info!(
                messages = batch.len(),
                "shutdown while retrying; leaving the batch for the next consumer"
            );
            break;
        }
        let mut tpl = TopicPartitionList::new();
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in &batch {
            let entry = next.entry((m.topic(), m.partition())).or_insert(0);
            *entry = (*entry).max(m.offset() + 1);
        }
        for ((topic, partition), offset) in &next {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                tracing::warn!(%error, "cannot build the offset commit");
            }
            processed.insert(((*topic).to_owned(), *partition), *offset);
        }
        if let Err(error) = consumer.commit(&tpl, CommitMode::Async) {
            worker.metrics.error("commit");
            tracing::warn!(%error, "committing the offset failed; a replay will be deduplicated");
        }
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
