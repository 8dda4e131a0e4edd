//! The fleet rollout planner: pure functions, no I/O.
//!
//! ```text
//!   ControlPlane spec.version + spec.rollout ─► Strategy (groups, budgets, durations)
//!   status.rollout (the ledger) + every Region's labels and own rollout status ─► plan::step
//!     ─► next ledger (who moves now, who is done, failed, reverting), the control silo's
//!        version, Events and when to look again
//!   ledger ─► assignment::version_for ─► the version each Region is built at
//! ```
//!
//! The ledger is the only memory: a step reads nothing else of the past, so an operator that
//! restarts resumes from the last ledger it wrote. A Region is moved only by a ledger write
//! that lists it, and counts as upgraded only from a status its reconciler wrote after seeing
//! that move (same version, same start time). A Region in flight whose cluster has not
//! answered for longer than `progressDeadline` (times from the ledger and its status) is
//! deferred: it keeps its move but frees its slot, and the control silo waits for it.

pub mod assignment;
pub mod plan;
pub mod selector;
pub mod strategy;
mod time;

pub use assignment::{Assignment, moved, region_rollout, version_for};
pub use plan::{Event, Plan, RegionView, Snapshot, step};
pub use strategy::{Strategy, StrategyError};

#[cfg(test)]
mod sim;
