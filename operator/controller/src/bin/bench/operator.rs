//! The operator under test: started as a child process, read through `/metrics` and `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cluster::until;

/// A running `silo-operator`, stopped on drop.
pub struct Operator {
    child: Child,
    base: String,
    http: reqwest::Client,
    pub log: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    /// Start `binary` against `kubeconfig` (or the inferred config) and wait for `/healthz`.
    pub async fn start(
        binary: &Path,
        kubeconfig: Option<&Path>,
        port: u16,
        concurrency: usize,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(binary);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--concurrency", &concurrency.to_string()])
            // One operator, and restarts measured without waiting for a Lease to expire.
            .arg("--leader-elect=false")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        if let Some(path) = kubeconfig {
            command.arg("--kubeconfig").arg(path);
        }
        let child = command.spawn().map_err(|e| {
            anyhow::anyhow!(
                "cannot start {} ({e}); build it with `cargo build --release -p silo-operator`",
                binary.display()
            )
        })?;
        let operator = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            log,
        };
        let healthz = format!("{}/healthz", operator.base);
        until("operator /healthz", Duration::from_secs(30), || async {
            let ok = operator.http.get(&healthz).send().await.ok()?;
            ok.status().is_success().then_some(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}; see {}", operator.log.display()))?;
        Ok(operator)
    }

    /// Requests the operator has sent to the API server: (all, writes, of those writes the
    /// child objects it applied or created).
    pub async fn requests(&self) -> anyhow::Result<(f64, f64, f64)> {
        let body = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let (all, writes) = count_requests(&body);
        Ok((all, writes, child_writes(&body)))
    }

    /// SIGKILL the process and reap it.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Peak and current resident set size in MiB (`VmHWM`, `VmRSS`).
    pub fn memory_mib(&self) -> anyhow::Result<(f64, f64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> f64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(f64::NAN, |kib| kib / 1024.0)
        };
        Ok((field("VmHWM:"), field("VmRSS:")))
    }
}

/// Sum `silo_operator_api_requests_total` samples: (all methods, write methods).
fn count_requests(metrics: &str) -> (f64, f64) {
    let mut all = 0.0;
    let mut writes = 0.0;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("silo_operator_api_requests_total{") else {
            continue;
        };
        let Some(value) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        all += value;
        if ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .any(|m| rest.contains(&format!("method=\"{m}\"")))
        {
            writes += value;
        }
    }
    (all, writes)
}

/// Sum `silo_operator_child_applies_total` samples with `outcome="applied"`.
fn child_writes(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("silo_operator_child_applies_total{") && l.contains("outcome=\"applied\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::{child_writes, count_requests};

    #[test]
    fn counts_writes_apart_from_reads() {
        let body = "# TYPE silo_operator_api_requests counter\n\
            silo_operator_api_requests_total{method=\"GET\"} 10\n\
            silo_operator_api_requests_total{method=\"PATCH\"} 7\n\
            silo_operator_api_requests_total{method=\"POST\"} 2\n\
            silo_operator_reconciles_total{controller=\"region\"} 99\n";
        assert_eq!(count_requests(body), (19.0, 9.0));
        let applies = "silo_operator_child_applies_total{kind=\"Deployment\",outcome=\"applied\"} 4\n\
            silo_operator_child_applies_total{kind=\"Deployment\",outcome=\"unchanged\"} 8\n\
            silo_operator_child_applies_total{kind=\"Service\",outcome=\"applied\"} 2\n";
        assert_eq!(child_writes(applies), 6.0);
    }
}
