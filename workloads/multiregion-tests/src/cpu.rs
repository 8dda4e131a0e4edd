//! CPU time a process has used so far, for per-request cost figures that hold on a shared
//! machine (throughput there depends on what else runs; CPU spent per request much less).
//!
//! ```text
//!  /proc/<pid>/task/*/schedstat ─► first field (ns on a CPU) summed over the live threads
//! ```

use std::time::Duration;

/// CPU time used by the live threads of process `pid` (`None` when it cannot be read).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += parse_schedstat(&stat).unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
}

/// CPU time of this process.
pub fn own_cpu_time() -> Option<Duration> {
    cpu_time(std::process::id())
}

fn parse_schedstat(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_time_on_cpu() {
        assert_eq!(parse_schedstat("123456 789 10\n"), Some(123_456));
        assert_eq!(parse_schedstat(""), None);
        assert!(own_cpu_time().is_some_and(|t| t > Duration::ZERO));
    }
}
