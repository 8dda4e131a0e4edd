//! The `web` binary as a child process on a loopback port (API and admin endpoints on one).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use silo_testkit::Process;

/// Build `web` with the profile of the running executable, once per process (skipped with
/// `SILO_SKIP_BUILD=1`).
pub fn ensure_built() {
    silo_testkit::ensure_built(&[("silo-web", "web")]);
}

/// A running `web` process with only the given environment; killed when dropped.
pub struct WebProcess {
    /// Where it listens (`SILO_WEB_LISTEN`) at the next start.
    pub addr: SocketAddr,
    pub process: Process,
}

impl WebProcess {
    /// Start `web` listening on `addr` with `env`; its output goes to
    /// `$TMPDIR/silo-multiregion-tests/<name>-<suffix>.log`.
    pub fn spawn(name: &str, addr: SocketAddr, env: BTreeMap<String, String>) -> Self {
        let log_level = BTreeMap::from([("RUST_LOG".to_owned(), "info,sqlx=warn".to_owned())]);
        let process = Process::new(name, silo_testkit::binary("silo-web", "web"), addr)
            .log_dir("silo-multiregion-tests")
            .clear_env()
            .envs(&log_level)
            .envs(&env);
        let mut web = WebProcess { addr, process };
        web.start();
        web
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// (Re)start on the current `addr` with the current environment.
    pub fn start(&mut self) {
        self.process.admin_addr = self.addr;
        self.process
            .env
            .insert("SILO_WEB_LISTEN".to_owned(), self.addr.to_string());
        self.process.start();
    }

    /// Wait until `/readyz` answers 200; panics with the log tail after `timeout`.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        self.process.wait_ready(timeout).await;
    }

    /// SIGTERM and wait for the exit (SIGKILL after `timeout`).
    pub async fn stop(&mut self, timeout: Duration) {
        self.process.terminate(timeout).await;
    }

    /// Stop, change the environment, start again and wait until ready.
    pub async fn restart_with(&mut self, changes: &[(&str, &str)], timeout: Duration) {
        self.stop(timeout).await;
        for (key, value) in changes {
            self.process
                .env
                .insert((*key).to_owned(), (*value).to_owned());
        }
        self.start();
        self.wait_ready(timeout).await;
    }
}
