//! Harness for multi-process runs of the silo web binary: one control process and regions
//! `us` and `de`, each with its own Postgres database, all reading one region directory.
//!
//! ```text
//!  silo_testkit::services::database_url (DATABASE_URL, from e2e/services/up.sh)
//!  Fleet::start ─► databases silo_mr_<run>_{control,us,de} (silo_testkit::TestDb)
//!               ─► directory file [{us, snowflake 1}, {de, snowflake 2}] on free loopback ports
//!               ─► web (CONTROL) + web (REGION us) + web (REGION de) ─► /readyz
//!  tests ─► Api (reqwest) against the gateway or a region; silo_testkit::wait::until for conditions
//! ```
//!
//! The `web` binary comes from the workspace target directory of the running executable;
//! [`process::ensure_built`] builds it first unless `SILO_SKIP_BUILD=1`.

pub mod api;
pub mod cpu;
pub mod fleet;
pub mod process;

pub use api::{Api, Reply};
pub use fleet::{Fleet, FleetOptions, Monolith, Silo, TOKEN};
pub use process::WebProcess;
