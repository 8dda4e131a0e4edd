//! The workload binaries as child processes.
//!
//! They are found next to the running executable's profile directory (`target/<profile>/`,
//! since tests run from `target/<profile>/deps/`). [`ensure_built`] runs `cargo build` for them
//! once per process (skipped with `SILO_SKIP_BUILD=1`, e.g. when CI built them before).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `(package, binary)` of every workload.
pub const WORKLOADS: [(&str, &str); 4] = [
    ("silo-web", "web"),
    ("silo-relay", "relay"),
    ("silo-consumers", "consumers"),
    ("silo-postprocess", "postprocess"),
];

pub use silo_testkit::{free_addr, profile_dir};

/// The package of a workload binary (see [`WORKLOADS`]).
fn package_of(bin: &str) -> &'static str {
    WORKLOADS
        .iter()
        .find(|(_, b)| *b == bin)
        .map(|(package, _)| *package)
        .unwrap_or_else(|| panic!("unknown workload binary {bin}"))
}

/// Build the named binaries (see [`WORKLOADS`]) with the profile of the running executable.
pub fn ensure_built(bins: &[&str]) {
    let binaries: Vec<(&str, &str)> = bins.iter().map(|bin| (package_of(bin), *bin)).collect();
    silo_testkit::ensure_built(&binaries);
}

/// A running workload; killed when dropped.
pub struct Binary {
    pub name: String,
    pub child: Child,
    /// Where `/healthz`, `/readyz`, `/metrics` are served.
    pub admin_addr: SocketAddr,
    pub log: PathBuf,
    env: BTreeMap<String, String>,
}

impl Binary {
    /// Start `bin` with `env` (plus `RUST_LOG=info` unless given); output goes to a log file.
    pub fn spawn(bin: &str, admin_addr: SocketAddr, env: &BTreeMap<String, String>) -> Self {
        let path = silo_testkit::binary(package_of(bin), bin);
        let log_dir = std::env::temp_dir().join("silo-pipeline-tests");
        std::fs::create_dir_all(&log_dir).unwrap_or_else(|e| panic!("log dir: {e}"));
        let log = log_dir.join(format!("{bin}-{}.log", crate::unique_suffix()));
        let child = Self::start(&path, &log, env);
        Binary {
            name: bin.to_owned(),
            child,
            admin_addr,
            log,
            env: env.clone(),
        }
    }

    fn start(path: &Path, log: &Path, env: &BTreeMap<String, String>) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("clone log handle: {e}"));
        let mut cmd = Command::new(path);
        cmd.env("RUST_LOG", "info")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()))
    }

    /// Start the same binary again with the same settings (after [`Binary::kill`]).
    pub fn restart(&mut self) {
        let path = profile_dir().join(&self.name);
        self.child = Self::start(&path, &self.log, &self.env);
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Wait until `/readyz` answers 200; panics with the log tail after `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("http://{}/readyz", self.admin_addr);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
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
            if Instant::now() >= deadline {
                panic!(
                    "{} not ready after {timeout:?}; log {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to commit or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `timeout` for the exit; returns whether it exited cleanly.
    pub async fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            if Instant::now() >= deadline {
                self.kill();
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of a counter or gauge on `/metrics` (sum over label sets).
    pub async fn metric(&self, name: &str) -> f64 {
        let url = format!("http://{}/metrics", self.admin_addr);
        let body = match reqwest::get(&url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return 0.0,
        };
        body.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        self.kill();
    }
}
