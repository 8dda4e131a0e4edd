//! The Kafka loop over `events`: receive, hand to the [`Worker`], commit once settled.

use std::collections::BTreeMap;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use silo_runtime::admin::ReadyFlag;
use silo_runtime::{Backoff, Shutdown};

use crate::worker::Worker;

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
                offset = message.offset(),
                "shutdown while retrying; record left uncommitted"
            );
            break;
        }
        let next = message.offset() + 1;
        processed.insert((message.topic().to_owned(), message.partition()), next);
        commit(
            &consumer,
            &[((message.topic(), message.partition()), next)],
            CommitMode::Async,
            &worker,
        );
    }
    let all: Vec<((&str, i32), i64)> = processed
        .iter()
        .map(|((t, p), o)| ((t.as_str(), *p), *o))
        .collect();
    if !all.is_empty() {
        commit(&consumer, &all, CommitMode::Sync, &worker);
    }
}

fn commit(
    consumer: &StreamConsumer,
    offsets: &[((&str, i32), i64)],
    mode: CommitMode,
    worker: &Worker,
) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(%error, "cannot build the offset commit");
            return;
        }
    }
    if let Err(error) = consumer.commit(&tpl, mode) {
        worker.metrics.error("commit");
        tracing::warn!(%error, "committing offsets failed; replays are idempotent");
    }
}
