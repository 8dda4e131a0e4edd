//! The ingest consumers.
//!
//! ```text
//!  Kafka `ingest-events` (IngestMessage)
//!    └─► silo_kafka_consumer::Skeleton ── recv (batches: --batch-size, --batch-wait) ──►
//!        Worker::handle_batch
//!          decode ─► process::prepare (normalize: title, culprit, level, timestamp;
//!                                      grouping: fingerprint ─► SHA-256 issue key)
//!          ─► silo_store::releases::record_seen (once per batch: the releases it names)
//!          ─► silo_store::ingest_batch::save_batch (one transaction for the batch: issues
//!                locked or created, events ON CONFLICT DO NOTHING, counters once per issue;
//!                a batch failing for good: ingest::save_event one by one)
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
