//! Status write pacing: while a Region rolls out, its condition messages name the Deployments it
//! still waits for and change several times within seconds. Those message-only changes are
//! written at most once per interval per object; any change of a condition's status or reason
//! (a transition, a new error) and any other field is written at once.
//!
//! ```text
//!  write_status(next) ─► same as stored? ─► nothing
//!                     ─► only messages differ and the last write is younger than the interval
//!                        ─► defer: requeue after the rest of the interval (latest state then)
//!                     ─► otherwise write, remember when
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

#[derive(Debug)]
pub struct StatusPacer {
    interval: Duration,
    last_write: Mutex<HashMap<String, Instant>>,
}

impl StatusPacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_write: Mutex::new(HashMap::new()),
        }
    }

    /// How long to hold back a message-only write of `name` (`None`: write now).
    pub fn hold(&self, name: &str, message_only: bool) -> Option<Duration> {
        if !message_only {
            return None;
        }
        let last = self.last_write.lock().ok()?.get(name).copied()?;
        self.interval
            .checked_sub(last.elapsed())
            .filter(|d| !d.is_zero())
    }

    pub fn written(&self, name: &str) {
        if let Ok(mut last) = self.last_write.lock() {
            last.insert(name.to_owned(), Instant::now());
        }
    }

    /// Forget a deleted object.
    pub fn forget(&self, name: &str) {
        if let Ok(mut last) = self.last_write.lock() {
            last.remove(name);
        }
    }
}

/// Whether `next` differs from `previous` only in condition messages.
pub fn messages_only(previous: &[Condition], next: &[Condition]) -> bool {
    previous.len() == next.len()
        && previous.iter().zip(next).all(|(a, b)| {
            a.type_ == b.type_
                && a.status == b.status
                && a.reason == b.reason
                && a.observed_generation == b.observed_generation
                && a.last_transition_time == b.last_transition_time
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn condition(status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
        }
    }

    #[test]
    fn only_message_changes_are_held_back_within_the_interval() {
        let waiting = [condition("False", "Progressing", "waiting for: web, relay")];
        let fewer = [condition("False", "Progressing", "waiting for: relay")];
        let ready = [condition("True", "Ready", "ready")];
        assert!(messages_only(&waiting, &fewer));
        assert!(!messages_only(&waiting, &ready));
        assert!(!messages_only(&waiting, &[]));

        let pacer = StatusPacer::new(Duration::from_secs(60));
        assert_eq!(pacer.hold("r", true), None, "never written: write now");
        pacer.written("r");
        assert!(
            pacer
                .hold("r", true)
                .is_some_and(|d| d <= Duration::from_secs(60))
        );
        assert_eq!(pacer.hold("r", false), None, "transitions are never held");
        pacer.forget("r");
        assert_eq!(pacer.hold("r", true), None);

        let off = StatusPacer::new(Duration::ZERO);
        off.written("r");
        assert_eq!(off.hold("r", true), None);
    }
}
