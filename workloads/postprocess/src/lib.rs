//! The post-processor.
//!
//! ```text
//!  Kafka `events` (EventStreamMessage)
//!    └─► silo_kafka_consumer::Skeleton ── recv ──► Worker::handle
//!          alert_rules::enabled_for_project ─► rules::Rule::fires
//!            (new_issue: is_new · regression: is_regression ·
//!             frequency: > N events of the issue in T seconds, counted in Postgres,
//!             at most once per T)
//!          ─► alerting::record_notification (unique per rule + issue + event)
//!          ─► webhook::deliver (POST payload::build, retries with backoff)
//!          ─► mark_delivered | mark_failed
//!    ◄── commit offset (after recording) ──┘
//! ```
//!
//! A replay finds its notification rows: settled ones are not sent again, pending ones are.

pub mod app;
pub mod args;
pub mod metrics;
pub mod payload;
pub mod rules;
pub mod webhook;
pub mod worker;
