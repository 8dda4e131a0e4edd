//! A built binary as a child process: output to a log file, readiness by `/readyz`, metrics
//! from `/metrics`, stopped by SIGTERM with a deadline or by SIGKILL, killed when dropped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process of a test; not running until [`Process::start`].
pub struct Process {
    pub name: String,
    pub program: PathBuf,
    /// Where `/readyz` and `/metrics` are served.
    pub admin_addr: SocketAddr,
    /// What the next start sets on top of the inherited environment (or instead of it, after
    /// [`Process::clear_env`]). `RUST_LOG=info` unless set.
    pub env: BTreeMap<String, String>,
    /// Where stdout and stderr go, appended across restarts.
    pub log: PathBuf,
    clear_env: bool,
    child: Option<Child>,
}

impl Process {
    /// `program` as `name`, logging to `$TMPDIR/silo-tests/<name>-<suffix>.log` (see
    /// [`Process::log_dir`]).
    pub fn new(name: &str, program: PathBuf, admin_addr: SocketAddr) -> Process {
        Process {
            name: name.to_owned(),
            program,
            admin_addr,
            env: BTreeMap::from([("RUST_LOG".to_owned(), "info".to_owned())]),
            log: log_path("silo-tests", name),
            clear_env: false,
            child: None,
        }
    }

    /// Add (or replace) environment variables.
    pub fn envs(mut self, env: &BTreeMap<String, String>) -> Process {
        self.env
            .extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// Start with only [`Process::env`] (and `PATH`), not the test's environment.
    pub fn clear_env(mut self) -> Process {
        self.clear_env = true;
        self
    }

    /// Log to `$TMPDIR/<suite>/<name>-<suffix>.log`.
    pub fn log_dir(mut self, suite: &str) -> Process {
        self.log = log_path(suite, &self.name);
        self
    }

    /// Start the process (again, after it exited, was killed or terminated); panics when it
    /// cannot.
    pub fn start(&mut self) {
        if let Some(dir) = self.log.parent() {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("clone log handle: {e}"));
        let mut cmd = Command::new(&self.program);
        if self.clear_env {
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        }
        cmd.envs(&self.env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} ({}): {e}",
                self.name,
                self.program.display()
            )
        });
        self.child = Some(child);
    }

    /// [`Process::start`], by value.
    pub fn started(mut self) -> Process {
        self.start();
        self
    }

    /// The OS process id while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last 30 lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Wait until `/readyz` answers 200; panics with the log tail when the process exits
    /// first or after `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("http://{}/readyz", self.admin_addr);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{} exited with {status} before becoming ready; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {timeout:?}; log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to commit or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to `timeout` for the exit (SIGKILL after it); whether it exited
    /// by itself with status 0.
    pub async fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The value of a counter or gauge on `/metrics`, summed over its label sets (0 when
    /// absent or unreachable).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_sum(&self.metrics_text().await, name)
    }

    /// The whole `/metrics` text ("" when unreachable).
    pub async fn metrics_text(&self) -> String {
        let url = format!("http://{}/metrics", self.admin_addr);
        match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Wait until the counter or gauge `name` reaches `at_least`; its value then. Panics with
    /// the last value after `timeout`.
    pub async fn wait_metric(&self, name: &str, at_least: f64, timeout: Duration) -> f64 {
        let what = format!("{name} >= {at_least} on {}", self.name);
        crate::wait::until(&what, timeout, || async {
            let value = self.metric(name).await;
            if value >= at_least {
                Ok(value)
            } else {
                Err(value.to_string())
            }
        })
        .await
    }
}

fn log_path(suite: &str, name: &str) -> PathBuf {
    std::env::temp_dir()
        .join(suite)
        .join(format!("{name}-{}.log", crate::unique_suffix()))
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sum of the samples named exactly `name` (any labels) in Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_summed_over_labels_by_exact_name() {
        let text = "# HELP x_total X.\nx_total{kind=\"a\"} 2\nx_total{kind=\"b\"} 3\n\
                    x_total_other 100\nx_total 1\n";
        assert_eq!(metric_sum(text, "x_total"), 6.0);
        assert_eq!(metric_sum(text, "missing"), 0.0);
    }
}
