//! Building blocks of the pipeline benchmark: the relay-alone baseline (closed loop), the
//! open-loop phase, retries, percentiles, and peak memory of the workload processes.
//!
//! ```text
//!  baseline:  N senders, each waits for its 200 ─► relay's acceptance rate
//!  open loop: schedule (rate, window) ─► sends with retries ─► progress + latency samples
//!             ─► Throughput (backlog, drain, sustained rate) and Stats (percentiles)
//! ```

pub mod histogram;
pub mod open_loop;
pub mod report;
pub mod retry;
pub mod schedule;
pub mod stats;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::Value;

pub use self::retry::{RetryPolicy, SendCounters, SendTally};
pub use self::stats::Stats;
use crate::api::Api;
use crate::region::TestProject;
use crate::sdk::{EnvelopeSender, envelope_bytes, error_event};

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

/// The closed-loop baseline: `n` events from `concurrency` senders, each sending its next
/// event when relay answered the last one (retrying as `policy` says). Per-request latency
/// of relay's 200 (retries included).
pub async fn send_all(
    sender: &Arc<EnvelopeSender>,
    n: usize,
    concurrency: usize,
    policy: RetryPolicy,
    counters: &Arc<SendCounters>,
) -> Stats {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (sender, next, counters) = (sender.clone(), next.clone(), counters.clone());
        tasks.spawn(async move {
            let mut stats = Stats::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return stats;
                }
                let (_, body) = bench_envelope(i);
                let t = Instant::now();
                if retry::send_with_retry(&sender, body, &policy, &counters)
                    .await
                    .is_ok()
                {
                    stats.push(t.elapsed());
                }
            }
        });
    }
    let mut all = Stats::default();
    while let Some(stats) = tasks.join_next().await {
        all.merge(stats.unwrap_or_default());
    }
    all
}

/// Sum of the `count` of the project's issues, as the API reports them; `None` when the API
/// did not answer with the list.
pub async fn total_issue_count(api: &Api, project: &TestProject) -> Option<u64> {
    let path = format!(
        "/api/0/projects/{}/{}/issues/?query=&per_page=100",
        project.org, project.slug
    );
    match api.try_get(&path).await {
        Ok((status, Value::Array(issues))) if status.is_success() => Some(
            issues
                .iter()
                .filter_map(|i| i["count"].as_str()?.parse::<u64>().ok())
                .sum(),
        ),
        _ => None,
    }
}

/// Whether the API returns event `id` of the project (false on any error).
pub async fn event_returned(api: &Api, project: &TestProject, id: &str) -> bool {
    let path = format!(
        "/api/0/projects/{}/{}/events/{id}/",
        project.org, project.slug
    );
    matches!(api.try_get(&path).await, Ok((status, _)) if status.is_success())
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
