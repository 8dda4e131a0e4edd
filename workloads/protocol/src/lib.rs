//! Wire types the workloads exchange, so producer and consumer can never disagree.
//!
//! ```text
//!  relay ──POST /api/0/relays/projectconfigs/ (signed, relay_auth)──► web
//!    │        ◄── ProjectConfigResponse ──┘
//!    ├──► Kafka `ingest-events` (IngestMessage) ──► consumers ──► Postgres
//!    └──► Kafka `outcomes` (Outcome)                   │
//!                                                      └──► Kafka `events` (EventStreamMessage) ──► postprocess
//! ```

pub mod messages;
pub mod project_config;
pub mod relay_auth;
pub mod topics;

pub use messages::{EventStreamMessage, IngestMessage, Outcome, OutcomeKind};
pub use project_config::{
    KeyState, ProjectConfig, ProjectConfigEntry, ProjectConfigRequest, ProjectConfigResponse,
    ProjectOptions, Quota, QuotaScope,
};
