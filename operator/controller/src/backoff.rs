//! Per-object error backoff: each failing object waits longer, others are unaffected.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Delay before retrying after `failures` consecutive failures: 1s doubling, capped at 5 min.
pub fn delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(9);
    Duration::from_secs((1u64 << exp).min(300))
}

/// Consecutive failures per object.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Count a failure of `key` and return how long to wait.
    pub fn failed(&self, key: &str) -> Duration {
        let Ok(mut map) = self.failures.lock() else {
            return delay(1);
        };
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        delay(*n)
    }

    /// Forget the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_failure_and_caps() {
        assert_eq!(delay(1), Duration::from_secs(1));
        assert_eq!(delay(2), Duration::from_secs(2));
        assert_eq!(delay(5), Duration::from_secs(16));
        assert_eq!(delay(50), Duration::from_secs(300));
    }

    #[test]
    fn objects_back_off_independently() {
        let b = Backoff::default();
        b.failed("a");
        assert_eq!(b.failed("a"), Duration::from_secs(2));
        assert_eq!(b.failed("b"), Duration::from_secs(1));
        b.succeeded("a");
        assert_eq!(b.failed("a"), Duration::from_secs(1));
    }
}
