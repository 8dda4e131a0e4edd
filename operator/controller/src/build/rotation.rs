//! Password rotation in the desired set: the Jobs that set and retire a managed store's
//! password (run in the region's namespace as its ServiceAccount, with the store's current
//! credentials from its connection Secret: no API access and no exec into the store), and the
//! revision annotation that rolls the workloads when a connection Secret changes.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use silo_api::{PodSettings, Store, StoreImages};

use super::pod::{plain_env, secret_env};
use super::{Child, DesiredSet, Owner, POSTGRES_USER, store_host};
use crate::labels;
use crate::rotation::{
    JobKind, NEXT_PASSWORD_KEY, PASSWORD_KEY, PREVIOUS_PASSWORD_KEY, PREVIOUS_USERNAME_KEY,
    RotationJob, USERNAME_KEY,
};

/// The `app.kubernetes.io/name` of rotation pods.
pub const ROTATION_NAME: &str = "rotation";

/// Where rotation Jobs run and what they run.
pub struct RotationContext<'a> {
    pub owner: &'a Owner,
    pub namespace: &'a str,
    pub images: &'a StoreImages,
    pub pods: &'a PodSettings,
}

/// Add the rotation Jobs to `set` and stamp `revision` on every Deployment's pod template.
pub fn push_rotation(
    set: &mut DesiredSet,
    at: &RotationContext<'_>,
    jobs: &[RotationJob],
    revision: Option<&str>,
) {
    if let Some(revision) = revision {
        let children = std::mem::take(&mut set.children);
        for child in children {
            let child = match child {
                Child::Deployment(mut d) => {
                    if let Some(meta) = d.spec.as_mut().and_then(|s| s.template.metadata.as_mut()) {
                        meta.annotations
                            .get_or_insert_with(BTreeMap::new)
                            .insert(labels::CREDENTIALS_REVISION.to_owned(), revision.to_owned());
                    }
                    if let Some(a) = d.metadata.annotations.as_mut() {
                        a.remove(labels::SPEC_HASH);
                    }
                    Child::Deployment(d).stamped()
                }
                other => other,
            };
            set.children.push(child);
        }
    }
    for job in jobs {
        set.push(Child::Job(Box::new(rotation_job(at, job))));
    }
}

const POSTGRES_SET: &str = r#"set -eu
psql -v ON_ERROR_STOP=1 -v login="$NEW_LOGIN" -v password="$NEW_PASSWORD" -v owner="$OWNER" <<'SQL'
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'login') AS missing \gset
\if :missing
CREATE ROLE :"login";
\endif
ALTER ROLE :"login" WITH LOGIN PASSWORD :'password';
GRANT :"owner" TO :"login";
ALTER ROLE :"login" SET role = :'owner';
SQL
acts_as=$(PGUSER="$NEW_LOGIN" PGPASSWORD="$NEW_PASSWORD" psql -v ON_ERROR_STOP=1 -tAc 'SELECT current_user')
[ "$acts_as" = "$OWNER" ] || { echo "login $NEW_LOGIN acts as $acts_as, not $OWNER"; exit 1; }
echo "login $NEW_LOGIN authenticates with the new password and acts as $OWNER""#;

const POSTGRES_RETIRE: &str = r#"set -eu
[ "$OLD_LOGIN" != "$PGUSER" ] || { echo "the old login $OLD_LOGIN is the current one"; exit 1; }
psql -v ON_ERROR_STOP=1 -v login="$OLD_LOGIN" -v owner="$OWNER" <<'SQL'
SELECT :'login' = :'owner' AS is_owner \gset
\if :is_owner
ALTER ROLE :"login" WITH PASSWORD NULL;
\else
ALTER ROLE :"login" WITH NOLOGIN PASSWORD NULL;
\endif
SELECT count(pg_terminate_backend(pid)) AS sessions_ended FROM pg_stat_activity WHERE usename = :'login';
SQL
echo "login $OLD_LOGIN retired""#;

const REDIS_SET: &str = r#"set -eu
reply=$(redis-cli -h "$HOST" -p "$PORT" ACL SETUSER default ">$NEW_PASSWORD" 2>&1)
[ "$reply" = OK ] || { echo "ACL SETUSER: $reply"; exit 1; }
pong=$(REDISCLI_AUTH="$NEW_PASSWORD" redis-cli -h "$HOST" -p "$PORT" ping 2>&1)
[ "$pong" = PONG ] || { echo "the new password does not authenticate: $pong"; exit 1; }
echo "the default user accepts the new password and the old one""#;

const REDIS_RETIRE: &str = r#"set -eu
reply=$(redis-cli -h "$HOST" -p "$PORT" ACL SETUSER default resetpass ">$REDISCLI_AUTH" 2>&1)
[ "$reply" = OK ] || { echo "ACL SETUSER: $reply"; exit 1; }
old=$(REDISCLI_AUTH="$OLD_PASSWORD" redis-cli -h "$HOST" -p "$PORT" ping 2>&1 || true)
[ "$old" != PONG ] || { echo "the old password still authenticates"; exit 1; }
echo "the default user accepts the current password only""#;

/// Waits (up to a minute) until the store accepts connections from this pod: a new pod's
/// address may reach the policy engine's sets a moment after the pod starts.
const POSTGRES_WAIT: &str = r#"i=0
until pg_isready -q -t 2; do
  i=$((i+1))
  [ "$i" -lt 60 ] || { echo "postgres at $PGHOST:$PGPORT does not accept connections from this pod"; exit 1; }
  sleep 1
done
"#;
const REDIS_WAIT: &str = r#"i=0
until redis-cli -h "$HOST" -p "$PORT" ping 2>&1 | grep -qv -e "Could not connect" -e "Connection refused"; do
  i=$((i+1))
  [ "$i" -lt 60 ] || { echo "redis at $HOST:$PORT does not accept connections from this pod"; exit 1; }
  sleep 1
done
"#;

fn rotation_job(at: &RotationContext<'_>, job: &RotationJob) -> Job {
    let store = job.store;
    let secret = format!("{}-credentials", store.name());
    let host = store_host(store, at.namespace);
    let port = store.port().to_string();
    let (script, mut env): (&str, Vec<EnvVar>) = match (store, job.kind) {
        (Store::Redis, kind) => (
            if kind == JobKind::Set {
                REDIS_SET
            } else {
                REDIS_RETIRE
            },
            vec![
                plain_env("HOST", &host),
                plain_env("PORT", &port),
                secret_env("REDISCLI_AUTH", &secret, PASSWORD_KEY),
            ],
        ),
        (_, kind) => (
            if kind == JobKind::Set {
                POSTGRES_SET
            } else {
                POSTGRES_RETIRE
            },
            vec![
                plain_env("PGHOST", &host),
                plain_env("PGPORT", &port),
                secret_env("PGDATABASE", &secret, "database"),
                secret_env("PGUSER", &secret, USERNAME_KEY),
                secret_env("PGPASSWORD", &secret, PASSWORD_KEY),
                plain_env("PGCONNECT_TIMEOUT", "10"),
                plain_env("OWNER", POSTGRES_USER),
            ],
        ),
    };
    let wait = if store == Store::Redis {
        REDIS_WAIT
    } else {
        POSTGRES_WAIT
    };
    // `set -eu` first, then the wait, then the step.
    let script = match script.split_once('\n') {
        Some((first, rest)) => format!("{first}\n{wait}{rest}"),
        None => format!("{wait}{script}"),
    };
    match (store, job.kind) {
        (Store::Postgres, JobKind::Set) => {
            env.push(plain_env(
                "NEW_LOGIN",
                job.login.as_deref().unwrap_or_default(),
            ));
            env.push(secret_env("NEW_PASSWORD", &secret, NEXT_PASSWORD_KEY));
        }
        (Store::Postgres, JobKind::Retire) => {
            env.push(secret_env("OLD_LOGIN", &secret, PREVIOUS_USERNAME_KEY));
        }
        (_, JobKind::Set) => env.push(secret_env("NEW_PASSWORD", &secret, NEXT_PASSWORD_KEY)),
        (_, JobKind::Retire) => {
            env.push(secret_env("OLD_PASSWORD", &secret, PREVIOUS_PASSWORD_KEY));
        }
    }
    let mut meta = at.owner.meta(Some(at.namespace), &job.name, ROTATION_NAME);
    let mut pod_labels = at.owner.labels();
    pod_labels.insert(labels::NAME.to_owned(), ROTATION_NAME.to_owned());
    pod_labels.insert(labels::ROTATION.to_owned(), store.name().to_owned());
    if let Some(l) = meta.labels.as_mut() {
        l.insert(labels::ROTATION.to_owned(), store.name().to_owned());
    }
    Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(4),
            active_deadline_seconds: Some(600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: job.kind.as_str().to_owned(),
                        image: Some(at.images.get(store).to_owned()),
                        image_pull_policy: at.pods.image_pull_policy.map(|p| p.as_str().to_owned()),
                        command: Some(vec!["sh".to_owned(), "-c".to_owned(), script]),
                        env: Some(env),
                        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
                        ..Container::default()
                    }],
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: Some(super::SERVICE_ACCOUNT.to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    node_selector: (!at.pods.node_selector.is_empty())
                        .then(|| at.pods.node_selector.clone()),
                    tolerations: (!at.pods.tolerations.is_empty())
                        .then(|| at.pods.tolerations.clone()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
