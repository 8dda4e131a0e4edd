//! Per batch: decode and prepare every message, record the releases its events name (one
//! statement), store the batch in one transaction (retrying while Postgres is unavailable),
//! then publish every eventstream record (retrying while Kafka refuses one).
//!
//! A batch that can never be stored as a whole (a permanent error: an event of a deleted
//! project, a value out of range) is stored again one event at a time, in Kafka order, so the
//! poisoned events are rejected alone and the rest is stored.
//!
//! A message is finished ([`Handled`]) only when its effect is durable: stored and published,
//! or rejected for good. Until then the skeleton does not commit its offset.
//!
//! Relay answered 200 for every message here, so none may vanish silently: a message that can
//! never be stored is logged and counted (`errors{kind="invalid"}`) and its loss is written to
//! the `outcomes` topic (`invalid`, reason `invalid_message` when it cannot be read,
//! `invalid_event` when its fields are unusable, `unstorable` when Postgres refuses it for
//! good) before its offset is committed.

use std::time::{Duration, Instant};

use futures::future::join_all;

use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use silo_kafka_consumer::{Attempt, CountErrors, Handler, Interrupted, Postgres, retry};
use silo_protocol::{EventStreamMessage, IngestMessage, Outcome, OutcomeKind};
use silo_store::ingest::{self, SavedEvent};
use silo_store::{ingest_batch, releases};

use crate::metrics::Metrics;
use crate::process::{Prepared, RejectError, decode, prepare, stream_message};

/// How a message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Stored for the first time and published.
    Stored,
    /// Already stored (a replay); republished.
    Duplicate,
    /// Can never be stored; logged and counted.
    Rejected,
}

#[derive(Clone)]
pub struct Worker {
    pub postgres: Postgres,
    pub producer: FutureProducer,
    pub events_topic: String,
    /// Where the loss of a message that can never be stored is counted.
    pub outcomes_topic: String,
    pub metrics: Metrics,
}

impl Handler for Worker {
    async fn handle_batch(&self, payloads: &[Option<&[u8]>]) -> Result<(), Interrupted> {
        self.process_batch(payloads.iter().copied()).await
    }
}

impl Worker {
    /// Process a batch: store every event in one transaction (the first event of each issue in
    /// Kafka order names it), then publish the records concurrently.
    pub async fn process_batch<'a>(
        &self,
        payloads: impl IntoIterator<Item = Option<&'a [u8]>>,
    ) -> Result<(), Interrupted> {
        let started = Instant::now();
        let mut lost: Vec<Outcome> = Vec::new();
        let mut prepared: Vec<Prepared> = Vec::new();
        for payload in payloads {
            match self.prepare(payload) {
                Ok(p) => prepared.push(p),
                Err(outcome) => lost.push(*outcome),
            }
        }
        if prepared.is_empty() {
            return self.publish_outcomes(&lost).await;
        }
        let events: Vec<ingest::NewEvent> = prepared.iter().map(|p| p.event.clone()).collect();
        self.record_releases(&events).await?;
        let what = format!("store a batch of {} events", events.len());
        let stored = self
            .postgres
            .query_or_permanent(&what, || {
                ingest_batch::save_batch(&self.postgres.pool, &events)
            })
            .await?;
        self.metrics.batch_events.observe(events.len() as f64);
        let saved: Vec<Option<SavedEvent>> = match stored {
            Ok(saved) => saved.into_iter().map(Some).collect(),
            Err(error) => {
                tracing::warn!(%error, events = events.len(), "the batch cannot be stored as a whole; storing its events one by one");
                self.metrics.error("batch_split");
                let mut one_by_one = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    one_by_one.push(self.store(p).await?);
                }
                one_by_one
            }
        };
        let runs = prepared
            .iter()
            .zip(saved)
            .map(|(p, saved)| self.publish_stored(p, saved, started));
        let handled = join_all(runs)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        for (p, how) in prepared.iter().zip(handled) {
            if how == Handled::Rejected {
                lost.push(outcome(
                    Some((p.organization_id, p.project_id, p.key_id)),
                    Some(p.event.event_id.simple().to_string()),
                    "unstorable",
                ));
            }
        }
        self.publish_outcomes(&lost).await
    }

    /// Create and link the releases the batch names (one statement), before its events so
    /// that an event from a new release finds it when deciding a regression. A batch whose
    /// releases can never be recorded is still stored.
    async fn record_releases(&self, events: &[ingest::NewEvent]) -> Result<(), Interrupted> {
        let seen = releases::seen_in(events.iter());
        if seen.is_empty() {
            return Ok(());
        }
        let what = format!("record {} releases of a batch", seen.len());
        self.postgres
            .query(&what, || releases::record_seen(&self.postgres.pool, &seen))
            .await
            .map(|_| ())
    }

    /// Decode and normalize a message; when it can never be stored (logged, counted), the
    /// outcome recording its loss.
    fn prepare(&self, payload: Option<&[u8]>) -> Result<Prepared, Box<Outcome>> {
        let message = decode(payload.unwrap_or_default()).map_err(|e| self.reject(&e, None))?;
        prepare(&message).map_err(|e| self.reject(&e, Some(&message)))
    }

    /// Log and count a message that can never be stored; the outcome recording its loss.
    fn reject(&self, error: &RejectError, message: Option<&IngestMessage>) -> Box<Outcome> {
        tracing::error!(
            %error,
            event_id = message.map(|m| m.event_id.as_str()),
            project_id = message.map(|m| m.project_id),
            "skipping an ingest message that can never be stored"
        );
        self.metrics.error("invalid");
        Box::new(match message {
            Some(m) => outcome(
                Some((m.organization_id, m.project_id, m.key_id)),
                Some(m.event_id.clone()),
                "invalid_event",
            ),
            None => outcome(None, None, "invalid_message"),
        })
    }

    /// Count lost messages on the outcomes topic (retried like the eventstream, so the loss is
    /// recorded before the offsets are committed).
    async fn publish_outcomes(&self, lost: &[Outcome]) -> Result<(), Interrupted> {
        for o in lost {
            let body = match serde_json::to_vec(o) {
                Ok(body) => body,
                Err(error) => {
                    tracing::error!(%error, "cannot encode an outcome");
                    continue;
                }
            };
            let key = o.project_id.map(|p| p.to_string()).unwrap_or_default();
            self.produce(&self.outcomes_topic, &key, &body).await?;
        }
        Ok(())
    }

    /// Publish the record of a stored event (`None`: rejected for good) and count it.
    async fn publish_stored(
        &self,
        prepared: &Prepared,
        saved: Option<SavedEvent>,
        started: Instant,
    ) -> Result<Handled, Interrupted> {
        let Some(saved) = saved else {
            return Ok(Handled::Rejected);
        };
        let record = stream_message(prepared, &saved);
        self.publish(&record).await?;

        self.metrics
            .processing_seconds
            .observe(started.elapsed().as_secs_f64());
        let now = chrono::Utc::now().timestamp_micros() as f64 / 1e6;
        self.metrics
            .ingest_latency
            .observe((now - prepared.received).max(0.0));
        if saved.duplicate {
            self.metrics.duplicates.inc();
            Ok(Handled::Duplicate)
        } else {
            self.metrics.events_processed.inc();
            Ok(Handled::Stored)
        }
    }

    /// Store one event alone (a batch that failed as a whole); `None` when it can never be
    /// stored.
    async fn store(&self, p: &Prepared) -> Result<Option<SavedEvent>, Interrupted> {
        let what = format!(
            "store event {} of project {}",
            p.event.event_id, p.project_id
        );
        self.postgres
            .query(&what, || ingest::save_event(&self.postgres.pool, &p.event))
            .await
    }

    async fn publish(&self, record: &EventStreamMessage) -> Result<(), Interrupted> {
        let body = match serde_json::to_vec(record) {
            Ok(body) => body,
            Err(error) => {
                // Serializing plain data cannot fail; log rather than panic if it ever does.
                tracing::error!(%error, "cannot encode the eventstream record");
                self.metrics.error("kafka_produce");
                return Ok(());
            }
        };
        let key = record.project_id.to_string();
        self.produce(&self.events_topic, &key, &body).await
    }

    /// Write one message to `topic`, retrying while Kafka refuses it.
    async fn produce(&self, topic: &str, key: &str, body: &[u8]) -> Result<(), Interrupted> {
        // Kafka is retried like the database: same backoff ceiling, same shutdown.
        let postgres = &self.postgres;
        retry(postgres.max_backoff, &postgres.shutdown, || async {
            // Not cut short by shutdown: an in-flight send finishes (or times out) first.
            let result = self
                .producer
                .send(
                    FutureRecord::to(topic).key(key).payload(body),
                    Timeout::After(Duration::from_secs(10)),
                )
                .await;
            match result {
                Ok(_) => Attempt::Done(()),
                Err((error, _)) => {
                    self.metrics.error("kafka_produce");
                    tracing::warn!(%error, topic, "publishing to Kafka failed; retrying");
                    Attempt::Again
                }
            }
        })
        .await
        .map(|_| ())
    }
}

/// The outcome recording the loss of one accepted event (`scope`: organization, project, key).
fn outcome(scope: Option<(u64, u64, u64)>, event_id: Option<String>, reason: &str) -> Outcome {
    Outcome {
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        org_id: scope.map(|s| s.0),
        project_id: scope.map(|s| s.1),
        key_id: scope.map(|s| s.2),
        outcome: OutcomeKind::Invalid,
        reason: Some(reason.to_owned()),
        event_id,
        category: "error".to_owned(),
        quantity: 1,
    }
}
