//! Queries of the post-processor: counting an issue's events for frequency rules and recording
//! notifications idempotently with their delivery state.
//!
//! ```text
//!  eventstream record ─► count_group_events (frequency) ─► fired_recently (throttle)
//!                     ─► record_notification (ON CONFLICT: replays find the existing row)
//!                     ─► webhook ─► mark_delivered | mark_failed
//! ```

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// Events of `group_id` whose timestamp lies in `(since, until]`.
pub async fn count_group_events(
    db: impl PgExecutor<'_>,
    group_id: i64,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<i64> {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events \
         WHERE group_id = $1 AND \"timestamp\" > $2 AND \"timestamp\" <= $3",
    )
    .bind(group_id)
    .bind(since)
    .bind(until)
    .fetch_one(db)
    .await
    .map_err(StoreError::db("count issue events", None))?;
    Ok(count)
}

/// Whether `rule_id` already fired for `group_id` since `since` for an event other than
/// `event_id` (frequency rules fire once per interval, not for every event above the threshold).
pub async fn fired_recently(
    db: impl PgExecutor<'_>,
    rule_id: i64,
    group_id: i64,
    event_id: Uuid,
    since: DateTime<Utc>,
) -> Result<bool> {
    let (exists,): (bool,) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM notifications \
           WHERE rule_id = $1 AND group_id = $2 AND event_id <> $3 AND date_created > $4)",
    )
    .bind(rule_id)
    .bind(group_id)
    .bind(event_id)
    .bind(since)
    .fetch_one(db)
    .await
    .map_err(StoreError::db("check recent notifications", None))?;
    Ok(exists)
}

/// A notification row as the post-processor needs it.
#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct RecordedNotification {
    pub id: i64,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// This call created the row (false: a replay found it).
    pub created: bool,
}

/// Record that `rule_id` fired for (`group_id`, `event_id`), once: a replay returns the row
/// written the first time, with its delivery state.
pub async fn record_notification(
    db: impl PgExecutor<'_>,
    rule_id: i64,
    group_id: i64,
    event_id: Uuid,
) -> Result<RecordedNotification> {
    sqlx::query_as(
        "INSERT INTO notifications (rule_id, group_id, event_id) VALUES ($1, $2, $3) \
         ON CONFLICT (rule_id, group_id, event_id) DO UPDATE SET rule_id = notifications.rule_id \
         RETURNING id, status, attempts, (xmax = 0) AS created",
    )
    .bind(rule_id)
    .bind(group_id)
    .bind(event_id)
    .fetch_one(db)
    .await
    .map_err(StoreError::db("record notification", None))
}

/// The webhook accepted the notification after `attempts` tries in total.
pub async fn mark_delivered(db: impl PgExecutor<'_>, id: i64, attempts: i32) -> Result<()> {
    sqlx::query(
        "UPDATE notifications SET status = 'delivered', attempts = $2, last_error = NULL, \
           date_delivered = now() WHERE id = $1",
    )
    .bind(id)
    .bind(attempts)
    .execute(db)
    .await
    .map(|_| ())
    .map_err(StoreError::db("mark notification delivered", None))
}

/// Delivery gave up after `attempts` tries; `error` says why.
pub async fn mark_failed(
    db: impl PgExecutor<'_>,
    id: i64,
    attempts: i32,
    error: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE notifications SET status = 'failed', attempts = $2, last_error = $3 \
         WHERE id = $1",
    )
    .bind(id)
    .bind(attempts)
    .bind(error)
    .execute(db)
    .await
    .map(|_| ())
    .map_err(StoreError::db("mark notification failed", None))
}
