//! silo-operator: reconciles `ControlPlane` and `Region` resources into running silos.
//!
//! ```text
//!  watches (Regions, ControlPlanes, managed children) ──► stores ──► queue (bounded concurrency)
//!                                                                        │
//!   reconcile:  read stores ─► validate (pure) ─► build desired set (pure) ─► apply (SSA, skip
//!               unchanged) ─► prune undesired ─► status (conditions, Events on transitions)
//! ```
//!
//! A Region becomes namespace `region-<name>` with Deployments relay/consumers/web/postprocess,
//! Services relay/web, the region directory ConfigMap (mounted as a file that
//! `SENTRY_REGION_CONFIG` points at) and its secrets. The ControlPlane becomes the control silo
//! (SILOED) or the monolith (MONOLITH). Adding a Region rewrites every directory ConfigMap and
//! no pod template, so nothing restarts. A change of the ControlPlane's version reaches the
//! Regions group by group through the rollout ledger (see [`rollout`] and `silo-rollout`).

pub mod apply;
pub mod backoff;
pub mod build;
pub mod clusters;
pub mod config;
pub mod context;
pub mod controlplane;
pub mod drift;
pub mod http;
pub mod infra;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod network_check;
pub mod onboard;
pub mod owners;
pub mod pacing;
pub mod pods;
pub mod records;
pub mod region;
pub mod remote;
pub mod rollout;
pub mod rotation;
pub mod rpc_rotation;
pub mod run;
pub mod silo;
pub mod status;
pub mod stores;
pub mod synced;
pub mod validate;
