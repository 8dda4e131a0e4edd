//! The open-loop plan and what the observed progress says, both pure.
//!
//! Open loop: event `i` is due at `i / rate` after the start, whatever relay answered to the
//! events before it, and lateness is measured from that due time. A sender that waits for
//! answers (closed loop) sends less exactly when the system is slow and so hides the slowness
//! from its own samples (coordinated omission).

use std::time::Duration;

/// Events due at a fixed rate over a fixed window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub rate: f64,
    pub window: Duration,
    /// Events due in the window.
    pub total: u64,
    /// Every `sample_every`th event is followed until the API returns it.
    pub sample_every: u64,
}

impl Schedule {
    /// `rate` events/s for `window`, following about `samples` of them (every event when
    /// there are fewer).
    pub fn new(rate: f64, window: Duration, samples: u64) -> Self {
        let total = (rate * window.as_secs_f64()).floor().max(1.0) as u64;
        Schedule {
            rate,
            window,
            total,
            sample_every: (total / samples.max(1)).max(1),
        }
    }

    /// When event `i` is due, from the start of the window.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }

    pub fn is_sampled(&self, i: u64) -> bool {
        i.is_multiple_of(self.sample_every)
    }

    /// How many events are followed.
    pub fn samples(&self) -> u64 {
        self.total.div_ceil(self.sample_every)
    }
}

/// Accepted and queryable events at one moment of the phase (counted from its start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub at: Duration,
    pub accepted: u64,
    pub queryable: u64,
}

/// The pipeline's throughput over a phase, from its progress trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    /// Events that became queryable per second during the send window.
    pub in_window: f64,
    /// Accepted but not yet queryable at the end of the window.
    pub backlog_at_end: u64,
    /// Largest backlog seen.
    pub max_backlog: u64,
    /// Backlog growth over the window, events/s.
    pub backlog_growth: f64,
    /// From the end of the window until every accepted event was queryable; `None` when the
    /// deadline passed first.
    pub drain: Option<Duration>,
    /// Queryable events per second from the start until caught up (or until the last
    /// observation, when it never caught up).
    pub sustained: f64,
}

impl Throughput {
    /// Read `trace` (ordered by time, observed until caught up or the deadline) of a window
    /// of length `window` in which `accepted` events were accepted in all.
    pub fn from_trace(trace: &[Progress], window: Duration, accepted: u64) -> Self {
        let secs = window.as_secs_f64().max(f64::EPSILON);
        let at_end = trace
            .iter()
            .take_while(|p| p.at <= window)
            .last()
            .copied()
            .unwrap_or(Progress {
                at: Duration::ZERO,
                accepted: 0,
                queryable: 0,
            });
        let backlog = |p: &Progress| p.accepted.saturating_sub(p.queryable);
        let backlog_at_end = backlog(&at_end);
        let caught_up = trace
            .iter()
            .find(|p| p.at >= window && p.queryable >= accepted);
        let last = trace.last().copied().unwrap_or(at_end);
        let (until, queryable) = match caught_up {
            Some(p) => (p.at, accepted),
            None => (last.at, last.queryable),
        };
        Throughput {
            in_window: at_end.queryable as f64 / secs,
            backlog_at_end,
            max_backlog: trace.iter().map(backlog).max().unwrap_or(0),
            backlog_growth: backlog_at_end as f64 / secs,
            drain: caught_up.map(|p| p.at.saturating_sub(window)),
            sustained: queryable as f64 / until.as_secs_f64().max(secs),
        }
    }

    /// Whether the pipeline kept up with the offered load: caught up within a second of the
    /// end of the window.
    pub fn kept_up(&self) -> bool {
        self.drain.is_some_and(|d| d <= Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ms: u64, accepted: u64, queryable: u64) -> Progress {
        Progress {
            at: Duration::from_millis(ms),
            accepted,
            queryable,
        }
    }

    #[test]
    fn schedule_is_independent_of_answers_and_samples_evenly() {
        let s = Schedule::new(100.0, Duration::from_secs(60), 1000);
        assert_eq!(s.total, 6000);
        assert_eq!(s.sample_every, 6);
        assert_eq!(s.samples(), 1000);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(250), Duration::from_millis(2500));
        assert!(s.is_sampled(0) && s.is_sampled(6) && !s.is_sampled(7));
    }

    #[test]
    fn fewer_events_than_samples_follow_every_event() {
        let s = Schedule::new(10.0, Duration::from_secs(10), 1000);
        assert_eq!((s.total, s.sample_every, s.samples()), (100, 1, 100));
        // Never fewer samples than asked for when there are enough events.
        let s = Schedule::new(333.0, Duration::from_secs(7), 1000);
        assert!(s.samples() >= 1000, "{s:?}");
    }

    #[test]
    fn a_pipeline_that_keeps_up_sustains_the_offered_rate() {
        let trace = [p(1000, 100, 95), p(2000, 200, 195), p(2100, 200, 200)];
        let t = Throughput::from_trace(&trace, Duration::from_secs(2), 200);
        assert_eq!(t.backlog_at_end, 5);
        assert_eq!(t.max_backlog, 5);
        assert_eq!(t.drain, Some(Duration::from_millis(100)));
        assert!(t.kept_up());
        assert!((t.sustained - 200.0 / 2.1).abs() < 1e-9, "{t:?}");
        assert!((t.in_window - 97.5).abs() < 1e-9);
    }

    #[test]
    fn a_falling_behind_pipeline_reports_backlog_and_its_own_rate() {
        let trace = [
            p(1000, 100, 50),
            p(2000, 200, 100),
            p(3000, 200, 150),
            p(4000, 200, 200),
        ];
        let t = Throughput::from_trace(&trace, Duration::from_secs(2), 200);
        assert_eq!(t.backlog_at_end, 100);
        assert!((t.backlog_growth - 50.0).abs() < 1e-9);
        assert_eq!(t.drain, Some(Duration::from_secs(2)));
        assert!(!t.kept_up());
        assert!((t.sustained - 50.0).abs() < 1e-9);
    }

    #[test]
    fn never_caught_up_uses_the_last_observation() {
        let trace = [p(2000, 200, 100), p(5000, 200, 150)];
        let t = Throughput::from_trace(&trace, Duration::from_secs(2), 200);
        assert_eq!(t.drain, None);
        assert!((t.sustained - 30.0).abs() < 1e-9);
        assert_eq!(
            Throughput::from_trace(&[], Duration::from_secs(2), 0).sustained,
            0.0
        );
    }
}
