//! Harness for end-to-end runs of the region pipeline against the real services.
//!
//! ```text
//!  silo_testkit::Services (DATABASE_URL, REDIS_URL, KAFKA_BROKERS from e2e/services/up.sh)
//!  silo_testkit::TestDb::migrated ─► fresh database      kafka::Topics::create ─► unique prefix
//!  binaries::spawn(web | relay | consumers | postprocess) ─► /readyz ─► test traffic
//!  silo_testkit::wait::until(deadline, condition) ─► assertions on the API / database
//! ```
//!
//! Binaries are taken from the workspace target directory (`target/debug/<name>`, or the
//! directory of the running test executable); [`binaries::ensure_built`] runs `cargo build`
//! for them first unless `SILO_SKIP_BUILD=1`. The fixtures every integration test shares
//! (services, databases, processes, waits) are `silo-testkit`'s; this crate adds the region.

pub mod api;
pub mod bench;
pub mod binaries;
pub mod kafka;
pub mod region;
pub mod sdk;
pub mod seed;
pub mod webhook;

pub use binaries::ensure_built;
pub use region::{Region, TestProject};
