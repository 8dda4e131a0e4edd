//! The workload container: the binary, the settings it needs beyond the silo contract, its
//! ports, probes, resources and a locked-down security context.
//!
//! Every value a binary requires is written here or in [`super::pod::contract_env`]; the
//! `pod_config` test parses each binary's own command line from exactly this environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, KeyToPath, Lifecycle,
    LifecycleHandler, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, SleepAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use silo_api::{Store, Workload, WorkloadSpec};
use silo_contract::SiloMode;

use super::pod::{Silo, contract_env, plain_env, region_address, secret_env};
use crate::infra::{Provided, connection_secret, external};
use crate::labels;

/// Port of `/healthz`, `/readyz` and `/metrics` for workloads without an HTTP Service.
pub const ADMIN_PORT: i32 = 9000;
/// How long a binary drains in-flight work after SIGTERM (`SILO_SHUTDOWN_TIMEOUT`).
pub const SHUTDOWN_TIMEOUT_SECONDS: i64 = 20;
/// How long a terminating relay or web pod keeps serving before it is told to stop: the time
/// for its Service's endpoints to drop it everywhere, so no new connection reaches a pod that
/// no longer accepts (a rolling update fails no request).
pub const PRE_STOP_SECONDS: i64 = 5;
/// The pod's grace period: the pre-stop wait, the drain, and time for the kubelet and the
/// process to exit.
pub const TERMINATION_GRACE_SECONDS: i64 = PRE_STOP_SECONDS + SHUTDOWN_TIMEOUT_SECONDS + 10;
/// The non-root user and group the workload image is built for.
pub const RUN_AS: i64 = 65532;

/// The named container port serving the probes of `workload`.
fn probe_port(workload: Workload) -> (&'static str, i32) {
    match workload.service_port() {
        Some(port) => ("http", port),
        None => ("admin", ADMIN_PORT),
    }
}

/// The env var `name` read from the connection Secret of `store`, when the silo has it.
fn store_env(silo: &Silo<'_>, store: Store, name: &str) -> Option<EnvVar> {
    let provided = silo.infra.get(store)?;
    let (secret, key) = connection_secret(store, provided);
    Some(secret_env(name, &secret, &key))
}

/// Kafka's security settings for an external Kafka with TLS or SASL: the protocol, the SASL
/// mechanism and credentials (read from the connection Secret) and the mounted CA bundle.
pub fn kafka_security_env(silo: &Silo<'_>) -> Vec<EnvVar> {
    let Some(provided @ Provided::External { data, .. }) = silo.infra.get(Store::Kafka) else {
        return Vec::new();
    };
    let (secret, _) = connection_secret(Store::Kafka, provided);
    let mut env = Vec::new();
    if let Some(protocol) = data.get(external::KAFKA_PROTOCOL_KEY) {
        env.push(plain_env("KAFKA_SECURITY_PROTOCOL", protocol));
    }
    if let Some(mechanism) = data.get(external::KAFKA_MECHANISM_KEY) {
        env.push(plain_env("KAFKA_SASL_MECHANISM", mechanism));
        env.push(secret_env(
            "KAFKA_SASL_USERNAME",
            &secret,
            external::KAFKA_USERNAME_KEY,
        ));
        env.push(secret_env(
            "KAFKA_SASL_PASSWORD",
            &secret,
            external::KAFKA_PASSWORD_KEY,
        ));
    }
    if data.contains_key(external::CA_BUNDLE_KEY) {
        env.push(plain_env(
            "KAFKA_SSL_CA_LOCATION",
            &external::ca_bundle_path(Store::Kafka),
        ));
    }
    env
}

/// The CA bundle file of an external Redis, when its Secret names one.
fn redis_ca_env(silo: &Silo<'_>) -> Option<EnvVar> {
    match silo.infra.get(Store::Redis)? {
        Provided::External { data, .. } if data.contains_key(external::CA_BUNDLE_KEY) => Some(
            plain_env("REDIS_CA_FILE", &external::ca_bundle_path(Store::Redis)),
        ),
        _ => None,
    }
}

/// The volumes holding the CA bundles of the silo's external stores, and their mounts.
pub fn ca_volumes(silo: &Silo<'_>) -> Vec<(Volume, VolumeMount)> {
    silo.infra
        .stores()
        .filter_map(|(store, provided)| match provided {
            Provided::External { data, .. } if data.contains_key(external::CA_BUNDLE_KEY) => {
                let (secret, _) = connection_secret(store, provided);
                let name = format!("{}-ca", store.name());
                let volume = Volume {
                    name: name.clone(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret),
                        items: Some(vec![KeyToPath {
                            key: external::CA_BUNDLE_KEY.to_owned(),
                            path: external::CA_BUNDLE_KEY.to_owned(),
                            ..KeyToPath::default()
                        }]),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                };
                let mount = VolumeMount {
                    name,
                    mount_path: format!("/etc/silo/stores/{}", store.name()),
                    read_only: Some(true),
                    ..VolumeMount::default()
                };
                Some((volume, mount))
            }
            _ => None,
        })
        .collect()
}

/// Settings of `workload` beyond the silo contract: where it listens and what it talks to.
/// Migrations run in the version's migration Job, not at start.
pub fn workload_env(silo: &Silo<'_>, workload: Workload) -> Vec<EnvVar> {
    let ns = silo.namespace;
    let mut env = vec![
        plain_env("SILO_LOG_FORMAT", "json"),
        plain_env(
            "SILO_SHUTDOWN_TIMEOUT",
            &format!("{SHUTDOWN_TIMEOUT_SECONDS}s"),
        ),
    ];
    let listen = |port: i32| format!("0.0.0.0:{port}");
    let database = store_env(silo, Store::Postgres, "DATABASE_URL");
    let kafka = store_env(silo, Store::Kafka, "KAFKA_BROKERS");
    match workload {
        Workload::Relay => {
            env.push(plain_env("SILO_RELAY_LISTEN", &listen(3000)));
            // The region's own web serves relay its project configs.
            env.push(plain_env("SILO_RELAY_UPSTREAM_URL", &region_address(ns)));
            env.extend(kafka);
            env.extend(kafka_security_env(silo));
            env.extend(store_env(silo, Store::Redis, "REDIS_URL"));
            env.extend(redis_ca_env(silo));
        }
        Workload::Web => {
            env.push(plain_env("SILO_WEB_LISTEN", &listen(8000)));
            env.extend(database);
            env.push(plain_env("SILO_WEB_MIGRATE_ON_START", "false"));
            env.push(plain_env("SILO_WEB_PUBLIC_URL", silo.api_url));
            if silo.mode != SiloMode::Region {
                env.push(secret_env(
                    "SILO_BOOTSTRAP_TOKEN",
                    labels::BOOTSTRAP_SECRET,
                    labels::BOOTSTRAP_SECRET_KEY,
                ));
            }
            if silo.mode != SiloMode::Control {
                env.push(plain_env("SILO_RELAY_PUBLIC_URL", silo.ingest_url));
            }
        }
        Workload::Consumers => {
            env.push(plain_env("SILO_ADMIN_ADDR", &listen(ADMIN_PORT)));
            env.extend(database);
            env.extend(kafka);
            env.extend(kafka_security_env(silo));
            env.push(plain_env("SILO_MIGRATE", "false"));
        }
        Workload::Postprocess => {
            env.push(plain_env("SILO_ADMIN_ADDR", &listen(ADMIN_PORT)));
            env.extend(database);
            env.extend(kafka);
            env.extend(kafka_security_env(silo));
            env.push(plain_env("SILO_PUBLIC_URL", silo.api_url));
        }
    }
    env
}

fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Requests of a workload whose Region sets no resources: enough to be scheduled honestly.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("50m".to_owned())),
            ("memory".to_owned(), Quantity("64Mi".to_owned())),
        ])),
        ..ResourceRequirements::default()
    }
}

fn security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// The container of `workload`, with `extra_env` appended to the contract and its settings.
pub fn container(
    silo: &Silo<'_>,
    workload: Workload,
    sizing: Option<&WorkloadSpec>,
    extra_env: Vec<EnvVar>,
) -> Container {
    let mut env = contract_env(silo, workload);
    env.extend(workload_env(silo, workload));
    env.extend(extra_env);
    let (probe_name, probe_number) = probe_port(workload);
    // Startup allows for web and consumers waiting on the database and migrating (up to
    // their 60 s database wait); after that a stuck process is restarted within 30 s.
    let startup = http_probe("/healthz", probe_name, 2, 60);
    Container {
        name: workload.name().to_owned(),
        image: Some(silo.image.to_owned()),
        image_pull_policy: silo.pods.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: Some(vec![workload.name().to_owned()]),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some(probe_name.to_owned()),
            container_port: probe_number,
            ..ContainerPort::default()
        }]),
        resources: Some(
            sizing
                .and_then(|s| s.resources.clone())
                .unwrap_or_else(default_resources),
        ),
        startup_probe: Some(startup),
        liveness_probe: Some(http_probe("/healthz", probe_name, 10, 3)),
        readiness_probe: Some(http_probe("/readyz", probe_name, 5, 2)),
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                name: "directory".to_owned(),
                mount_path: labels::DIRECTORY_MOUNT.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            })
            .chain(ca_volumes(silo).into_iter().map(|(_, mount)| mount))
            .collect(),
        ),
        security_context: Some(security_context()),
        // Workloads behind a Service keep serving until the endpoints have dropped the pod.
        lifecycle: workload.service_port().map(|_| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..Container::default()
    }
}
