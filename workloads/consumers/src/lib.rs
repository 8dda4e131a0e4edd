//! The ingest consumers.
//!
//! ```text
//!  Kafka `ingest-events` (IngestMessage)
//!    └─► silo_kafka_consumer::Skeleton ── recv (batches) ──► Worker::handle_batch
//!          (concurrently; the first event of each issue in the batch before the rest)
//!          silo_store::releases::record_seen (once per batch: the releases it names)
//!          decode ─► process::prepare (normalize: title, culprit, level, timestamp;
//!                                      grouping: fingerprint ─► SHA-256 issue key)
//!          ─► silo_store::ingest::save_event (one transaction: issue locked or created,
//!                                             event ON CONFLICT DO NOTHING, times_seen only
//!                                             for new rows)
//!          ─► Kafka `events` (EventStreamMessage, delivery awaited)
//!    ◄── commit offsets (only after both, for the whole batch) ──┘
//! ```
//!
//! At-least-once in, exactly-once effect: a replayed message finds its stored event and only
//! republishes the same eventstream record. Postgres or Kafka outages are retried with
//! backoff without committing, so nothing is lost.

pub mod app;
pub mod args;
pub mod enrich;
pub mod grouping;
pub mod logentry;
pub mod metrics;
pub mod normalize;
pub mod process;
pub mod worker;
