//! The four bundled workloads and their per-region sizing.

use k8s_openapi::api::core::v1::ResourceRequirements;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One of the four binaries every region silo runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    Relay,
    Consumers,
    Web,
    Postprocess,
}

impl Workload {
    /// Every workload, in a stable order.
    pub const ALL: [Workload; 4] = [
        Workload::Relay,
        Workload::Consumers,
        Workload::Web,
        Workload::Postprocess,
    ];

    /// The Deployment name and the binary name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Relay => "relay",
            Workload::Consumers => "consumers",
            Workload::Web => "web",
            Workload::Postprocess => "postprocess",
        }
    }

    /// The port the workload listens on, when it serves HTTP traffic through a Service.
    pub fn service_port(self) -> Option<i32> {
        match self {
            Workload::Relay => Some(3000),
            Workload::Web => Some(8000),
            Workload::Consumers | Workload::Postprocess => None,
        }
    }
}

/// Replicas and resources of one workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// Number of pods for this workload. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// CPU and memory requests and limits of the workload container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Sizing of each workload of a region silo; workloads left out use one replica and no limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadsSpec {
    /// Ingest endpoint (`/api/<project>/envelope/`): DSN auth, quotas, produces to Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<WorkloadSpec>,
    /// Kafka consumers that normalize, group and store events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<WorkloadSpec>,
    /// The region's HTTP API (organizations, projects, issues, relay project configs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WorkloadSpec>,
    /// Post-processing: alert rules and notifications on the event stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postprocess: Option<WorkloadSpec>,
}

impl WorkloadsSpec {
    /// The sizing of `workload`, if the spec gives one.
    pub fn get(&self, workload: Workload) -> Option<&WorkloadSpec> {
        match workload {
            Workload::Relay => self.relay.as_ref(),
            Workload::Consumers => self.consumers.as_ref(),
            Workload::Web => self.web.as_ref(),
            Workload::Postprocess => self.postprocess.as_ref(),
        }
    }
}
