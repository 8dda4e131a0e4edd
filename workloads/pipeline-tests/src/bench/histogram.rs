//! A workload's own Prometheus histogram over one phase: the bucket counts scraped before and
//! after, subtracted, and read as quantiles (pure).
//!
//! ```text
//!  /metrics text ─► Buckets (le -> cumulative count) ─► after - before ─► quantile (upper bound
//!  of the bucket the rank falls in) and mean (sum / count)
//! ```
//!
//! A quantile is a bucket's upper bound, so it is as coarse as the buckets (powers of two).

/// The cumulative buckets, sum and count of one histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// (upper bound, cumulative count), in the order exposed (ascending, `+Inf` last).
    pub le: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// The histogram `name` in Prometheus text (empty when absent).
pub fn parse(text: &str, name: &str) -> Buckets {
    let mut out = Buckets::default();
    let bucket = format!("{name}_bucket{{");
    for line in text.lines() {
        let value = || line.rsplit(' ').next()?.parse::<f64>().ok();
        if let Some(rest) = line.strip_prefix(&bucket) {
            let le = rest
                .split("le=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|s| match s {
                    "+Inf" => Some(f64::INFINITY),
                    v => v.parse().ok(),
                });
            if let (Some(le), Some(v)) = (le, value()) {
                out.le.push((le, v));
            }
        } else if line.starts_with(&format!("{name}_sum ")) {
            out.sum = value().unwrap_or(0.0);
        } else if line.starts_with(&format!("{name}_count ")) {
            out.count = value().unwrap_or(0.0);
        }
    }
    out
}

impl Buckets {
    /// What was observed after `before` (same histogram, scraped earlier).
    pub fn since(&self, before: &Buckets) -> Buckets {
        let was = |le: f64| {
            before
                .le
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Buckets {
            le: self.le.iter().map(|&(le, c)| (le, c - was(le))).collect(),
            sum: self.sum - before.sum,
            count: self.count - before.count,
        }
    }

    /// The upper bound of the bucket holding quantile `q` (`None` without observations).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = (q * self.count).ceil().max(1.0);
        self.le.iter().find(|(_, c)| *c >= rank).map(|(le, _)| *le)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# TYPE x histogram\n\
        x_sum 1.0\nx_count 2\n\
        x_bucket{le=\"0.01\"} 1\nx_bucket{le=\"0.02\"} 2\nx_bucket{le=\"0.04\"} 2\n\
        x_bucket{le=\"+Inf\"} 2\nx_other_bucket{le=\"0.01\"} 99\n";
    const AFTER: &str = "x_sum 3.0\nx_count 102\n\
        x_bucket{le=\"0.01\"} 51\nx_bucket{le=\"0.02\"} 92\nx_bucket{le=\"0.04\"} 101\n\
        x_bucket{le=\"+Inf\"} 102\n";

    #[test]
    fn a_phase_is_the_difference_of_two_scrapes() {
        let phase = parse(AFTER, "x").since(&parse(BEFORE, "x"));
        assert_eq!(phase.count, 100.0);
        assert_eq!(phase.quantile(0.5), Some(0.01));
        assert_eq!(phase.quantile(0.9), Some(0.02));
        assert_eq!(phase.quantile(0.99), Some(0.04));
        assert_eq!(phase.quantile(1.0), Some(f64::INFINITY));
        assert_eq!(phase.mean(), Some(0.02));
    }

    #[test]
    fn an_absent_histogram_has_no_quantile() {
        let none = parse("y_total 3\n", "x");
        assert_eq!(none.quantile(0.5), None);
        assert_eq!(none.mean(), None);
    }
}
