//! The cluster's own command-line tools (`kubectl`, `helm`) run against the test kubeconfig,
//! and `kubectl port-forward` as a guard that stops the forward when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

/// A tool could not be run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error(
        "cannot run {tool}: {source} (source the cluster's env file, or set SILO_KUBECTL / SILO_HELM)"
    )]
    Spawn {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("kubectl port-forward {target}: {reason}")]
    PortForward { target: String, reason: String },
}

/// `kubectl` and `helm` bound to one kubeconfig.
#[derive(Clone, Debug)]
pub struct Tools {
    pub kubeconfig: PathBuf,
    kubectl: String,
    helm: String,
}

impl Tools {
    pub fn new(kubeconfig: &Path) -> Self {
        let tool = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.into());
        Self {
            kubeconfig: kubeconfig.to_owned(),
            kubectl: tool("SILO_KUBECTL", "kubectl"),
            helm: tool("SILO_HELM", "helm"),
        }
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(tool);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<String, ToolError> {
        let output: Output = self
            .command(tool, args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ToolError::Spawn {
                tool: tool.to_owned(),
                source,
            })?;
        if !output.status.success() {
            return Err(ToolError::Failed {
                command: format!("{tool} {}", args.join(" ")),
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `kubectl ARGS...`, its stdout.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, ToolError> {
        self.run(&self.kubectl, args)
    }

    /// `helm ARGS...`, its stdout.
    pub fn helm(&self, args: &[&str]) -> Result<String, ToolError> {
        self.run(&self.helm, args)
    }

    /// `kubectl ARGS...` as a running child with its stdout piped, killed when dropped.
    pub fn spawn_kubectl(&self, args: &[&str]) -> Result<tokio::process::Child, ToolError> {
        tokio::process::Command::from(self.command(&self.kubectl, args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ToolError::Spawn {
                tool: self.kubectl.clone(),
                source,
            })
    }

    /// Forward a free loopback port to `target` (e.g. `svc/web`) port `port` in `namespace`.
    pub async fn port_forward(
        &self,
        namespace: &str,
        target: &str,
        port: u16,
    ) -> Result<PortForward, ToolError> {
        let fail = |reason: String| ToolError::PortForward {
            target: format!("-n {namespace} {target}"),
            reason,
        };
        let mut child = tokio::process::Command::from(self.command(
            &self.kubectl,
            &[
                "port-forward",
                "--address",
                "127.0.0.1",
                "-n",
                namespace,
                target,
                &format!(":{port}"),
            ],
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        // "Forwarding from 127.0.0.1:40123 -> 8000"
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| fail("no forwarding line within 30s".into()))?
            .map_err(|e| fail(e.to_string()))?
            .ok_or_else(|| fail("exited before forwarding".into()))?;
        let local = line
            .strip_prefix("Forwarding from 127.0.0.1:")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| fail(format!("unexpected output {line:?}")))?;
        // Keep draining stdout so the forward never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(PortForward {
            _child: child,
            url: format!("http://127.0.0.1:{local}"),
        })
    }
}

/// A running `kubectl port-forward`; stopped on drop.
pub struct PortForward {
    _child: tokio::process::Child,
    /// `http://127.0.0.1:<local port>`.
    pub url: String,
}

/// Runs a command when dropped (cleanup that must happen even when an assertion fails).
pub struct OnDrop(Option<Box<dyn FnOnce() + Send>>);

impl OnDrop {
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}
