//! Rejection outcomes, aggregated per second and written to the `outcomes` topic in batches.
//! Best effort: a full queue or a Kafka failure drops the counts (and counts that).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use silo_protocol::{Outcome, OutcomeKind};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::kafka::EventProducer;
use crate::metrics::RelayMetrics;
use crate::rate_limit::Scoping;

/// One rejected item, before aggregation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutcomeKey {
    pub timestamp: i64,
    pub org_id: Option<u64>,
    pub project_id: Option<u64>,
    pub key_id: Option<u64>,
    pub outcome: u8,
    pub reason: String,
    pub category: String,
}

/// Handle to queue outcomes; cheap to clone.
#[derive(Clone)]
pub struct Outcomes {
    tx: mpsc::Sender<(OutcomeKey, u64)>,
    metrics: Arc<RelayMetrics>,
}

fn kind(code: u8) -> OutcomeKind {
    match code {
        0 => OutcomeKind::Accepted,
        1 => OutcomeKind::Filtered,
        2 => OutcomeKind::RateLimited,
        _ => OutcomeKind::Invalid,
    }
}

/// Sum equal keys (same second, scope, outcome, reason, category).
pub fn aggregate(items: impl IntoIterator<Item = (OutcomeKey, u64)>) -> Vec<Outcome> {
    let mut sums: BTreeMap<OutcomeKey, u64> = BTreeMap::new();
    for (key, quantity) in items {
        *sums.entry(key).or_default() += quantity;
    }
    sums.into_iter()
        .map(|(k, quantity)| Outcome {
            timestamp: chrono::DateTime::from_timestamp(k.timestamp, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            org_id: k.org_id,
            project_id: k.project_id,
            key_id: k.key_id,
            outcome: kind(k.outcome),
            reason: Some(k.reason),
            event_id: None,
            category: k.category,
            quantity,
        })
        .collect()
}

impl Outcomes {
    /// Start the aggregator; it flushes every `interval` and once more when `stop` fires.
    pub fn start(
        producer: Arc<EventProducer>,
        metrics: Arc<RelayMetrics>,
        interval: Duration,
        stop: silo_runtime::Shutdown,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(10_000);
        let task = tokio::spawn(run(rx, producer, metrics.clone(), interval, stop));
        (Self { tx, metrics }, task)
    }

    /// Queue `quantity` rejected items of `category`. Without a full scoping (the key was not
    /// resolved yet) the project id from the URL is recorded when it is known.
    pub fn reject(
        &self,
        scoping: Option<&Scoping>,
        url_project: Option<u64>,
        kind: OutcomeKind,
        reason: &str,
        category: &str,
        quantity: u64,
    ) {
        let key = OutcomeKey {
            timestamp: chrono::Utc::now().timestamp(),
            org_id: scoping.map(|s| s.organization_id),
            project_id: scoping.map(|s| s.project_id).or(url_project),
            key_id: scoping.map(|s| s.key_id),
            outcome: kind.code(),
            reason: reason.to_owned(),
            category: category.to_owned(),
        };
        if self.tx.try_send((key, quantity)).is_err() {
            self.metrics.outcomes_dropped.inc();
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<(OutcomeKey, u64)>,
    producer: Arc<EventProducer>,
    metrics: Arc<RelayMetrics>,
    interval: Duration,
    stop: silo_runtime::Shutdown,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Vec::new();
    loop {
        tokio::select! {
            item = rx.recv() => match item {
                Some(item) => { pending.push(item); continue; }
                None => break,
            },
            _ = ticker.tick() => {}
            _ = stop.wait() => break,
        }
        flush(&mut pending, &producer, &metrics).await;
    }
    while let Ok(item) = rx.try_recv() {
        pending.push(item);
    }
    flush(&mut pending, &producer, &metrics).await;
}

async fn flush(
    pending: &mut Vec<(OutcomeKey, u64)>,
    producer: &EventProducer,
    metrics: &RelayMetrics,
) {
    if pending.is_empty() {
        return;
    }
    let outcomes = aggregate(pending.drain(..));
    let sends = outcomes.iter().map(|outcome| async move {
        let key = outcome
            .project_id
            .map(|p| p.to_string())
            .unwrap_or_default();
        let Ok(json) = serde_json::to_vec(outcome) else {
            return false;
        };
        producer
            .send(&producer.outcomes_topic, &key, &json)
            .await
            .is_ok()
    });
    let results = futures::future::join_all(sends).await;
    let failed = results.iter().filter(|ok| !**ok).count();
    if failed > 0 {
        metrics.outcomes_dropped.inc_by(failed as u64);
        tracing::warn!(failed, "outcomes could not be written to Kafka");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(reason: &str, ts: i64) -> OutcomeKey {
        OutcomeKey {
            timestamp: ts,
            org_id: Some(1),
            project_id: Some(2),
            key_id: Some(3),
            outcome: OutcomeKind::RateLimited.code(),
            reason: reason.into(),
            category: "error".into(),
        }
    }

    #[test]
    fn equal_keys_are_summed() {
        let out = aggregate(vec![
            (key("key_quota", 1_700_000_000), 1),
            (key("key_quota", 1_700_000_000), 2),
            (key("other", 1_700_000_000), 1),
            (key("key_quota", 1_700_000_001), 1),
        ]);
        assert_eq!(out.len(), 3);
        let first = &out[0];
        assert_eq!(first.quantity, 3);
        assert_eq!(first.outcome, OutcomeKind::RateLimited);
        assert_eq!(first.timestamp, "2023-11-14T22:13:20Z");
        assert_eq!(first.reason.as_deref(), Some("key_quota"));
    }
}
