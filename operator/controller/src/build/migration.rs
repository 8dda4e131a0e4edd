//! The migration Job of a version (`migrate-<version>`): checks that Redis answers (from the
//! Redis image), creates the Kafka topics (from the Kafka image, idempotently) and applies
//! the schema migrations (`web migrate`), once per silo and version, before that version's
//! workloads start. Each step's container is named for its store (`redis`, `topics`,
//! `migrate`) and ends its log with the client's error, so that a failed Job tells which
//! store refused and why.

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use silo_api::{Store, Workload};

use super::container;
use super::pod::{Silo, secret_env};
use crate::infra::{connection_secret, external};
use crate::labels;

/// The `app.kubernetes.io/name` of migration pods (their problems are reported by it).
pub const MIGRATE_NAME: &str = "migrate";
/// Partitions of every topic the Job creates (also the broker's default).
pub const TOPIC_PARTITIONS: u32 = 4;
/// The topics of a region silo.
pub const TOPICS: [&str; 3] = [
    silo_protocol::topics::INGEST_EVENTS,
    silo_protocol::topics::EVENTS,
    silo_protocol::topics::OUTCOMES,
];

/// `migrate-<version>`: the version as it is when it is a valid name (lowercase letters,
/// digits, `.` and `-`), else made one (other characters become `-`, long versions are cut)
/// and suffixed with a hash so that names stay distinct.
pub fn job_name(version: &str) -> String {
    let mut slug: String = version
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let exact = slug == version && !slug.starts_with(['.', '-']) && !slug.ends_with(['.', '-']);
    if slug.len() > 40 || !exact {
        slug.truncate(30);
        let hash = &super::content_hash(&version)[..8];
        slug = format!("{}-{hash}", slug.trim_matches(['.', '-']));
    }
    format!("migrate-{slug}")
}

/// Writes the Kafka tools' client settings for an external Kafka with TLS or SASL (from the
/// `KAFKA_*` variables the workloads get) into `$cfg`. SASL credentials are escaped for JAAS
/// (`\` and `"`) and then for the properties file (`\`).
const CLIENT_CONFIG_SCRIPT: &str = r#"cfg=/tmp/client.properties; : > "$cfg"; if [ -n "$KAFKA_SECURITY_PROTOCOL" ]; then echo "security.protocol=$KAFKA_SECURITY_PROTOCOL" >> "$cfg"; fi; if [ -n "$KAFKA_SSL_CA_LOCATION" ]; then printf 'ssl.truststore.type=PEM\nssl.truststore.location=%s\n' "$KAFKA_SSL_CA_LOCATION" >> "$cfg"; fi; if [ -n "$KAFKA_SASL_MECHANISM" ]; then case "$KAFKA_SASL_MECHANISM" in PLAIN) module=org.apache.kafka.common.security.plain.PlainLoginModule ;; *) module=org.apache.kafka.common.security.scram.ScramLoginModule ;; esac; esc() { printf '%s' "$1" | sed -e 's/\\/\\\\\\\\/g' -e 's/"/\\\\"/g'; }; printf 'sasl.mechanism=%s\nsasl.jaas.config=%s required username="%s" password="%s";\n' "$KAFKA_SASL_MECHANISM" "$module" "$(esc "$KAFKA_SASL_USERNAME")" "$(esc "$KAFKA_SASL_PASSWORD")" >> "$cfg"; fi"#;

/// How long the `redis` step waits for Redis to answer `PING` (refused, timed out or not yet
/// resolvable: a managed Redis still starting, a network policy not yet programmed).
pub const REDIS_WAIT_SECONDS: u32 = 60;

/// Pings `$REDIS_URL` (TLS with the mounted CA when the store has one) until it answers
/// `PONG`; gives up at once on a refused password or a certificate problem, after
/// [`REDIS_WAIT_SECONDS`] on anything else, with the client's last words as its last line.
/// A URL's empty user (`redis://:password@`, the password alone, as relay reads it) is
/// dropped first: redis-cli would send `AUTH "" password`, which no server accepts.
fn redis_script() -> String {
    let ca = external::ca_bundle_path(Store::Redis);
    format!(
        r#"url="$REDIS_URL"; case "$url" in redis://:*) url="redis://${{url#redis://:}}" ;; rediss://:*) url="rediss://${{url#rediss://:}}" ;; esac; tls=''; if [ -f {ca} ]; then tls='--tls --cacert {ca}'; fi; deadline=$(( $(date +%s) + {REDIS_WAIT_SECONDS} )); while :; do out=$(timeout 5 redis-cli --no-auth-warning -u "$url" $tls ping 2>&1); code=$?; if [ "$out" = PONG ]; then echo "redis answers"; exit 0; fi; if [ "$code" = 124 ]; then out="connection timed out after 5s"; fi; case "$out" in *WRONGPASS*|*NOAUTH*|*"invalid password"*|*ertificate*|*SSL*|*TLS*) echo "redis: $out"; exit 1 ;; esac; if [ "$(date +%s)" -ge "$deadline" ]; then echo "redis did not answer within {REDIS_WAIT_SECONDS}s: $out"; exit 1; fi; sleep 2; done"#
    )
}

/// A step of the Job run from `store`'s image: `sh -c script` with `env` and the store's CA
/// bundle mounted when it has one; its log's end becomes its termination message.
fn store_step(
    silo: &Silo<'_>,
    store: Store,
    name: &str,
    script: String,
    env: Vec<EnvVar>,
) -> Container {
    let ca = format!("{}-ca", store.name());
    let mounts: Vec<_> = super::container::ca_volumes(silo)
        .into_iter()
        .map(|(_, mount)| mount)
        .filter(|m| m.name == ca)
        .collect();
    Container {
        name: name.to_owned(),
        image: Some(silo.images.get(store).to_owned()),
        image_pull_policy: silo.pods.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: Some(vec!["sh".to_owned(), "-c".to_owned(), script]),
        env: Some(env),
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

fn redis_container(silo: &Silo<'_>, url: EnvVar) -> Container {
    store_step(silo, Store::Redis, "redis", redis_script(), vec![url])
}

fn topics_container(silo: &Silo<'_>, brokers: EnvVar) -> Container {
    // One JVM per topic, started together (each takes seconds to start on a small node).
    let script = format!(
        "set -e; {CLIENT_CONFIG_SCRIPT}; pids=''; for topic in {topics}; do /opt/kafka/bin/kafka-topics.sh --bootstrap-server \"$KAFKA_BROKERS\" --command-config \"$cfg\" --create --if-not-exists --topic \"$topic\" --partitions {TOPIC_PARTITIONS} --replication-factor 1 & pids=\"$pids $!\"; done; for pid in $pids; do wait \"$pid\"; done",
        topics = TOPICS.join(" ")
    );
    let mut env = vec![
        brokers,
        super::pod::plain_env("KAFKA_HEAP_OPTS", "-Xmx128m"),
    ];
    env.extend(super::container::kafka_security_env(silo));
    store_step(silo, Store::Kafka, "topics", script, env)
}

/// The migration Job of `silo.version`.
pub fn job(silo: &Silo<'_>) -> Job {
    // Web's container has the database URL and the contract; the Job waits longer for it.
    let mut migrate = container::container(
        silo,
        Workload::Web,
        None,
        vec![super::pod::plain_env("SILO_WEB_DATABASE_WAIT", "120s")],
    );
    migrate.name = "migrate".to_owned();
    migrate.command = Some(vec!["web".to_owned(), "migrate".to_owned()]);
    migrate.ports = None;
    migrate.startup_probe = None;
    migrate.liveness_probe = None;
    migrate.readiness_probe = None;
    migrate.lifecycle = None;
    // A failed migration's last log lines become its termination message, which the Region's
    // MigrationsComplete condition quotes (e.g. a refused password).
    migrate.termination_message_policy = Some("FallbackToLogsOnError".to_owned());
    let redis = silo.infra.redis.as_ref().map(|redis| {
        let (secret, key) = connection_secret(Store::Redis, redis);
        redis_container(silo, secret_env("REDIS_URL", &secret, &key))
    });
    let topics = silo.infra.kafka.as_ref().map(|kafka| {
        let (secret, key) = connection_secret(Store::Kafka, kafka);
        topics_container(silo, secret_env("KAFKA_BROKERS", &secret, &key))
    });
    let init: Vec<Container> = redis.into_iter().chain(topics).collect();
    let mut template = super::pod::deployment(silo, Workload::Web, None, Vec::new())
        .spec
        .map(|s| s.template)
        .unwrap_or_default();
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(labels::NAME.to_owned(), MIGRATE_NAME.to_owned());
    template.metadata = Some(ObjectMeta {
        labels: Some(labels),
        ..ObjectMeta::default()
    });
    if let Some(spec) = template.spec.as_mut() {
        spec.containers = vec![migrate];
        spec.init_containers = (!init.is_empty()).then_some(init);
        spec.restart_policy = Some("Never".to_owned());
    }
    let name = job_name(silo.version);
    let mut meta = silo.owner.meta(Some(silo.namespace), &name, "migrate");
    if let Some(l) = meta.labels.as_mut() {
        l.insert(
            "app.kubernetes.io/version".to_owned(),
            silo.version.to_owned(),
        );
    }
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(3),
            active_deadline_seconds: Some(900),
            template: PodTemplateSpec {
                metadata: template.metadata,
                spec: template.spec.map(|s| PodSpec { ..s }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
