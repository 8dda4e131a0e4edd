//! The `web` binary as a child process on a loopback port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use silo_testkit::{free_addr, profile_dir};

/// Build `web` with the profile of the running executable, once per process (skipped with
/// `SILO_SKIP_BUILD=1`).
pub fn ensure_built() {
    silo_testkit::ensure_built(&[("silo-web", "web")]);
}

/// A running `web` process; killed when dropped.
pub struct WebProcess {
    pub name: String,
    pub addr: SocketAddr,
    pub env: BTreeMap<String, String>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl WebProcess {
    /// Start `web` listening on `addr` with `env` (API and admin endpoints on one port).
    pub fn spawn(name: &str, addr: SocketAddr, env: BTreeMap<String, String>) -> Self {
        let log_dir = std::env::temp_dir().join("silo-multiregion-tests");
        std::fs::create_dir_all(&log_dir).unwrap_or_else(|e| panic!("log dir: {e}"));
        let log = log_dir.join(format!("{name}-{}.log", crate::unique_suffix()));
        let mut process = WebProcess {
            name: name.to_owned(),
            addr,
            env,
            log,
            child: None,
        };
        process.start();
        process
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// (Re)start with the current `env`.
    pub fn start(&mut self) {
        let path = silo_testkit::binary("silo-web", "web");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("clone log handle: {e}"));
        let mut cmd = Command::new(path);
        cmd.env_clear()
            .env("RUST_LOG", "info,sqlx=warn")
            .env("SILO_WEB_LISTEN", self.addr.to_string())
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start web for {}: {e}", self.name)),
        );
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Wait until `/readyz` answers 200; panics with the log tail after `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let url = format!("{}/readyz", self.base_url());
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

    /// SIGTERM and wait for the exit (SIGKILL after `timeout`).
    pub async fn stop(&mut self, timeout: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop, change the environment, start again and wait until ready.
    pub async fn restart_with(&mut self, changes: &[(&str, &str)], timeout: Duration) {
        self.stop(timeout).await;
        for (key, value) in changes {
            self.env.insert((*key).to_owned(), (*value).to_owned());
        }
        self.start();
        self.wait_ready(timeout).await;
    }
}

impl Drop for WebProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
