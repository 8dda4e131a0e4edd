//! CPU time of the cluster's processes and the operator over a phase, read from `/proc`.
//!
//! ```text
//!  <cluster dir>/pids/<component> (written by e2e/cluster/up.sh) + the operator's pid
//!    ─► utime + stime at the phase's start and end ─► seconds per process, share of the wall
//! ```
//!
//! On a shared machine this says whose work a slow phase waited on: the operator's or the
//! cluster's own controllers'.

use std::path::Path;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/<pid>/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds of one process so far (`None` when it is gone or unreadable).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ticks(&stat)? as f64 / TICKS_PER_SECOND)
}

/// utime + stime of a `/proc/<pid>/stat` line.
fn ticks(stat: &str) -> Option<u64> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The processes watched: the cluster's components (when the kubeconfig sits in a cluster
/// directory of `e2e/cluster/up.sh`) and the operator.
#[derive(Clone, Debug)]
pub struct Processes(Vec<(String, u32)>);

impl Processes {
    pub fn of(kubeconfig: Option<&Path>, operator: u32) -> Self {
        let mut procs = Vec::new();
        let pids = kubeconfig.and_then(Path::parent).map(|d| d.join("pids"));
        for name in [
            "kube-apiserver",
            "etcd",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        ] {
            let pid = pids
                .as_ref()
                .and_then(|d| std::fs::read_to_string(d.join(name)).ok())
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(pid) = pid {
                procs.push((name.to_owned(), pid));
            }
        }
        procs.push(("silo-operator".to_owned(), operator));
        Self(procs)
    }

    /// Replace the operator's pid (after a restart), keeping what the old one used.
    pub fn operator_restarted(&mut self, sample: &mut Sample, pid: u32) {
        if let Some(i) = self.0.iter().position(|(n, _)| n == "silo-operator") {
            let used = cpu_seconds(self.0[i].1).unwrap_or(0.0) - sample.at[i];
            sample.carried[i] += used.max(0.0);
            self.0[i].1 = pid;
            sample.at[i] = cpu_seconds(pid).unwrap_or(0.0);
        }
    }

    pub fn sample(&self) -> Sample {
        Sample {
            at: self
                .0
                .iter()
                .map(|(_, pid)| cpu_seconds(*pid).unwrap_or(0.0))
                .collect(),
            carried: vec![0.0; self.0.len()],
            wall: Instant::now(),
        }
    }

    /// CPU seconds of each process since `start`, and the wall time.
    pub fn since(&self, start: &Sample) -> Usage {
        let now = self.sample();
        Usage {
            wall: start.wall.elapsed(),
            seconds: self
                .0
                .iter()
                .enumerate()
                .map(|(i, (name, _))| {
                    let used = (now.at[i] - start.at[i]).max(0.0) + start.carried[i];
                    (name.clone(), used)
                })
                .collect(),
        }
    }
}

/// CPU counters at one instant.
#[derive(Clone, Debug)]
pub struct Sample {
    at: Vec<f64>,
    /// CPU seconds of processes that were replaced since (the killed operator).
    carried: Vec<f64>,
    wall: Instant,
}

/// CPU seconds per process over a phase.
#[derive(Clone, Debug)]
pub struct Usage {
    pub wall: Duration,
    pub seconds: Vec<(String, f64)>,
}

impl Usage {
    /// `name 12.3 s (0.41 cores)` for every process, in one line.
    pub fn line(&self) -> String {
        let wall = self.wall.as_secs_f64().max(f64::EPSILON);
        self.seconds
            .iter()
            .map(|(n, s)| format!("{n} {s:.0} s ({:.2})", s / wall))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_after_a_command_name_with_spaces() {
        let line = "4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 12 0 100 0 0";
        assert_eq!(ticks(line), Some(1234 + 567));
        assert_eq!(ticks("4242 (short) S 1"), None);
        assert!(cpu_seconds(std::process::id()).is_some());
        assert!(cpu_seconds(u32::MAX).is_none());
    }
}
