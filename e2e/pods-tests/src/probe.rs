//! A throwaway busybox pod on the real node that tries TCP connections from inside a
//! namespace, so that tests see what that namespace's NetworkPolicies let through.
//!
//! ```text
//!   Probe::start(ns) --> pod `sleep` on the real node --> kubectl exec nc -w 3 HOST PORT -e true
//!                                                           exit 0: connected; "can't connect"
//!                                                           or "timed out": refused
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use kube::Client;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use crate::kubectl::{ToolError, Tools};
use crate::settings::Settings;
use crate::wait::{self, Check};
use crate::{Error, StepContext};

/// Seconds nc waits for a connection before it gives up (policies drop, they do not reject).
const CONNECT_TIMEOUT_SECS: u32 = 3;

/// What one connection attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    Connected,
    /// Refused or timed out, with nc's message.
    Refused(String),
}

/// A running busybox pod in `namespace`.
pub struct Probe {
    pub namespace: String,
    pub name: String,
    tools: Tools,
}

impl Probe {
    /// Start pod `name` (labels `labels`) in `namespace` on the real node; returns once it runs.
    pub async fn start(
        client: &Client,
        tools: &Tools,
        settings: &Settings,
        namespace: &str,
        name: &str,
    ) -> Result<Self, Error> {
        let image = std::env::var("SILO_BUSYBOX_IMAGE")
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::Unexpected(
                    "SILO_BUSYBOX_IMAGE is not set (the busybox test image on the real node); source the cluster's env file".into(),
                )
            })?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([(
                    "silo.dev/e2e".to_owned(),
                    "probe".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "probe".to_owned(),
                    image: Some(image),
                    image_pull_policy: Some("Never".to_owned()),
                    command: Some(vec!["sleep".to_owned(), "3600".to_owned()]),
                    ..Container::default()
                }],
                node_selector: Some(settings.node_selector()),
                tolerations: Some(settings.tolerations()),
                automount_service_account_token: Some(false),
                termination_grace_period_seconds: Some(0),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        pods.create(&PostParams::default(), &pod)
            .await
            .step(format!("create probe pod {namespace}/{name}"))?;
        wait::until(
            &format!("probe pod {namespace}/{name} to run"),
            Duration::from_secs(120),
            || async {
                let pod = pods.get(name).await?;
                let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
                Ok(if phase == "Running" {
                    Check::Done(())
                } else {
                    Check::Pending(phase)
                })
            },
        )
        .await?;
        Ok(Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            tools: tools.clone(),
        })
    }

    /// One TCP connection attempt from the pod to `host:port`.
    pub fn connect(&self, host: &str, port: u16) -> Result<Reach, Error> {
        let timeout = CONNECT_TIMEOUT_SECS.to_string();
        let port = port.to_string();
        let args = [
            "exec",
            "-n",
            &self.namespace,
            &self.name,
            "--",
            "nc",
            "-w",
            &timeout,
            host,
            &port,
            "-e",
            "true",
        ];
        match self.tools.kubectl(&args) {
            Ok(_) => Ok(Reach::Connected),
            // Only nc's own verdicts count as refused; anything else (a name that does not
            // resolve, exec failing) is an error, never a refusal.
            Err(ToolError::Failed { stderr, .. })
                if stderr.contains("can't connect") || stderr.contains("timed out") =>
            {
                Ok(Reach::Refused(stderr))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Wait until a connection to `host:port` gives `want` (policies are programmed
    /// asynchronously by the node's policy engine); the attempts made.
    pub async fn wait_reach(
        &self,
        host: &str,
        port: u16,
        want: bool,
        timeout: Duration,
    ) -> Result<u32, Error> {
        let mut attempts = 0;
        wait::until(
            &format!(
                "{}/{} -> {host}:{port} to be {}",
                self.namespace,
                self.name,
                if want { "connected" } else { "refused" }
            ),
            timeout,
            || {
                attempts += 1;
                let reach = self.connect(host, port);
                async move {
                    Ok(match reach {
                        Ok(Reach::Connected) if want => Check::Done(()),
                        Ok(Reach::Refused(_)) if !want => Check::Done(()),
                        other => Check::Pending(format!("{other:?}")),
                    })
                }
            },
        )
        .await?;
        Ok(attempts)
    }

    /// Send `request` (raw HTTP/1.0) to `host:port` from the pod; the response.
    pub fn http(&self, host: &str, port: u16, request: &str) -> Result<String, Error> {
        // busybox nc stops reading the answer once its input ends: the input stays open for
        // a few seconds after the request (the server answers and closes well within them).
        let script = format!("(printf '%s' \"$REQUEST\"; sleep 3) | nc -w 10 {host} {port}");
        let env = format!("REQUEST={request}");
        Ok(self.tools.kubectl(&[
            "exec",
            "-n",
            &self.namespace,
            &self.name,
            "--",
            "env",
            &env,
            "sh",
            "-c",
            &script,
        ])?)
    }

    /// Delete the pod (not waited for).
    pub async fn delete(self, client: &Client) -> Result<(), Error> {
        Api::<Pod>::namespaced(client.clone(), &self.namespace)
            .delete(&self.name, &DeleteParams::default())
            .await
            .step("delete the probe pod")?;
        Ok(())
    }
}
