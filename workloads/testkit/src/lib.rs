//! Fixtures of the workspace's integration tests, so each test crate keeps only what is its
//! own.
//!
//! ```text
//!  e2e/services/up.sh ─► $SILO_STATE_DIR/services/env ─┐
//!  environment (DATABASE_URL, REDIS_URL, KAFKA_BROKERS) ─┴─► services::{Services, database_url}
//!  db::TestDb::create(prefix) | migrated(prefix, MIGRATOR) ─► <prefix>_<pid>_<random>: url, pool
//!       ─► drop_database() at the end of a passing test
//!  test executable (target/<profile>/deps/…) ─► profile_dir() = target/<profile>
//!  ensure_built([(package, bin)]) ─► cargo build -p <package> --bin <bin> [--release]
//!       once per process and binary; skipped with SILO_SKIP_BUILD=1
//!  Process::new(name, binary(package, bin), admin addr).envs(env).started() ─► log file
//!       ─► wait_ready (/readyz) ─► metric (/metrics)
//!       ─► terminate (SIGTERM, deadline) | kill (SIGKILL) ─► start again
//!  wait::until / wait::eventually ─► poll a condition with a deadline, never a fixed sleep
//! ```
//!
//! Tests fail (they do not skip) when a service is missing, naming the command that starts it.

pub mod binaries;
pub mod db;
pub mod process;
pub mod services;
pub mod wait;

pub use binaries::{binary, cargo, ensure_built, free_addr, is_release, profile_dir, repo_root};
pub use db::TestDb;
pub use process::Process;
pub use services::{KafkaSaslSsl, Services};

/// A short random suffix (`<pid>_<8 hex>`) for names that must not collide between tests
/// and runs.
pub fn unique_suffix() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{}_{n:08x}", std::process::id())
}
