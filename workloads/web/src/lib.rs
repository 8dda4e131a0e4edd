//! The silo web API: Sentry's `/api/0/...` for the region silo, silo-aware.
//!
//! ```text
//!  HTTP ──► router (composed for SENTRY_SILO_MODE from silo::RouteDef list)
//!            ├─ wrong silo ──► 404 {"detail", "silo", "servedBy"}
//!            │   (CONTROL: region routes ──► control::gateway ──► owning region)
//!            └─ access layer (bearer token scopes | relay signature)
//!                 └─► api::<resource> handler ──► silo-store queries ──► Postgres
//!  /healthz /readyz /metrics ──► silo-runtime admin router
//! ```
//!
//! [`router::router`] builds the app for a state; [`app::run`] is the binary's composition
//! root (contract, pool, migrations, bootstrap token, servers, shutdown).

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod control;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod pagination;
pub mod router;
pub mod silo;
pub mod state;

pub use error::AppError;
pub use router::{app_router, router, routes};
pub use silo::{RouteDef, Silos};
pub use state::{AppState, Settings};
