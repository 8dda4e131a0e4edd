//! The silo contract shared by the operator (which writes it) and the workloads (which read it).
//!
//! ```text
//!   Region / ControlPlane specs ──► operator ──► env vars + directory file ──► pod
//!                                       │                                      │
//!                            RegionDirectory::to_json          SiloContract::from_lookup
//!                                       └──────── same types, same validation ─┘
//! ```
//!
//! Every pod gets the `SENTRY_*` variables named in [`env`]; `SENTRY_REGION_CONFIG` holds the
//! [`RegionDirectory`] either inline (JSON) or as a reference to a file ([`RegionConfigSource`]).
//! [`rpc`] signs and verifies cross-silo RPC requests with the `RPC_SHARED_SECRET` list.

pub mod contract;
pub mod directory;
pub mod env;
pub mod mode;
pub mod region;
pub mod rpc;

pub use contract::{ContractError, SiloContract};
pub use directory::{DirectoryError, RegionConfigSource, RegionDirectory};
pub use mode::SiloMode;
pub use region::{RegionCategory, RegionInfo, RegionNameError, validate_region_name};
