//! Sentry-compatible ingest for the region silo.
//!
//! ```text
//!  SDK ─POST /api/<project>/envelope/ | /store/──► ingest handler
//!        │ auth: X-Sentry-Auth | ?sentry_key= | envelope "dsn"
//!        │ body: size limit (413) ─► gzip/deflate ─► envelope parse (400)
//!        ├─► project_config: memory ─► Redis ─► web (signed, batched)   unknown/disabled: 401/403
//!        ├─► rate_limit: Redis fixed windows per quota                 exceeded: 429 + headers
//!        │ client address: TCP peer, or X-Forwarded-For of --trusted-proxies (client_addr)
//!        ├─► kafka: `ingest-events` (IngestMessage, key = project id), await ack   down: 503
//!        │     └─► 200 {"id": "<event id>"}
//!        └─► outcomes: rejections aggregated per second ─► Kafka `outcomes`
//!  /healthz /readyz /metrics ──► silo-runtime admin router
//! ```
//!
//! [`router::router`] builds the HTTP app for a [`state::RelayState`]; [`app::build`] creates
//! the components from a [`cli::Cli`] and [`app::run`] is the binary's composition root.

pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod client_addr;
pub mod envelope;
pub mod error;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod outcomes;
pub mod project_config;
pub mod rate_limit;
pub mod redis_conn;
pub mod router;
pub mod state;

pub use router::router;
