//! Where a silo's Postgres, Redis and Kafka come from: run by the operator in the silo's
//! namespace (`managed`, the default) or provided by the platform team (`external`, a Secret).

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::networking::v1::NetworkPolicyEgressRule;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One of the three stores of a silo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Store {
    Postgres,
    Redis,
    Kafka,
}

impl Store {
    /// Every store, in the order they are reported.
    pub const ALL: [Store; 3] = [Store::Postgres, Store::Redis, Store::Kafka];

    /// The StatefulSet, Service and field name of the store.
    pub fn name(self) -> &'static str {
        match self {
            Store::Postgres => "postgres",
            Store::Redis => "redis",
            Store::Kafka => "kafka",
        }
    }

    /// The port clients connect to.
    pub fn port(self) -> i32 {
        match self {
            Store::Postgres => 5432,
            Store::Redis => 6379,
            Store::Kafka => 9092,
        }
    }

    /// Volume size of a managed store whose spec names none.
    pub fn default_storage(self) -> &'static str {
        match self {
            Store::Postgres => "2Gi",
            Store::Redis => "256Mi",
            Store::Kafka => "2Gi",
        }
    }
}

/// A store the operator runs: a one-pod StatefulSet with a volume of its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedStore {
    /// Size of the store's PersistentVolumeClaim (default: postgres 2Gi, redis 256Mi,
    /// kafka 2Gi). Immutable: a StatefulSet's claim template cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage is immutable (a StatefulSet's volume claim template cannot change); resize the PersistentVolumeClaim itself"))]
    pub storage: Option<Quantity>,
    /// StorageClass of the claim; unset uses the cluster's default class. Without a default
    /// class the store's data lives in an `emptyDir` (lost with the pod), as status says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storageClassName is immutable (a StatefulSet's volume claim template cannot change)"))]
    pub storage_class_name: Option<String>,
    /// CPU and memory of the store's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A store the platform team runs, described by a Secret in the operator's namespace with
/// Service-Binding-style keys: Postgres `uri`, or `host`, `port`, `username`, `password` and
/// `database`; Redis `uri`, or `host`, `port` and optional `password`; Kafka
/// `bootstrap.servers`. The operator copies it into the silo's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalStore {
    /// Name of the Secret in the operator's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Where the store is reached, as NetworkPolicy egress rules of the silo's pods: `to`
    /// with an `ipBlock` (the store's CIDR) or `namespaceSelector`/`podSelector` (a store in
    /// the cluster), and optional `ports`. The silo's NetworkPolicies deny any other egress,
    /// so a store outside the silo's namespace is unreachable without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<NetworkPolicyEgressRule>,
    /// Connect over TLS: Postgres with `sslMode`, Redis as `rediss://`, Kafka with the `SSL`
    /// (or, with `sasl`, `SASL_SSL`) protocol. The server's certificate is checked against
    /// the CA bundle under `caBundleKey` of the Secret, or the workload image's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<StoreTls>,
    /// Kafka only: authenticate with SASL, using the Secret's `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
}

/// TLS to an external store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreTls {
    /// Key of the store's Secret holding the PEM bundle of the CA(s) that sign the store's
    /// certificate (for example `ca.crt`). Unset: the workload image's public roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub ca_bundle_key: Option<String>,
    /// Postgres only (libpq's `sslmode`): `require` encrypts without checking the
    /// certificate, `verify-ca` checks it against the CA, `verify-full` (the default) also
    /// checks that it names the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<PostgresSslMode>,
}

/// How a Postgres client checks the server over TLS (libpq's `sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PostgresSslMode {
    #[serde(rename = "require")]
    Require,
    #[serde(rename = "verify-ca")]
    VerifyCa,
    #[serde(rename = "verify-full")]
    VerifyFull,
}

impl PostgresSslMode {
    /// The value of `sslmode` in a connection URL.
    pub fn as_str(self) -> &'static str {
        match self {
            PostgresSslMode::Require => "require",
            PostgresSslMode::VerifyCa => "verify-ca",
            PostgresSslMode::VerifyFull => "verify-full",
        }
    }
}

/// SASL authentication to an external Kafka.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    /// The SASL mechanism the brokers accept.
    pub mechanism: SaslMechanism,
}

/// SASL mechanisms the workloads' Kafka client supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's `sasl.mechanisms` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How one store is provided: `managed` (the default when neither is given) or `external`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.managed) && has(self.external))").message("a store is either managed or external, not both"))]
pub struct StoreSpec {
    /// Run the store in the silo's namespace (sizing and storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedStore>,
    /// Use a store the platform team runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalStore>,
}

impl StoreSpec {
    /// The managed sizing, when the store is managed (`None`: external).
    pub fn managed(&self) -> Option<ManagedStore> {
        match (&self.managed, &self.external) {
            (_, Some(_)) => None,
            (Some(m), None) => Some(m.clone()),
            (None, None) => Some(ManagedStore::default()),
        }
    }
}

/// The stores of a region silo.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.redis) || !has(self.redis.external) || !has(self.redis.external.tls) || !has(self.redis.external.tls.sslMode)").message("redis.external.tls.sslMode: sslMode is Postgres's setting; Redis over TLS always checks the server's certificate (against caBundleKey, or the image's roots)"))]
#[x_kube(validation = Rule::new("!has(self.kafka) || !has(self.kafka.external) || !has(self.kafka.external.tls) || !has(self.kafka.external.tls.sslMode)").message("kafka.external.tls.sslMode: sslMode is Postgres's setting; Kafka over TLS always checks the brokers' certificates (against caBundleKey, or the image's roots)"))]
#[x_kube(validation = Rule::new("(!has(self.postgres) || !has(self.postgres.external) || !has(self.postgres.external.sasl)) && (!has(self.redis) || !has(self.redis.external) || !has(self.redis.external.sasl))").message("external.sasl is Kafka's setting: Postgres and Redis take their username and password from the Secret"))]
pub struct InfrastructureSpec {
    /// The region's database (organizations, projects, issues, events).
    #[serde(default)]
    pub postgres: StoreSpec,
    /// Relay's project-config cache and rate-limit counters.
    #[serde(default)]
    pub redis: StoreSpec,
    /// The region's event stream (`ingest-events`, `events`, `outcomes`), single-node KRaft.
    #[serde(default)]
    pub kafka: StoreSpec,
    /// Keep the managed stores' PersistentVolumes when the Region is deleted (their reclaim
    /// policy is set to `Retain`). By default deleting a Region deletes its data with it.
    #[serde(default)]
    pub retain_on_delete: bool,
}

impl InfrastructureSpec {
    pub fn get(&self, store: Store) -> &StoreSpec {
        match store {
            Store::Postgres => &self.postgres,
            Store::Redis => &self.redis,
            Store::Kafka => &self.kafka,
        }
    }
}

/// Images of the managed stores. Each must honour the interface the operator relies on
/// (documented in `e2e/images/README.md`): the official images do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreImages {
    /// Postgres: `POSTGRES_USER`/`POSTGRES_PASSWORD`/`POSTGRES_DB`/`PGDATA`, port 5432,
    /// `pg_isready` on PATH.
    #[serde(default = "default_postgres_image")]
    #[schemars(length(min = 1, max = 512))]
    pub postgres: String,
    /// Redis: command `redis-server ARGS`, data in `/data`, port 6379, `redis-cli` on PATH.
    #[serde(default = "default_redis_image")]
    #[schemars(length(min = 1, max = 512))]
    pub redis: String,
    /// Kafka: configured from `KAFKA_*` variables and `CLUSTER_ID` (KRaft), data in
    /// `/var/lib/kafka/data`, port 9092, `/opt/kafka/bin/kafka-topics.sh`.
    #[serde(default = "default_kafka_image")]
    #[schemars(length(min = 1, max = 512))]
    pub kafka: String,
}

impl Default for StoreImages {
    fn default() -> Self {
        Self {
            postgres: default_postgres_image(),
            redis: default_redis_image(),
            kafka: default_kafka_image(),
        }
    }
}

impl StoreImages {
    pub fn get(&self, store: Store) -> &str {
        match store {
            Store::Postgres => &self.postgres,
            Store::Redis => &self.redis,
            Store::Kafka => &self.kafka,
        }
    }
}

fn default_postgres_image() -> String {
    "docker.io/library/postgres:17".to_owned()
}

fn default_redis_image() -> String {
    "docker.io/library/redis:7.4".to_owned()
}

fn default_kafka_image() -> String {
    "docker.io/apache/kafka:4.1.1".to_owned()
}

/// Fleet-wide infrastructure settings on the ControlPlane.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlInfrastructure {
    /// Images of the managed stores of every silo.
    #[serde(default)]
    pub images: StoreImages,
    /// The control silo's (or monolith's) own managed Postgres, used when
    /// `control.database` names no Secret.
    #[serde(default)]
    pub postgres: ManagedStore,
    /// The monolith's Redis and Kafka (MONOLITH mode only).
    #[serde(default)]
    pub redis: ManagedStore,
    #[serde(default)]
    pub kafka: ManagedStore,
}

/// Public URLs of the fleet, as users and SDKs reach them. `{region}` is replaced by the
/// region's name. They appear in DSNs, `Link` headers and notification links.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicUrls {
    /// The region API, e.g. `https://{region}.sentry.example.com`. Default: the region's
    /// in-cluster web address (`http://web.region-<name>.svc:8000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/ ]+(/.*)?$')").message("api must be an http(s) URL, e.g. https://{region}.sentry.example.com"))]
    pub api: Option<String>,
    /// Ingest (the DSN host), e.g. `https://ingest.{region}.sentry.example.com`. Default:
    /// the region's in-cluster relay address (`http://relay.region-<name>.svc:3000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/ ]+(/.*)?$')").message("ingest must be an http(s) URL, e.g. https://ingest.{region}.sentry.example.com"))]
    pub ingest: Option<String>,
    /// The control silo's API gateway. Default: its in-cluster address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/ ]+(/.*)?$')").message("control must be an http(s) URL, e.g. https://sentry.example.com"))]
    pub control: Option<String>,
}

impl PublicUrls {
    /// `template` with `{region}` replaced.
    pub fn expand(template: &str, region: &str) -> String {
        template.replace("{region}", region)
    }
}
