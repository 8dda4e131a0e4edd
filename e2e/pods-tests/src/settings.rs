//! What the scenarios run, from the environment (defaults: the local cluster's real node).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

/// Images, pull policy and where real pods go.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Tag of the workload and operator images (`SILO_IMAGE_TAG`, default the crate version,
    /// which is the version `e2e/images/build.sh` tags them with).
    pub image_tag: String,
    /// `SILO_IMAGE_PULL_POLICY` (default `Never`: images are loaded onto the node, there is no
    /// registry).
    pub pull_policy: String,
    /// `SILO_POSTGRES_IMAGE` (default `silo.local/postgres:15`, built by `e2e/images/build.sh`).
    pub postgres_image: String,
    /// `SILO_REDIS_IMAGE` (default `silo.local/redis:7`).
    pub redis_image: String,
    /// `SILO_KAFKA_IMAGE` (default `silo.local/kafka:4.1.1`).
    pub kafka_image: String,
}

/// Label and taint of the nodes that really run containers (the local cluster's real node,
/// kind's worker); kwok's fake nodes carry neither.
pub const REAL_NODE_LABEL: (&str, &str) = ("silo.dev/node", "real");

impl Settings {
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Self {
            image_tag: var("SILO_IMAGE_TAG", env!("CARGO_PKG_VERSION")),
            pull_policy: var("SILO_IMAGE_PULL_POLICY", "Never"),
            postgres_image: var("SILO_POSTGRES_IMAGE", "silo.local/postgres:15"),
            redis_image: var("SILO_REDIS_IMAGE", "silo.local/redis:7"),
            kafka_image: var("SILO_KAFKA_IMAGE", "silo.local/kafka:4.1.1"),
        }
    }

    /// `ControlPlane.spec.infrastructure.images` for the locally built store images.
    pub fn store_images(&self) -> serde_json::Value {
        serde_json::json!({
            "postgres": self.postgres_image,
            "redis": self.redis_image,
            "kafka": self.kafka_image,
        })
    }

    /// `ControlPlane.spec.pods`: pull policy and real-node placement.
    pub fn pods(&self) -> serde_json::Value {
        serde_json::json!({
            "imagePullPolicy": self.pull_policy,
            "nodeSelector": self.node_selector(),
            "tolerations": self.tolerations(),
        })
    }

    /// `spec.nodeSelector` of every real pod.
    pub fn node_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(REAL_NODE_LABEL.0.to_owned(), REAL_NODE_LABEL.1.to_owned())])
    }

    /// `spec.tolerations` of every real pod.
    pub fn tolerations(&self) -> Vec<Toleration> {
        vec![Toleration {
            key: Some(REAL_NODE_LABEL.0.to_owned()),
            operator: Some("Equal".to_owned()),
            value: Some(REAL_NODE_LABEL.1.to_owned()),
            effect: Some("NoSchedule".to_owned()),
            ..Toleration::default()
        }]
    }
}
