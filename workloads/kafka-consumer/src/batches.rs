//! The loop: receive a batch, hand it to the [`Handler`], commit its offsets once it is done.
//!
//! The first message of a batch is awaited; the rest is whatever arrives within the batch
//! wait after it, up to the batch size (with a zero wait: only what is already fetched). A
//! busy topic fills batches at once; a quiet one adds at most the batch wait to latency. Offsets are committed asynchronously after every
//! finished batch and synchronously once more when the loop ends. A batch interrupted by
//! shutdown is left uncommitted.
//!
//! Kafka readiness turns false on a receive error and true again on the next message, or,
//! on a quiet topic where none may come, once the broker answers a metadata request: a
//! transient refusal at start (a broker still starting, a network policy not yet programmed
//! for a new pod) must not leave the pod unready until the first event arrives. The broker is
//! asked at most every [`RECOVERY_CHECK`], on a timer that runs while not ready and also after
//! receive errors, so a stream of errors (librdkafka queues one per failed fetch or
//! reconnect) cannot keep the check from running.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use silo_runtime::admin::ReadyFlag;
use silo_runtime::{Backoff, Shutdown};

use crate::{CountErrors, Interrupted};

/// A workload's work on one batch.
pub trait Handler {
    /// Process the payloads of one batch, in Kafka order (`None`: a message without payload).
    ///
    /// `Ok` means every message's effect is durable (or the message was rejected for good):
    /// only then are the batch's offsets committed. `Err(Interrupted)` when shutdown came
    /// while something was still waiting to be retried.
    fn handle_batch<'a>(
        &'a self,
        payloads: &'a [Option<&'a [u8]>],
    ) -> impl Future<Output = Result<(), Interrupted>> + Send + 'a;
}

/// While Kafka is not ready, how often (and how long at most) the broker is asked for
/// metadata to tell whether it answers again.
pub const RECOVERY_CHECK: Duration = Duration::from_secs(2);

/// Whether the broker answers a metadata request within [`RECOVERY_CHECK`]. The request
/// blocks; on a multi-threaded runtime the worker thread is handed over meanwhile.
fn broker_answers(consumer: &StreamConsumer) -> bool {
    let fetch = || consumer.fetch_metadata(None, RECOVERY_CHECK).is_ok();
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(fetch),
        _ => fetch(),
    }
}

/// Kafka's readiness as the loop sees it, and when the broker may be asked next.
struct Readiness<'a> {
    flag: &'a ReadyFlag,
    ready: bool,
    next_check: tokio::time::Instant,
}

impl<'a> Readiness<'a> {
    fn new(flag: &'a ReadyFlag) -> Self {
        flag.set(true);
        Self {
            flag,
            ready: true,
            next_check: tokio::time::Instant::now(),
        }
    }

    fn is_ready(&self) -> bool {
        self.ready
    }

    fn next_check(&self) -> tokio::time::Instant {
        self.next_check
    }

    fn set(&mut self, ready: bool) {
        if self.ready != ready {
            self.ready = ready;
            self.flag.set(ready);
        }
    }

    /// A message arrived: the broker serves.
    fn received(&mut self) {
        self.set(true);
    }

    /// A receive failed: unready until a message arrives or the broker answers.
    fn failed(&mut self) {
        self.set(false);
    }

    /// Ask the broker now; the next check is due [`RECOVERY_CHECK`] after this one ends.
    fn check(&mut self, consumer: &StreamConsumer) {
        if broker_answers(consumer) {
            if !self.ready {
                tracing::info!("Kafka answers again");
            }
            self.set(true);
        }
        self.next_check = tokio::time::Instant::now() + RECOVERY_CHECK;
    }
}

/// The next offset to read, per `(topic, partition)`.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// Consume until shutdown (or until the handler is interrupted), then commit what finished.
pub async fn run<H: Handler>(
    consumer: &StreamConsumer,
    handler: &H,
    errors: &dyn CountErrors,
    batch: BatchLimits,
    max_backoff: Duration,
    kafka_ready: &ReadyFlag,
    shutdown: &Shutdown,
) {
    let mut processed = Offsets::new();
    let mut backoff = Backoff::new(max_backoff);
    let mut ready = Readiness::new(kafka_ready);
    loop {
        let received = tokio::select! {
            _ = shutdown.wait() => break,
            r = consumer.recv() => r,
            _ = tokio::time::sleep_until(ready.next_check()), if !ready.is_ready() => {
                ready.check(consumer);
                continue;
            }
        };
        let message = match received {
            Ok(m) => m,
            Err(error) => {
                errors.error("kafka_consume");
                tracing::warn!(%error, "receiving from Kafka failed; retrying");
                ready.failed();
                if ready.next_check() <= tokio::time::Instant::now() {
                    ready.check(consumer);
                }
                if !backoff.wait(shutdown).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        ready.received();
        let batch = fill_batch(consumer, message, batch).await;
        let payloads: Vec<Option<&[u8]>> = batch.iter().map(|m| m.payload()).collect();
        if handler.handle_batch(&payloads).await.is_err() {
            tracing::info!(
                messages = batch.len(),
                "shutdown while retrying; leaving the batch for the next consumer"
            );
            break;
        }
        let done = next_offsets(batch.iter().map(|m| (m.topic(), m.partition(), m.offset())));
        commit(consumer, &done, CommitMode::Async, errors);
        processed.extend(done);
    }
    if !processed.is_empty() && commit(consumer, &processed, CommitMode::Sync, errors) {
        tracing::info!(
            partitions = processed.len(),
            "committed offsets before exit"
        );
    }
}

/// How big a batch grows: at most `size` messages, collected for at most `wait` after its
/// first one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub size: usize,
    pub wait: Duration,
}

/// `first` and whatever else arrives within `limits.wait`, up to `limits.size` messages.
async fn fill_batch<'c>(
    consumer: &'c StreamConsumer,
    first: BorrowedMessage<'c>,
    limits: BatchLimits,
) -> Vec<BorrowedMessage<'c>> {
    let deadline = tokio::time::Instant::now() + limits.wait;
    let mut batch = vec![first];
    while batch.len() < limits.size.max(1) {
        // What is already fetched first; then wait for more until the deadline.
        let next = match consumer.recv().now_or_never() {
            Some(received) => received,
            None => match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(received) => received,
                Err(_) => break,
            },
        };
        match next {
            Ok(m) => batch.push(m),
            Err(error) => {
                tracing::warn!(%error, "receiving from Kafka failed; processing the batch so far");
                break;
            }
        }
    }
    batch
}

/// The offsets to commit after `(topic, partition, offset)` messages: one past the highest
/// of each partition.
pub fn next_offsets<'a>(messages: impl IntoIterator<Item = (&'a str, i32, i64)>) -> Offsets {
    let mut next = Offsets::new();
    for (topic, partition, offset) in messages {
        let entry = next.entry((topic.to_owned(), partition)).or_insert(0);
        *entry = (*entry).max(offset + 1);
    }
    next
}

/// Commit `offsets`; `false` (logged, counted as `commit`) when it failed.
fn commit(
    consumer: &StreamConsumer,
    offsets: &Offsets,
    mode: CommitMode,
    errors: &dyn CountErrors,
) -> bool {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            tracing::warn!(%error, topic, partition, "cannot build the offset commit");
        }
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => true,
        Err(error) => {
            errors.error("commit");
            tracing::warn!(%error, ?mode, "committing offsets failed; a replay is deduplicated");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_one_past_the_highest_offset_of_each_partition() {
        let next = next_offsets([("t", 0, 5), ("t", 1, 2), ("t", 0, 3), ("u", 0, 9)]);
        let expected: Offsets = [
            (("t".to_owned(), 0), 6),
            (("t".to_owned(), 1), 3),
            (("u".to_owned(), 0), 10),
        ]
        .into_iter()
        .collect();
        assert_eq!(next, expected);
    }

    #[test]
    fn a_later_batch_moves_a_partition_forward() {
        let mut processed = next_offsets([("t", 0, 5)]);
        processed.extend(next_offsets([("t", 0, 6), ("t", 2, 0)]));
        assert_eq!(processed.get(&("t".to_owned(), 0)), Some(&7));
        assert_eq!(processed.get(&("t".to_owned(), 2)), Some(&1));
    }
}
