//! Millisecond samples and their nearest-rank percentiles.

use std::time::Duration;

/// Millisecond samples with nearest-rank percentiles.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    samples: Vec<f64>,
}

impl Stats {
    pub fn push(&mut self, d: Duration) {
        self.samples.push(d.as_secs_f64() * 1000.0);
    }

    /// Add every sample of `other`.
    pub fn merge(&mut self, other: Stats) {
        self.samples.extend(other.samples);
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `q`th percentile (0-100) in milliseconds; NaN without samples.
    pub fn p(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let mut s = self.samples.clone();
        s.sort_by(f64::total_cmp);
        let rank = ((q / 100.0) * s.len() as f64).ceil() as usize;
        s[rank.clamp(1, s.len()) - 1]
    }

    /// `p50 .. ms, p90 .. ms, p99 .. ms, max .. ms (n samples)`.
    pub fn summary(&self) -> String {
        format!(
            "p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            self.p(50.0),
            self.p(90.0),
            self.p(99.0),
            self.p(100.0),
            self.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s = Stats::default();
        for ms in (1..=100).rev() {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.p(50.0), 50.0);
        assert_eq!(s.p(90.0), 90.0);
        assert_eq!(s.p(99.0), 99.0);
        assert_eq!(s.p(100.0), 100.0);
        assert!(Stats::default().p(50.0).is_nan());
        assert_eq!(
            s.summary(),
            "p50 50.0 ms, p90 90.0 ms, p99 99.0 ms, max 100.0 ms (100 samples)"
        );
    }

    #[test]
    fn merged_samples_count_once_each() {
        let mut a = Stats::default();
        a.push(Duration::from_millis(1));
        let mut b = Stats::default();
        b.push(Duration::from_millis(3));
        a.merge(b);
        assert_eq!(a.len(), 2);
        assert_eq!(a.p(100.0), 3.0);
    }
}
