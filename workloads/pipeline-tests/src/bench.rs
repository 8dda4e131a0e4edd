//! Building blocks of the pipeline benchmark: paced and parallel senders, percentiles, and
//! peak memory of the workload processes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::api::Api;
use crate::region::{Region, TestProject};
use crate::sdk::{EnvelopeSender, envelope_bytes, error_event};

/// Why a benchmark phase stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("relay refused an event: {0}")]
    Refused(String),
    #[error("a sender task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("event {id} was not returned by the API within {deadline:?}")]
    NotReturned { id: String, deadline: Duration },
}

/// Latency samples started per second at most.
pub const SAMPLES_PER_SECOND: f64 = 10.0;
/// Latency samples being polled at once at most.
pub const MAX_SAMPLES_IN_FLIGHT: usize = 4;
/// Distinct issues the benchmark events fall into.
pub const ISSUES: usize = 10;

#[derive(Debug)]
struct BenchFailure(usize);

impl fmt::Display for BenchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "benchmark failure in step {}", self.0)
    }
}

impl std::error::Error for BenchFailure {}

/// An SDK-built error event in issue `n % ISSUES`; returns its id (32 hex) and envelope.
pub fn bench_envelope(n: usize) -> (String, Vec<u8>) {
    let mut event = error_event(&BenchFailure(n % ISSUES));
    event.fingerprint = vec![format!("bench-{}", n % ISSUES).into()].into();
    (event.event_id.simple().to_string(), envelope_bytes(event))
}

/// Millisecond samples with nearest-rank percentiles.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    samples: Vec<f64>,
}

impl Stats {
    pub fn push(&mut self, d: Duration) {
        self.samples.push(d.as_secs_f64() * 1000.0);
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
}

/// Send `n` events with `concurrency` parallel senders; per-request latency of relay's 200.
pub async fn send_all(
    sender: &Arc<EnvelopeSender>,
    n: usize,
    concurrency: usize,
) -> Result<Stats, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let sender = sender.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<Stats, BenchError>(stats);
                }
                let (_, body) = bench_envelope(i);
                let t = Instant::now();
                sender.send(body).await.map_err(BenchError::Refused)?;
                stats.push(t.elapsed());
            }
        }));
    }
    let mut all = Stats::default();
    for t in tasks {
        let stats = t.await??;
        all.samples.extend(stats.samples);
    }
    Ok(all)
}

/// Sum of the `count` of the project's issues, as the API reports them.
pub async fn total_issue_count(api: &Api, project: &TestProject) -> u64 {
    api.issues(&project.org, &project.slug)
        .await
        .map(|issues| {
            issues
                .iter()
                .filter_map(|i| i["count"].as_str()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// Send at `rate` events/s for `duration`; for a sample of them (at most
/// [`SAMPLES_PER_SECOND`], [`MAX_SAMPLES_IN_FLIGHT`] at once) measure the time from relay's
/// 200 to the API returning the event (polled every 5 ms).
pub async fn latency_phase(
    region: &Region,
    project: &TestProject,
    sender: &Arc<EnvelopeSender>,
    rate: f64,
    duration: Duration,
    deadline: Duration,
) -> Result<Stats, BenchError> {
    let total = (rate * duration.as_secs_f64()).ceil() as usize;
    let every = (rate / SAMPLES_PER_SECOND).ceil().max(1.0) as usize;
    // Polling is load on web too: bound the samples in flight so the probe does not become
    // the bottleneck it measures.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_SAMPLES_IN_FLIGHT));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let sender = sender.clone();
        let api = region.api.clone();
        let project = project.clone();
        let permit = if i % every == 0 {
            in_flight.clone().try_acquire_owned().ok()
        } else {
            None
        };
        tasks.push(tokio::spawn(async move {
            let (id, body) = bench_envelope(1_000_000 + i);
            sender.send(body).await.map_err(BenchError::Refused)?;
            let Some(_permit) = permit else {
                return Ok(None);
            };
            let accepted = Instant::now();
            let until = accepted + deadline;
            loop {
                if api.event(&project.org, &project.slug, &id).await.is_some() {
                    return Ok::<Option<Duration>, BenchError>(Some(accepted.elapsed()));
                }
                if Instant::now() > until {
                    return Err(BenchError::NotReturned { id, deadline });
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let mut stats = Stats::default();
    for t in tasks {
        if let Some(d) = t.await?? {
            stats.push(d);
        }
    }
    Ok(stats)
}

/// Peak resident set (VmHWM, KiB) of a live process.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s = Stats::default();
        for ms in 1..=100 {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.p(50.0), 50.0);
        assert_eq!(s.p(99.0), 99.0);
        assert_eq!(s.p(100.0), 100.0);
        assert!(Stats::default().p(50.0).is_nan());
    }

    #[test]
    fn reads_vm_hwm() {
        let status = "Name:\tweb\nVmPeak:\t  900 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(12345));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
    }

    #[test]
    fn bench_events_fall_into_a_fixed_set_of_issues() {
        let (a, _) = bench_envelope(3);
        let (b, _) = bench_envelope(3);
        assert_ne!(a, b, "every event has its own id");
        assert_eq!(a.len(), 32);
    }
}
