//! Harness for end-to-end runs of the region pipeline against the real services.
//!
//! ```text
//!  e2e/services/up.sh ─► $STATE/services/env ─► Services (DATABASE_URL, REDIS_URL, KAFKA_BROKERS)
//!  TestDb::create ─► fresh database + migrations      Topics::create ─► unique topic prefix
//!  Binary::spawn(web | relay | consumers | postprocess) ─► /readyz ─► test traffic
//!  wait::until(deadline, condition) ─► assertions on the API / database
//! ```
//!
//! Binaries are taken from the workspace target directory (`target/debug/<name>`, or the
//! directory of the running test executable); [`binaries::ensure_built`] runs `cargo build`
//! for them first unless `SILO_SKIP_BUILD=1`.

pub mod api;
pub mod bench;
pub mod binaries;
pub mod db;
pub mod kafka;
pub mod region;
pub mod sdk;
pub mod services;
pub mod wait;
pub mod webhook;

pub use binaries::{Binary, ensure_built};
pub use db::TestDb;
pub use region::{Region, TestProject};
pub use services::Services;

/// A short random suffix for names that must not collide between tests and runs.
pub fn unique_suffix() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random();
    format!("{}_{n:08x}", std::process::id())
}
