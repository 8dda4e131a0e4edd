//! Sending an envelope until relay takes it: refused and failed sends are retried with
//! exponential backoff, counted, and given up on after a bounded number of attempts (the
//! benchmark goes on; the event is reported as a final failure).
//!
//! A retry reuses the envelope, so an event that did reach Kafka before its answer was lost is
//! stored once (the consumers deduplicate by event id).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sdk::{EnvelopeSender, SendError};

/// How often and how patiently a send is retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts per event, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub base: Duration,
    /// Longest wait between two attempts.
    pub cap: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 = the second attempt).
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// What happened to the sends of a phase, counted as they happen.
#[derive(Debug, Default)]
pub struct SendCounters {
    accepted: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    /// Retried answers and final failures by kind (status code or `transport`).
    kinds: Mutex<(BTreeMap<String, u64>, BTreeMap<String, u64>)>,
}

/// A snapshot of [`SendCounters`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendTally {
    /// Events relay answered 200 for.
    pub accepted: u64,
    /// Attempts after the first, over all events.
    pub retries: u64,
    /// Events given up on.
    pub failed: u64,
    pub retried_by_kind: BTreeMap<String, u64>,
    pub failed_by_kind: BTreeMap<String, u64>,
}

impl SendCounters {
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn tally(&self) -> SendTally {
        let kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        SendTally {
            accepted: self.accepted(),
            retries: self.retries.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            retried_by_kind: kinds.0.clone(),
            failed_by_kind: kinds.1.clone(),
        }
    }

    fn count_kind(&self, error: &SendError, last: bool) {
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        let map = if last { &mut kinds.1 } else { &mut kinds.0 };
        *map.entry(error.kind()).or_default() += 1;
    }
}

impl SendTally {
    /// `retries 3 (503: 2, transport: 1), final failures 0`.
    pub fn summary(&self) -> String {
        fn kinds(map: &BTreeMap<String, u64>) -> String {
            if map.is_empty() {
                return String::new();
            }
            let parts: Vec<String> = map.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            format!(" ({})", parts.join(", "))
        }
        format!(
            "retries {}{}, final failures {}{}",
            self.retries,
            kinds(&self.retried_by_kind),
            self.failed,
            kinds(&self.failed_by_kind)
        )
    }
}

/// Send `body` until relay answers 200 (the instant it did) or the policy gives up (the
/// last error). Every attempt is bounded by the sender's request timeout.
pub async fn send_with_retry(
    sender: &EnvelopeSender,
    body: Vec<u8>,
    policy: &RetryPolicy,
    counters: &SendCounters,
) -> Result<Instant, SendError> {
    let mut attempt = 1;
    loop {
        match sender.try_send(body.clone()).await {
            Ok(()) => {
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                return Ok(Instant::now());
            }
            Err(error) => {
                let last = !error.is_retryable() || attempt >= policy.max_attempts.max(1);
                counters.count_kind(&error, last);
                if last {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(error);
                }
                counters.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(300),
        };
        let waits: Vec<u128> = (1..=5).map(|r| policy.backoff(r).as_millis()).collect();
        assert_eq!(waits, [50, 100, 200, 300, 300]);
        assert_eq!(policy.backoff(200), Duration::from_millis(300));
    }

    #[test]
    fn only_transient_answers_are_retried() {
        let status = |status| SendError::Status {
            status,
            body: String::new(),
        };
        assert!(status(429).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(403).is_retryable());
    }

    #[test]
    fn tally_names_the_kinds() {
        let counters = SendCounters::default();
        let e503 = SendError::Status {
            status: 503,
            body: String::new(),
        };
        counters.count_kind(&e503, false);
        counters.count_kind(&e503, false);
        counters.count_kind(&e503, true);
        let tally = SendTally {
            retries: 2,
            failed: 1,
            ..counters.tally()
        };
        assert_eq!(
            tally.summary(),
            "retries 2 (503: 2), final failures 1 (503: 1)"
        );
        assert_eq!(
            SendTally::default().summary(),
            "retries 0, final failures 0"
        );
    }
}
