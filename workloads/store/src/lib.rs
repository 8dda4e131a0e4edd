//! The region silo's Postgres store: schema (embedded migrations) and typed queries.
//!
//! ```text
//!   web (API, relay configs) ──reads/writes──┐
//!   consumers (events, groups) ──writes──────┼──► PgPool ──► Postgres (migrations/*.sql)
//!   postprocess (rules, notifications) ──────┤
//!   web, control silo (directory, receipts) ─┘
//! ```
//!
//! Region-side organization changes go through [`org_changes`], which appends an [`outbox`]
//! message in the same transaction; the control silo applies them with
//! [`control_directory::apply`].
//!
//! [`connect_lazy`] builds the pool, [`migrate`] applies `migrations/`, and each table has a
//! module of query functions taking any executor (pool, connection or transaction). Lists are
//! keyset-paginated through [`page`]. Errors are [`StoreError`];
//! [`StoreError::is_unavailable`] tells "database down" apart from bad requests.

pub mod alert_rules;
pub mod alerting;
pub mod api_tokens;
pub mod control_directory;
pub mod deploys;
pub mod error;
pub mod events;
pub mod group_search;
pub mod groups;
pub mod ingest;
pub mod ingest_batch;
pub mod notifications;
pub mod org_changes;
pub mod organizations;
pub mod outbox;
pub mod page;
pub mod pool;
pub mod project_keys;
pub mod projects;
pub mod releases;
pub mod short_id;
pub mod snowflake;

pub use error::{Result, StoreError};
pub use page::{Cursor, Page, PageRequest};
pub use pool::{MIGRATOR, PING_AFTER_IDLE, PoolError, PoolSettings, connect_lazy, migrate, ping};
pub use sqlx::PgPool;
