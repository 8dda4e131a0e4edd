//! Handler tests: the router driven with `oneshot` against a real Postgres database per test.

mod common;
mod compat;
mod cross_silo;
mod issues;
mod relay;
mod releases;
mod resources;
mod silo_routes;
