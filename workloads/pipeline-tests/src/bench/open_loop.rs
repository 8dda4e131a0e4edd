//! The open-loop phase: events sent on a fixed schedule whatever relay answers, the pipeline's
//! progress observed until it caught up, and a sample of events followed from relay's 200
//! until the API returns them.
//!
//! ```text
//!  scheduler: event i due at i/rate ─► send task (retries) ─► 200 ─► sampled? ─► poll API
//!  monitor: every 200 ms (accepted, queryable) ─► Progress trace ─► Throughput
//! ```
//! Sends in flight are capped; when the cap is reached the scheduler waits, and the wait shows
//! up as lateness (send start minus due time), never as fewer samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::retry::{RetryPolicy, SendCounters, SendTally, send_with_retry};
use super::schedule::{Progress, Schedule, Throughput};
use super::stats::Stats;
use super::{bench_envelope, event_returned, total_issue_count};
use crate::api::Api;
use crate::region::TestProject;
use crate::sdk::EnvelopeSender;

/// How often the monitor counts queryable events.
pub const MONITOR_INTERVAL: Duration = Duration::from_millis(200);

/// Settings of the phase.
#[derive(Clone, Debug)]
pub struct OpenLoop {
    pub schedule: Schedule,
    /// Sends in flight at most.
    pub max_in_flight: usize,
    /// Pause between two polls of one sampled event.
    pub poll_interval: Duration,
    /// API requests of the latency probe in flight at most (the probe is load on web too).
    pub max_polls_in_flight: usize,
    pub retry: RetryPolicy,
    /// Longest wait for an event to become queryable, and for the backlog to drain.
    pub deadline: Duration,
}

/// What the phase measured.
#[derive(Debug)]
pub struct OpenLoopReport {
    /// How long sending the schedule took (longer than the window when the scheduler waited).
    pub sent_in: Duration,
    /// Send start minus due time, per event.
    pub lateness: Stats,
    /// Relay's 200 minus due time, per accepted event.
    pub relay_ack: Stats,
    /// Relay's 200 to the event returned by the API, per sampled event.
    pub to_api: Stats,
    /// Due time to the event returned by the API, per sampled event.
    pub due_to_api: Stats,
    /// Sampled events not returned within the deadline.
    pub not_returned: u64,
    pub sends: SendTally,
    pub throughput: Throughput,
}

/// Counters the send tasks update and the monitor reads.
#[derive(Default)]
struct Shared {
    counters: SendCounters,
    /// Sends started and not finished.
    pending: AtomicU64,
    /// Every event of the schedule has been started.
    scheduled: AtomicBool,
}

struct Outcome {
    lateness: Duration,
    ack: Option<Duration>,
    /// (200 -> API, due -> API) of a sampled event; `None` when it was never returned.
    returned: Option<Option<(Duration, Duration)>>,
}

/// Run the phase against the region's relay and API.
pub async fn run(
    api: &Api,
    project: &TestProject,
    sender: &Arc<EnvelopeSender>,
    cfg: &OpenLoop,
) -> OpenLoopReport {
    let shared = Arc::new(Shared::default());
    let baseline = total_issue_count(api, project).await.unwrap_or(0);
    let start = Instant::now();
    let monitor = tokio::spawn(monitor(
        api.clone(),
        project.clone(),
        baseline,
        start,
        cfg.schedule.window + cfg.deadline,
        shared.clone(),
    ));

    let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
    let polls = Arc::new(Semaphore::new(cfg.max_polls_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let mut outcomes = Vec::with_capacity(cfg.schedule.total as usize);
    for i in 0..cfg.schedule.total {
        let due = start + cfg.schedule.due(i);
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        while let Some(done) = tasks.try_join_next() {
            outcomes.extend(done.ok());
        }
        shared.pending.fetch_add(1, Ordering::Relaxed);
        let (sender, shared) = (sender.clone(), shared.clone());
        let (api, project, polls) = (api.clone(), project.clone(), polls.clone());
        let (retry, deadline, poll) = (cfg.retry, cfg.deadline, cfg.poll_interval);
        let sampled = cfg.schedule.is_sampled(i);
        tasks.spawn(async move {
            let lateness = due.elapsed();
            let (id, body) = bench_envelope(i as usize);
            let acked = send_with_retry(&sender, body, &retry, &shared.counters).await;
            shared.pending.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            let Ok(acked) = acked else {
                return Outcome {
                    lateness,
                    ack: None,
                    returned: None,
                };
            };
            let returned = if sampled {
                let found =
                    poll_returned(&api, &project, &id, &polls, poll, acked + deadline).await;
                Some(found.map(|at| (at - acked, at - due)))
            } else {
                None
            };
            Outcome {
                lateness,
                ack: Some(acked - due),
                returned,
            }
        });
    }
    let sent_in = start.elapsed();
    shared.scheduled.store(true, Ordering::Relaxed);
    while let Some(done) = tasks.join_next().await {
        outcomes.extend(done.ok());
    }
    let trace = monitor.await.unwrap_or_default();
    let sends = shared.counters.tally();
    let throughput = Throughput::from_trace(&trace, cfg.schedule.window, sends.accepted);

    let mut report = OpenLoopReport {
        sent_in,
        lateness: Stats::default(),
        relay_ack: Stats::default(),
        to_api: Stats::default(),
        due_to_api: Stats::default(),
        not_returned: 0,
        sends,
        throughput,
    };
    for o in outcomes {
        report.lateness.push(o.lateness);
        if let Some(ack) = o.ack {
            report.relay_ack.push(ack);
        }
        match o.returned {
            Some(Some((to_api, due_to_api))) => {
                report.to_api.push(to_api);
                report.due_to_api.push(due_to_api);
            }
            Some(None) => report.not_returned += 1,
            None => {}
        }
    }
    report
}

/// Poll the API for event `id` until it is returned (the instant it was) or `until` passes.
async fn poll_returned(
    api: &Api,
    project: &TestProject,
    id: &str,
    polls: &Semaphore,
    interval: Duration,
    until: Instant,
) -> Option<Instant> {
    loop {
        let found = {
            let _permit = polls.acquire().await.ok()?;
            event_returned(api, project, id).await
        };
        if found {
            return Some(Instant::now());
        }
        if Instant::now() > until {
            return None;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Count accepted and queryable events every [`MONITOR_INTERVAL`] until every send finished
/// and every accepted event is queryable, or `give_up` after `start` passed. `baseline` is
/// the count before the phase; a round the API did not answer is left out of the trace.
async fn monitor(
    api: Api,
    project: TestProject,
    baseline: u64,
    start: Instant,
    give_up: Duration,
    shared: Arc<Shared>,
) -> Vec<Progress> {
    let mut trace = Vec::new();
    let mut ticker = tokio::time::interval(MONITOR_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let done =
            shared.scheduled.load(Ordering::Relaxed) && shared.pending.load(Ordering::Relaxed) == 0;
        let accepted = shared.counters.accepted();
        if let Some(count) = total_issue_count(&api, &project).await {
            let queryable = count.saturating_sub(baseline);
            trace.push(Progress {
                at: start.elapsed(),
                accepted,
                queryable,
            });
            if done && queryable >= accepted {
                return trace;
            }
        }
        if start.elapsed() > give_up {
            return trace;
        }
    }
}
