//! The workload binaries as child processes ([`silo_testkit::Process`]).
//!
//! They are found in the running executable's profile directory (`target/<profile>/`, since
//! tests run from `target/<profile>/deps/`). [`ensure_built`] runs `cargo build` for them
//! once per process (skipped with `SILO_SKIP_BUILD=1`, e.g. when CI built them before).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use silo_testkit::{Process, Services, TestDb, free_addr};

use crate::kafka::Topics;

/// `(package, binary)` of every workload.
pub const WORKLOADS: [(&str, &str); 4] = [
    ("silo-web", "web"),
    ("silo-relay", "relay"),
    ("silo-consumers", "consumers"),
    ("silo-postprocess", "postprocess"),
];

/// The package of a workload binary (see [`WORKLOADS`]).
fn package_of(bin: &str) -> &'static str {
    WORKLOADS
        .iter()
        .find(|(_, b)| *b == bin)
        .map(|(package, _)| *package)
        .unwrap_or_else(|| panic!("unknown workload binary {bin}"))
}

/// Build the named binaries (see [`WORKLOADS`]) with the profile of the running executable.
pub fn ensure_built(bins: &[&str]) {
    let binaries: Vec<(&str, &str)> = bins.iter().map(|bin| (package_of(bin), *bin)).collect();
    silo_testkit::ensure_built(&binaries);
}

/// Start the workload `bin` with `env` (on top of the test's environment, `RUST_LOG=info`
/// unless given), serving `/readyz` and `/metrics` on `admin_addr`; its output goes to
/// `$TMPDIR/silo-pipeline-tests/<bin>-<suffix>.log`. Killed when dropped.
pub fn spawn(bin: &str, admin_addr: SocketAddr, env: &BTreeMap<String, String>) -> Process {
    Process::new(bin, silo_testkit::binary(package_of(bin), bin), admin_addr)
        .log_dir("silo-pipeline-tests")
        .envs(env)
        .started()
}

/// Start the consumer workload `bin` (`consumers` or `postprocess`) alone over `db` and the
/// test's `topics`, in the consumer group `<prefix><bin>`, with `settings` on top; waits
/// until it is ready.
pub async fn start_consumer(
    bin: &str,
    services: &Services,
    db: &TestDb,
    topics: &Topics,
    settings: &[(&str, &str)],
) -> Process {
    let admin = free_addr();
    let mut env: BTreeMap<String, String> = [
        ("DATABASE_URL", db.url.clone()),
        ("KAFKA_BROKERS", services.kafka_brokers.clone()),
        ("SILO_KAFKA_TOPIC_PREFIX", topics.prefix.clone()),
        ("SILO_CONSUMER_GROUP", format!("{}{bin}", topics.prefix)),
        ("SILO_ADMIN_ADDR", admin.to_string()),
        ("SENTRY_SILO_MODE", "MONOLITH".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut process = spawn(bin, admin, &env);
    process.wait_ready(Duration::from_secs(60)).await;
    process
}
