//! The Kafka consumer skeleton shared by the `consumers` and `postprocess` workloads.
//!
//! ```text
//!  Skeleton::start: region silo? ─► contract reloader ─► StreamConsumer ─► admin server
//!  Skeleton::run(migrate, handler):
//!    Postgres::wait_until_ready (migrate or ping, backoff) ─► subscribe(topic)
//!    ┌─► recv a batch (await the first message, then more up to the batch size or wait)
//!    │     └─► Handler::handle_batch(payloads)    (Postgres::query retries with backoff)
//!    │           Ok ─► commit the batch's offsets (async) ──┐
//!    └──────────────────────────────────────────────────────┘
//!                Err(Interrupted): shutdown while retrying ─► stop, batch left uncommitted
//!    shutdown ─► commit every finished batch (sync) ─► admin server stops
//!  drain_within(shutdown timeout) cuts Skeleton::run off that long after shutdown fired
//! ```
//!
//! Offsets are committed only after the handler returned `Ok` for the batch, that is after
//! its effects are durable, so a crash or a kill at any point replays at most the
//! uncommitted batch; handlers make replays idempotent. A receive error or a dependency
//! error pauses with exponential backoff (cut short by shutdown) instead of skipping.

pub mod batches;
pub mod postgres;
pub mod retry;
pub mod settings;
pub mod skeleton;

pub use batches::{BatchLimits, Handler};
pub use postgres::Postgres;
pub use retry::{Attempt, retry};
pub use settings::KafkaSettings;
pub use skeleton::{Config, Error, Skeleton, drain_within};

/// Shutdown arrived while work was waiting to be retried; its offset stays uncommitted so
/// the next consumer processes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("shut down before the message was processed")]
pub struct Interrupted;

/// Counts an error in the workload's `errors` metric by kind; the workload's metrics
/// implement it and hand it to the skeleton in [`Config::errors`].
///
/// The skeleton counts `kafka_consume` (receiving failed) and `commit` (an offset commit
/// failed); [`Postgres::query`] counts `postgres` (retried) and `invalid` (skipped).
pub trait CountErrors: Send + Sync + std::fmt::Debug {
    fn error(&self, kind: &'static str);
}
