//! Managed stores: per store a one-pod StatefulSet, a headless and a client Service, and the
//! Secret workloads read its connection from (generated credentials for Postgres and Redis);
//! for external stores only that Secret, copied from the platform team's.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Secret, SecurityContext, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};
use silo_api::Store;

use super::pod::{Silo, plain_env, secret_env};
use super::{Child, DesiredSet, GeneratedSecret};
use crate::infra::{Provided, Storage, connection_secret};
use crate::labels;

/// The user and database every managed Postgres is initialized with.
pub const POSTGRES_USER: &str = "silo";
pub const POSTGRES_DATABASE: &str = "silo";
/// Where the data volume is mounted in each store's container.
const POSTGRES_MOUNT: &str = "/var/lib/postgresql/data";
const REDIS_MOUNT: &str = "/data";
const KAFKA_MOUNT: &str = "/var/lib/kafka/data";
/// Kafka's controller listener (KRaft, same pod).
const KAFKA_CONTROLLER_PORT: i32 = 9093;

/// In-cluster host of the client Service of `store`.
pub fn store_host(store: Store, namespace: &str) -> String {
    format!("{}.{namespace}.svc", store.name())
}

fn headless_name(store: Store) -> String {
    format!("{}-headless", store.name())
}

fn selector(silo: &Silo<'_>, store: Store) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_owned(), store.name().to_owned()),
        (silo.owner.label.0.to_owned(), silo.owner.label.1.clone()),
    ])
}

/// Kafka's KRaft cluster id: 16 bytes from the owner's uid, base64url without padding, so it
/// is stable for the silo and never shared with another one.
pub fn kafka_cluster_id(owner_uid: &str) -> String {
    use base64::Engine;
    let digest = Sha256::digest(format!("silo-kafka:{owner_uid}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Add every store of the silo to `set`.
pub fn push_stores(silo: &Silo<'_>, set: &mut DesiredSet) {
    for (store, provided) in silo.infra.stores() {
        match provided {
            Provided::Managed { sizing, storage } => {
                push_connection(silo, store, set);
                let resources = sizing.resources.clone();
                set.push(Child::StatefulSet(Box::new(stateful_set(
                    silo, store, storage, resources,
                ))));
                set.push(Child::Service(Box::new(service(silo, store, false))));
                set.push(Child::Service(Box::new(service(silo, store, true))));
            }
            Provided::External { data, .. } => {
                let (name, _) = connection_secret(store, provided);
                set.push(Child::Secret(secret(silo, &name, store, data)));
            }
            Provided::Reference { .. } => {}
        }
    }
}

fn secret(silo: &Silo<'_>, name: &str, store: Store, data: &BTreeMap<String, String>) -> Secret {
    let component = format!("{}-connection", store.name());
    Secret {
        metadata: silo.owner.meta(Some(silo.namespace), name, &component),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// The connection Secret of a managed store: generated once for Postgres and Redis (a random
/// password), a plain Secret for Kafka (no credentials; the namespace is its boundary).
fn push_connection(silo: &Silo<'_>, store: Store, set: &mut DesiredSet) {
    let ns = silo.namespace;
    let host = store_host(store, ns);
    let port = store.port().to_string();
    let (name, _) = connection_secret(
        store,
        &Provided::Managed {
            sizing: Default::default(),
            storage: Storage::EmptyDir,
        },
    );
    let component = format!("{}-credentials", store.name());
    let meta = silo.owner.meta(Some(ns), &name, &component);
    let generated = |fixed: Vec<(&str, String)>, derived: Vec<(&str, String)>| GeneratedSecret {
        secret: Secret {
            metadata: meta.clone(),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        },
        key: "password".to_owned(),
        fixed: fixed.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        derived: derived
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    };
    match store {
        Store::Postgres => set.generated.push(generated(
            vec![
                ("host", host.clone()),
                ("port", port.clone()),
                ("username", POSTGRES_USER.to_owned()),
                ("database", POSTGRES_DATABASE.to_owned()),
            ],
            vec![(
                "uri",
                format!(
                    "postgres://{POSTGRES_USER}:{{password}}@{host}:{port}/{POSTGRES_DATABASE}"
                ),
            )],
        )),
        Store::Redis => set.generated.push(generated(
            vec![("host", host.clone()), ("port", port.clone())],
            vec![("uri", format!("redis://:{{password}}@{host}:{port}/0"))],
        )),
        Store::Kafka => set.push(Child::Secret(secret(
            silo,
            &name,
            store,
            &BTreeMap::from([(
                crate::infra::external::KAFKA_SERVERS_KEY.to_owned(),
                format!("{host}:{port}"),
            )]),
        ))),
    }
}

fn service(silo: &Silo<'_>, store: Store, headless: bool) -> Service {
    let name = if headless {
        headless_name(store)
    } else {
        store.name().to_owned()
    };
    let mut ports = vec![ServicePort {
        name: Some(store.name().to_owned()),
        port: store.port(),
        target_port: Some(IntOrString::String(store.name().to_owned())),
        ..ServicePort::default()
    }];
    if headless && store == Store::Kafka {
        ports.push(ServicePort {
            name: Some("controller".to_owned()),
            port: KAFKA_CONTROLLER_PORT,
            target_port: Some(IntOrString::Int(KAFKA_CONTROLLER_PORT)),
            ..ServicePort::default()
        });
    }
    Service {
        metadata: silo.owner.meta(Some(silo.namespace), &name, store.name()),
        spec: Some(ServiceSpec {
            selector: Some(selector(silo, store)),
            ports: Some(ports),
            cluster_ip: headless.then(|| "None".to_owned()),
            // The headless Service names the pod before it is ready (stable DNS for the
            // StatefulSet); the client Service only routes to a ready store.
            publish_not_ready_addresses: headless.then_some(true),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn exec_probe(command: &[&str], period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn tcp_probe(port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.to_owned()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn default_resources(store: Store) -> ResourceRequirements {
    let (cpu, memory) = match store {
        Store::Postgres => ("100m", "128Mi"),
        Store::Redis => ("50m", "32Mi"),
        Store::Kafka => ("100m", "512Mi"),
    };
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        ..ResourceRequirements::default()
    }
}

/// The container of a managed store, following the store image interface.
fn container(silo: &Silo<'_>, store: Store, resources: Option<ResourceRequirements>) -> Container {
    let (secret, _) = connection_secret(
        store,
        &Provided::Managed {
            sizing: Default::default(),
            storage: Storage::EmptyDir,
        },
    );
    let port_name = store.name();
    let mut ports = vec![ContainerPort {
        name: Some(port_name.to_owned()),
        container_port: store.port(),
        ..ContainerPort::default()
    }];
    let (env, args, mount, readiness, liveness): (Vec<EnvVar>, Option<Vec<String>>, _, _, _) =
        match store {
            Store::Postgres => (
                vec![
                    secret_env("POSTGRES_USER", &secret, "username"),
                    secret_env("POSTGRES_PASSWORD", &secret, "password"),
                    secret_env("POSTGRES_DB", &secret, "database"),
                    // A subdirectory: a fresh volume's root may hold lost+found.
                    plain_env("PGDATA", &format!("{POSTGRES_MOUNT}/pgdata")),
                ],
                None,
                POSTGRES_MOUNT,
                exec_probe(&["pg_isready", "-h", "127.0.0.1", "-p", "5432"], 3, 3),
                tcp_probe(port_name, 10, 6),
            ),
            Store::Redis => (
                vec![
                    secret_env("REDIS_PASSWORD", &secret, "password"),
                    secret_env("REDISCLI_AUTH", &secret, "password"),
                ],
                Some(
                    [
                        "redis-server",
                        "--port",
                        "6379",
                        "--dir",
                        REDIS_MOUNT,
                        "--appendonly",
                        "yes",
                        "--protected-mode",
                        "no",
                        "--requirepass",
                        "$(REDIS_PASSWORD)",
                    ]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                ),
                REDIS_MOUNT,
                // Alive and serving whatever password it holds: after a rotation retired the
                // password this container started with, an authentication error still
                // proves the server answers.
                exec_probe(
                    &[
                        "sh",
                        "-c",
                        "case \"$(redis-cli ping 2>&1)\" in PONG|*NOAUTH*|*WRONGPASS*) exit 0;; *) exit 1;; esac",
                    ],
                    3,
                    3,
                ),
                tcp_probe(port_name, 10, 6),
            ),
            Store::Kafka => {
                ports.push(ContainerPort {
                    name: Some("controller".to_owned()),
                    container_port: KAFKA_CONTROLLER_PORT,
                    ..ContainerPort::default()
                });
                let ns = silo.namespace;
                // The client Service, not the pod: its address survives a broker restart
                // (a new pod IP), so clients reconnect at once instead of timing out on the
                // old address. One broker, so the Service always means that broker.
                let advertised = format!("PLAINTEXT://{}:{}", store_host(store, ns), store.port());
                let uid = silo.owner.reference.uid.as_str();
                let env = [
                    ("KAFKA_NODE_ID", "1".to_owned()),
                    ("KAFKA_PROCESS_ROLES", "broker,controller".to_owned()),
                    (
                        "KAFKA_LISTENERS",
                        format!(
                            "PLAINTEXT://:{},CONTROLLER://:{KAFKA_CONTROLLER_PORT}",
                            store.port()
                        ),
                    ),
                    ("KAFKA_ADVERTISED_LISTENERS", advertised),
                    ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER".to_owned()),
                    (
                        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".to_owned(),
                    ),
                    (
                        "KAFKA_CONTROLLER_QUORUM_VOTERS",
                        format!("1@localhost:{KAFKA_CONTROLLER_PORT}"),
                    ),
                    ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1".to_owned()),
                    (
                        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                        "1".to_owned(),
                    ),
                    ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1".to_owned()),
                    ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0".to_owned()),
                    (
                        "KAFKA_NUM_PARTITIONS",
                        super::migration::TOPIC_PARTITIONS.to_string(),
                    ),
                    ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false".to_owned()),
                    ("KAFKA_LOG_DIRS", KAFKA_MOUNT.to_owned()),
                    ("KAFKA_HEAP_OPTS", "-Xms256m -Xmx256m".to_owned()),
                    ("CLUSTER_ID", kafka_cluster_id(uid)),
                ];
                (
                    env.iter().map(|(k, v)| plain_env(k, v)).collect(),
                    None,
                    KAFKA_MOUNT,
                    tcp_probe(port_name, 3, 3),
                    tcp_probe(port_name, 10, 6),
                )
            }
        };
    Container {
        name: store.name().to_owned(),
        image: Some(silo.images.get(store).to_owned()),
        image_pull_policy: silo.pods.image_pull_policy.map(|p| p.as_str().to_owned()),
        args,
        env: Some(env),
        ports: Some(ports),
        resources: Some(resources.unwrap_or_else(|| default_resources(store))),
        // Kafka and Postgres recovering a large log may take a while before they listen.
        startup_probe: Some(tcp_probe(port_name, 2, 150)),
        readiness_probe: Some(readiness),
        liveness_probe: Some(liveness),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".to_owned(),
            mount_path: mount.to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// A first step, as root, that lets the store's user into its volume on volumes without
/// ownership management (hostPath, some local provisioners create root-owned 0750
/// directories): Kafka's image runs as uid 1000 (the official one too) and gets the directory;
/// Postgres gets the subdirectory its cluster lives in (`PGDATA`), the volume root stays
/// root's but traversable. Redis starts as root and fixes `/data` itself.
fn data_owner(silo: &Silo<'_>, store: Store) -> Option<Container> {
    let script = match store {
        Store::Kafka => format!("chown 1000:1000 {KAFKA_MOUNT} && chmod 0750 {KAFKA_MOUNT}"),
        // By name: the official image's postgres is 999, Debian's another uid.
        Store::Postgres => format!(
            "mkdir -p {POSTGRES_MOUNT}/pgdata && chown postgres:postgres {POSTGRES_MOUNT}/pgdata && chmod 0700 {POSTGRES_MOUNT}/pgdata && chmod 0755 {POSTGRES_MOUNT}"
        ),
        Store::Redis => return None,
    };
    Some(Container {
        name: "data-owner".to_owned(),
        image: Some(silo.images.get(store).to_owned()),
        image_pull_policy: silo.pods.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), script]),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".to_owned(),
            mount_path: match store {
                Store::Kafka => KAFKA_MOUNT,
                _ => POSTGRES_MOUNT,
            }
            .to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    })
}

fn stateful_set(
    silo: &Silo<'_>,
    store: Store,
    storage: &Storage,
    resources: Option<ResourceRequirements>,
) -> StatefulSet {
    let selector = selector(silo, store);
    let mut pod_labels = selector.clone();
    pod_labels.insert(labels::PART_OF.to_owned(), labels::PART_OF_VALUE.to_owned());
    pod_labels.insert(
        labels::MANAGED_BY.to_owned(),
        labels::MANAGED_BY_VALUE.to_owned(),
    );
    let (volumes, claims) = match storage {
        Storage::EmptyDir => (
            Some(vec![Volume {
                name: "data".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            None,
        ),
        Storage::Claim { class, size } => (
            None,
            Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".to_owned()),
                    labels: Some(silo.owner.labels()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".to_owned(), size.clone())])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            }]),
        ),
    };
    let retention = if silo.infra.retain_on_delete {
        "Retain"
    } else {
        "Delete"
    };
    StatefulSet {
        metadata: silo
            .owner
            .meta(Some(silo.namespace), store.name(), store.name()),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(headless_name(store)),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container(silo, store, resources)],
                    init_containers: data_owner(silo, store).map(|c| vec![c]),
                    service_account_name: Some(super::SERVICE_ACCOUNT.to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    termination_grace_period_seconds: Some(60),
                    // The official Kafka image runs as uid 1000; the group lets it write a
                    // volume that supports ownership management.
                    security_context: (store == Store::Kafka).then(|| PodSecurityContext {
                        fs_group: Some(1000),
                        ..PodSecurityContext::default()
                    }),
                    node_selector: silo.node_selector(),
                    tolerations: silo.tolerations(),
                    volumes,
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: claims,
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(retention.to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}
