//! The printed figures of `pipeline-bench`, rendered from what the phases measured (pure).

use std::time::Duration;

use super::open_loop::OpenLoopReport;
use super::retry::SendTally;
use super::stats::Stats;

/// Fewer latency samples than this make p99 a guess; the report says so.
pub const MIN_LATENCY_SAMPLES: usize = 1000;

/// The relay-alone baseline.
#[derive(Debug)]
pub struct Baseline {
    pub events: usize,
    pub senders: usize,
    /// Until relay answered the last event.
    pub accepted_in: Duration,
    /// Per-request latency of relay's 200.
    pub requests: Stats,
    pub sends: SendTally,
    /// Until the API counted every accepted event (`None`: not within the deadline).
    pub queryable_in: Option<Duration>,
}

impl Baseline {
    /// Relay's acceptance rate, events/s.
    pub fn rate(&self) -> f64 {
        self.sends.accepted as f64 / self.accepted_in.as_secs_f64().max(f64::EPSILON)
    }
}

/// Peak RSS of one workload (`None`: unavailable).
pub type Rss = (String, Option<u64>);

/// Every line of the report.
pub fn render(
    baseline: &Baseline,
    load: &OpenLoopReport,
    offered: f64,
    window: Duration,
    rss: &[Rss],
) -> Vec<String> {
    let relay_rate = baseline.rate();
    let t = &load.throughput;
    let mut out = vec![
        format!(
            "== pipeline benchmark: baseline {} events from {} senders, then {offered:.0} events/s offered for {}s ==",
            baseline.events,
            baseline.senders,
            window.as_secs()
        ),
        format!(
            "baseline: relay alone accepted {relay_rate:.0} events/s (HTTP 200 after Kafka ack; per request {}); {}",
            baseline.requests.summary(),
            baseline.sends.summary()
        ),
    ];
    if let Some(q) = baseline.queryable_in {
        out.push(format!(
            "baseline burst: all queryable {:.1}s after the first send ({:.0} events/s; a burst, not a sustained rate)",
            q.as_secs_f64(),
            baseline.sends.accepted as f64 / q.as_secs_f64().max(f64::EPSILON)
        ));
    }
    out.push(format!(
        "open loop: {} events due ({offered:.0}/s = {:.2} of baseline), schedule sent in {:.1}s; lateness of send start {}",
        load.lateness.len(),
        offered / relay_rate,
        load.sent_in.as_secs_f64(),
        load.lateness.summary()
    ));
    out.push(format!("open loop sends: {}", load.sends.summary()));
    out.push(format!(
        "relay 200 after the scheduled send time: {}",
        load.relay_ack.summary()
    ));
    out.push(format!(
        "pipeline: {:.0} events/s became queryable during the window; backlog {} at its end (grew {:.0}/s, max {})",
        t.in_window, t.backlog_at_end, t.backlog_growth, t.max_backlog
    ));
    let drain = match t.drain {
        Some(d) => format!("caught up {:.1}s after the window", d.as_secs_f64()),
        None => "did NOT catch up within the deadline".to_owned(),
    };
    let verdict = if t.kept_up() {
        "kept up with the offered load, so the ratio is a lower bound; raise --load or --rate to find the limit"
    } else {
        "fell behind: this is the pipeline's capacity, and latency includes queueing"
    };
    out.push(format!(
        "pipeline: {:.0} events/s sustained from relay to queryable issue until caught up (ratio to baseline {:.2}); {drain}; {verdict}",
        t.sustained,
        t.sustained / relay_rate
    ));
    out.push(format!(
        "latency relay 200 -> event returned by the API: {}",
        load.to_api.summary()
    ));
    out.push(format!(
        "latency scheduled send -> event returned by the API: {}",
        load.due_to_api.summary()
    ));
    if load.not_returned > 0 {
        out.push(format!(
            "latency: {} sampled events not returned within the deadline (left out above)",
            load.not_returned
        ));
    }
    if load.to_api.len() < MIN_LATENCY_SAMPLES {
        out.push(format!(
            "latency: only {} samples (< {MIN_LATENCY_SAMPLES}): raise --duration-seconds or --rate",
            load.to_api.len()
        ));
    }
    for (name, kib) in rss {
        out.push(match kib {
            Some(kib) => format!("peak RSS {name:<12} {:>7.1} MiB", *kib as f64 / 1024.0),
            None => format!("peak RSS {name:<12} unavailable"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::schedule::{Progress, Throughput};
    use super::*;

    fn stats(ms: &[u64]) -> Stats {
        let mut s = Stats::default();
        for m in ms {
            s.push(Duration::from_millis(*m));
        }
        s
    }

    fn fixture(drained: u64) -> (Baseline, OpenLoopReport) {
        let baseline = Baseline {
            events: 100,
            senders: 4,
            accepted_in: Duration::from_secs(1),
            requests: stats(&[1, 2]),
            sends: SendTally {
                accepted: 100,
                ..SendTally::default()
            },
            queryable_in: Some(Duration::from_secs(2)),
        };
        let p = |ms, queryable| Progress {
            at: Duration::from_millis(ms),
            accepted: 50,
            queryable,
        };
        let load = OpenLoopReport {
            sent_in: Duration::from_secs(1),
            lateness: stats(&[0, 1]),
            relay_ack: stats(&[2, 3]),
            to_api: stats(&[10, 20]),
            due_to_api: stats(&[12, 23]),
            not_returned: 1,
            sends: SendTally {
                accepted: 50,
                retries: 2,
                ..SendTally::default()
            },
            throughput: Throughput::from_trace(
                &[p(1000, 40), p(1000 + drained, 50)],
                Duration::from_secs(1),
                50,
            ),
        };
        (baseline, load)
    }

    #[test]
    fn the_report_states_ratio_verdict_and_sample_shortfall() {
        let (baseline, load) = fixture(500);
        let text = render(&baseline, &load, 50.0, Duration::from_secs(1), &[]).join("\n");
        assert!(text.contains("relay alone accepted 100 events/s"), "{text}");
        assert!(text.contains("(ratio to baseline 0.33)"), "{text}");
        assert!(text.contains("kept up with the offered load"), "{text}");
        assert!(text.contains("1 sampled events not returned"), "{text}");
        assert!(text.contains("only 2 samples (< 1000)"), "{text}");
        assert!(text.contains("retries 2, final failures 0"), "{text}");

        let (baseline, load) = fixture(5000);
        let text = render(&baseline, &load, 50.0, Duration::from_secs(1), &[]).join("\n");
        assert!(text.contains("fell behind"), "{text}");
        assert!(text.contains("caught up 5.0s after the window"), "{text}");
    }
}
