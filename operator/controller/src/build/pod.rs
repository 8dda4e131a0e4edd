//! Workload Deployments and Services with the full silo contract in every pod template.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, EnvVar, EnvVarSource, PodSpec, PodTemplateSpec, Secret,
    SecretKeySelector, Service, ServicePort, ServiceSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use silo_api::{PodSettings, StoreImages, Workload, WorkloadSpec};
use silo_contract::{RegionConfigSource, RegionDirectory, SiloMode, env};

use super::{GeneratedSecret, Owner, container, content_hash};
use crate::infra::SiloInfra;
use crate::labels;

/// Where and as what a set of workloads runs.
#[derive(Clone, Debug)]
pub struct Silo<'a> {
    pub mode: SiloMode,
    pub namespace: &'a str,
    /// `SENTRY_REGION` (region silo and monolith).
    pub region: Option<&'a str>,
    /// `SENTRY_MONOLITH_REGION`.
    pub monolith_region: Option<&'a str>,
    /// `SENTRY_CONTROL_ADDRESS`.
    pub control_address: &'a str,
    /// Full image reference (`repo:tag`).
    pub image: &'a str,
    pub version: &'a str,
    pub owner: &'a Owner,
    /// Pull policy and placement of the pods.
    pub pods: &'a PodSettings,
    /// How the silo's stores are provided.
    pub infra: &'a SiloInfra,
    /// Images of the managed stores.
    pub images: &'a StoreImages,
    /// Public base URL of the silo's API (links, permalinks).
    pub api_url: &'a str,
    /// Public base URL of ingest (the DSN host); unused by the control silo.
    pub ingest_url: &'a str,
    /// Hash of the `RPC_SHARED_SECRET` list the pods read, once the fleet's key has been
    /// rotated: on the Deployment and its pod template, so that a new list rolls the pods and
    /// the rotation sees which silos run it.
    pub rpc_hash: Option<&'a str>,
}

impl Silo<'_> {
    /// `spec.nodeSelector` of every pod of the silo (workloads, stores, migrations).
    pub fn node_selector(&self) -> Option<BTreeMap<String, String>> {
        (!self.pods.node_selector.is_empty()).then(|| self.pods.node_selector.clone())
    }

    /// `spec.tolerations` of every pod of the silo.
    pub fn tolerations(&self) -> Option<Vec<k8s_openapi::api::core::v1::Toleration>> {
        (!self.pods.tolerations.is_empty()).then(|| self.pods.tolerations.clone())
    }
}

/// Internal address of a region's web Service.
pub fn region_address(namespace: &str) -> String {
    format!("http://web.{namespace}.svc:{}", web_port())
}

/// Internal address of a region's relay Service.
pub fn relay_address(namespace: &str) -> String {
    let port = Workload::Relay.service_port().unwrap_or(3000);
    format!("http://relay.{namespace}.svc:{port}")
}

/// Internal address of the control silo's web Service.
pub fn control_address(namespace: &str) -> String {
    format!("http://web.{namespace}.svc:{}", web_port())
}

fn web_port() -> i32 {
    Workload::Web.service_port().unwrap_or(8000)
}

pub(super) fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

pub(super) fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// The silo contract as container env vars, plus the relay secret for relay and web.
pub fn contract_env(silo: &Silo<'_>, workload: Workload) -> Vec<EnvVar> {
    let directory_file = std::path::Path::new(labels::DIRECTORY_MOUNT).join(labels::DIRECTORY_KEY);
    let mut vars = vec![plain_env(env::SILO_MODE, silo.mode.as_str())];
    if let Some(region) = silo.region {
        vars.push(plain_env(env::REGION, region));
    }
    vars.push(plain_env(
        env::REGION_CONFIG,
        &RegionConfigSource::file_value(&directory_file),
    ));
    if let Some(monolith) = silo.monolith_region {
        vars.push(plain_env(env::MONOLITH_REGION, monolith));
    }
    vars.push(plain_env(env::CONTROL_ADDRESS, silo.control_address));
    vars.push(secret_env(
        env::RPC_SHARED_SECRET,
        labels::RPC_SECRET,
        labels::RPC_SECRET_KEY,
    ));
    if silo.mode != SiloMode::Control && matches!(workload, Workload::Relay | Workload::Web) {
        vars.push(secret_env(
            labels::RELAY_SECRET_ENV,
            labels::RELAY_SECRET,
            labels::RELAY_SECRET_KEY,
        ));
    }
    vars
}

fn selector_labels(silo: &Silo<'_>, workload: Workload) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_owned(), workload.name().to_owned()),
        (silo.owner.label.0.to_owned(), silo.owner.label.1.clone()),
    ])
}

/// The Deployment of `workload`, with `extra_env` appended to the contract.
pub fn deployment(
    silo: &Silo<'_>,
    workload: Workload,
    sizing: Option<&WorkloadSpec>,
    extra_env: Vec<EnvVar>,
) -> Deployment {
    let selector = selector_labels(silo, workload);
    let mut pod_labels = selector.clone();
    pod_labels.insert(labels::PART_OF.to_owned(), labels::PART_OF_VALUE.to_owned());
    // The operator watches its pods (by this label) to report why one cannot run.
    pod_labels.insert(
        labels::MANAGED_BY.to_owned(),
        labels::MANAGED_BY_VALUE.to_owned(),
    );
    pod_labels.insert(labels::VERSION.to_owned(), silo.version.to_owned());
    let container = container::container(silo, workload, sizing, extra_env);
    let mut metadata = silo
        .owner
        .meta(Some(silo.namespace), workload.name(), workload.name());
    if let Some(l) = metadata.labels.as_mut() {
        l.insert(labels::VERSION.to_owned(), silo.version.to_owned());
    }
    if let Some(hash) = silo.rpc_hash {
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(labels::RPC_SECRETS_HASH.to_owned(), hash.to_owned());
    }
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(sizing.and_then(|s| s.replicas).unwrap_or(1)),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: template_annotations(silo),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    service_account_name: Some(super::SERVICE_ACCOUNT.to_owned()),
                    automount_service_account_token: Some(false),
                    // Service links would add a variable per Service of the namespace.
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(container::TERMINATION_GRACE_SECONDS),
                    node_selector: silo.node_selector(),
                    tolerations: silo.tolerations(),
                    volumes: Some(
                        std::iter::once(Volume {
                            name: "directory".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: labels::DIRECTORY_CONFIGMAP.to_owned(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        })
                        .chain(container::ca_volumes(silo).into_iter().map(|(v, _)| v))
                        .collect(),
                    ),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// Pod template annotations whose change rolls the pods: the external stores' connections and
/// the RPC key list (variables read from Secrets are fixed when a container starts).
fn template_annotations(silo: &Silo<'_>) -> Option<BTreeMap<String, String>> {
    let mut annotations = BTreeMap::new();
    if let Some(connections) = silo.infra.external_connections() {
        annotations.insert(
            labels::CONNECTIONS_HASH.to_owned(),
            content_hash(&connections),
        );
    }
    if let Some(hash) = silo.rpc_hash {
        annotations.insert(labels::RPC_SECRETS_HASH.to_owned(), hash.to_owned());
    }
    (!annotations.is_empty()).then_some(annotations)
}

/// The Service in front of `workload`, if it serves HTTP.
pub fn service(silo: &Silo<'_>, workload: Workload) -> Option<Service> {
    let port = workload.service_port()?;
    Some(Service {
        metadata: silo
            .owner
            .meta(Some(silo.namespace), workload.name(), workload.name()),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(silo, workload)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port,
                target_port: Some(IntOrString::String("http".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// A region directory as it is published: the JSON of the mounted file and the hash of that
/// content (the ConfigMap annotation finalizers compare), rendered once per directory rather
/// than once per silo that mounts it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublishedDirectory {
    pub json: String,
    pub hash: String,
}

impl PublishedDirectory {
    pub fn of(directory: &RegionDirectory) -> Self {
        let json = directory.to_json();
        let hash = content_hash(&json);
        Self { json, hash }
    }
}

/// The region directory as a ConfigMap mounted by every pod of the namespace.
pub fn directory_configmap(
    owner: &Owner,
    namespace: &str,
    directory: &PublishedDirectory,
) -> ConfigMap {
    let mut meta = owner.meta(Some(namespace), labels::DIRECTORY_CONFIGMAP, "directory");
    meta.annotations = Some(BTreeMap::from([(
        labels::DIRECTORY_HASH.to_owned(),
        directory.hash.clone(),
    )]));
    ConfigMap {
        metadata: meta,
        data: Some(BTreeMap::from([(
            labels::DIRECTORY_KEY.to_owned(),
            directory.json.clone(),
        )])),
        ..ConfigMap::default()
    }
}

/// A copy of the fleet's RPC secret list in a silo namespace.
pub fn rpc_secret_copy(owner: &Owner, namespace: &str, secrets: &str) -> Secret {
    Secret {
        metadata: owner.meta(Some(namespace), labels::RPC_SECRET, "rpc-secret"),
        data: Some(BTreeMap::from([(
            labels::RPC_SECRET_KEY.to_owned(),
            ByteString(secrets.as_bytes().to_vec()),
        )])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// A Secret the apply step creates once with a random value under `key`.
pub fn generated_secret(
    owner: &Owner,
    namespace: &str,
    name: &str,
    key: &str,
    component: &str,
) -> GeneratedSecret {
    GeneratedSecret {
        secret: Secret {
            metadata: owner.meta(Some(namespace), name, component),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        },
        key: key.to_owned(),
        fixed: BTreeMap::new(),
        derived: BTreeMap::new(),
    }
}
