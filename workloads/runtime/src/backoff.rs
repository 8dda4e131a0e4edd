//! Exponential retry delays, interrupted by shutdown.

use std::time::Duration;

use crate::shutdown::Shutdown;

/// Doubling delays from 100 ms up to a ceiling; [`Backoff::reset`] after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

const FIRST: Duration = Duration::from_millis(100);

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: FIRST.min(max),
            max,
        }
    }

    /// The delay to wait now; the following one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = FIRST.min(self.max);
    }

    /// Wait the next delay; `false` when shutdown fired first.
    pub async fn wait(&mut self, shutdown: &Shutdown) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = shutdown.wait() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
