//! Writes of the ingest consumers: one event and its issue, in one transaction.
//!
//! ```text
//!  save_event ─► BEGIN
//!                ├─ event already stored? ──yes──► ROLLBACK, return what was stored (duplicate)
//!                ├─ SELECT groups ... FOR UPDATE (locks the issue), or when there is none
//!                │  INSERT groups ... ON CONFLICT DO NOTHING (creates it; lost race: lock it)
//!                ├─ INSERT events ... ON CONFLICT DO NOTHING
//!                ├─ INSERT group_users ... ON CONFLICT DO NOTHING (a new user of the issue?)
//!                ├─ UPDATE groups: times_seen + 1, users, first/last seen and release, reopen
//!                │  if resolved (in next release: by a newer release) or an ignored issue's
//!                │  snooze is over
//!                └─ COMMIT
//! ```
//!
//! The releases of a batch are recorded once per batch, before its events, with
//! [`crate::releases::record_seen`].
//!
//! The issue's `times_seen` grows only when the event row was inserted, so replaying a message
//! any number of times leaves one event and the right count.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// SQLSTATE of a unique violation.
const UNIQUE_VIOLATION: &str = "23505";

/// A normalized event ready to store.
#[derive(Clone, Debug)]
pub struct NewEvent {
    pub project_id: i64,
    pub event_id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub received: DateTime<Utc>,
    pub title: String,
    pub message: String,
    pub culprit: String,
    pub platform: String,
    pub level: String,
    pub environment: Option<String>,
    pub release: Option<String>,
    pub data: serde_json::Value,
    /// Stable hash of the grouping fingerprint (the issue's identity within the project).
    pub fingerprint: String,
    /// Issue type: `error` (exceptions) or `default` (messages).
    pub group_type: String,
    /// Issue metadata shown in lists (`type`, `value`, `title`, ...).
    pub metadata: serde_json::Value,
    /// Every tag of the event (keys unique), indexed for search.
    pub tags: Vec<(String, String)>,
    /// The event's user (`id:42`, `email:a@b`, ...), counted once per issue.
    pub user: Option<String>,
}

impl NewEvent {
    pub(crate) fn tags_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.tags
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect(),
        )
    }
}

/// What storing an event did.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct SavedEvent {
    pub group_id: i64,
    /// The event created its issue.
    pub is_new: bool,
    /// The event reopened a resolved issue.
    pub is_regression: bool,
    /// The event was stored before (a replay); nothing changed now.
    #[sqlx(skip)]
    pub duplicate: bool,
}

#[derive(FromRow)]
struct LockedGroup {
    id: i64,
    created: bool,
    /// The event reopens the resolved issue (see the `event_regresses` SQL function).
    regresses: bool,
}

/// Store `event` and count it on its issue, exactly once per (project, event id).
pub async fn save_event(pool: &PgPool, event: &NewEvent) -> Result<SavedEvent> {
    const OP: &str = "store event";
    let mut tx = pool.begin().await.map_err(StoreError::db(OP, None))?;

    if let Some(stored) = stored_event(&mut *tx, event.project_id, event.event_id).await? {
        return Ok(stored);
    }

    // Lock the issue, or create it; counters are only touched below, once the event row is
    // known to be new. Existing issues (nearly every event) are locked without a write.
    let group = lock_or_create_group(&mut tx, event).await?;

    let is_new = group.created;
    let is_regression = !is_new && group.regresses;

    let inserted: Option<(i64,)> = sqlx::query_as(
        "INSERT INTO events (project_id, event_id, group_id, \"timestamp\", received, title, \
           message, culprit, platform, level, environment, release, data, is_new, is_regression, \
           tags) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (project_id, event_id) DO NOTHING RETURNING id",
    )
    .bind(event.project_id)
    .bind(event.event_id)
    .bind(group.id)
    .bind(event.timestamp)
    .bind(event.received)
    .bind(&event.title)
    .bind(&event.message)
    .bind(&event.culprit)
    .bind(&event.platform)
    .bind(&event.level)
    .bind(&event.environment)
    .bind(&event.release)
    .bind(&event.data)
    .bind(is_new)
    .bind(is_regression)
    .bind(event.tags_json())
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(OP, None))?;

    if inserted.is_none() {
        // Stored concurrently by another consumer since the check above: undo the group
        // upsert (a no-op, or an issue nobody else saw yet) and report the stored event.
        tx.rollback().await.map_err(StoreError::db(OP, None))?;
        return stored_event(pool, event.project_id, event.event_id)
            .await?
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "event {} conflicted but is not stored",
                    event.event_id
                ))
            });
    }

    // A new user of the issue counts once.
    let new_user = match &event.user {
        Some(user) => sqlx::query(
            "INSERT INTO group_users (group_id, user_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(group.id)
        .bind(user)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db(OP, None))?
        .rows_affected() as i64,
        None => 0,
    };

    // Resolved issues reopen (a regression; resolved in next release: only from a newer
    // release, see `event_regresses`); ignored ones reopen once their snooze is over
    // (time passed or count exceeded); ignored-forever issues stay ignored. Every expression
    // reads the row as it was before this event.
    const REOPENS: &str = "(event_regresses(status, resolved_in_release_id, $5) \
         OR (status = 'ignored' AND \
         (ignore_until <= now() OR ignore_until_times_seen <= times_seen)))";
    sqlx::query(&format!(
        "UPDATE groups SET \
           times_seen = times_seen + 1, \
           user_count = user_count + $4, \
           first_seen = LEAST(first_seen, $2), \
           last_event_id = CASE WHEN $2 >= last_seen THEN $3 ELSE last_event_id END, \
           last_seen = GREATEST(last_seen, $2), \
           first_release = COALESCE(first_release, $5), \
           last_release = COALESCE($5, last_release), \
           status = CASE WHEN {REOPENS} THEN 'unresolved' ELSE status END, \
           status_details = CASE WHEN {REOPENS} THEN '{{}}'::jsonb ELSE status_details END, \
           ignore_until = CASE WHEN {REOPENS} THEN NULL ELSE ignore_until END, \
           ignore_until_times_seen = CASE WHEN {REOPENS} THEN NULL \
             ELSE ignore_until_times_seen END, \
           resolved_at = CASE WHEN {REOPENS} THEN NULL ELSE resolved_at END, \
           resolved_in_release_id = CASE WHEN {REOPENS} THEN NULL \
             ELSE resolved_in_release_id END \
         WHERE id = $1"
    ))
    .bind(group.id)
    .bind(event.timestamp)
    .bind(event.event_id)
    .bind(new_user)
    .bind(&event.release)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::db(OP, None))?;

    tx.commit().await.map_err(StoreError::db(OP, None))?;
    Ok(SavedEvent {
        group_id: group.id,
        is_new,
        is_regression,
        duplicate: false,
    })
}

/// The event's issue, row-locked until the transaction ends; created (numbered by the
/// `groups_short_id` trigger) when it does not exist yet. When another transaction creates it
/// first, the insert does nothing and the issue is locked as it committed.
async fn lock_or_create_group(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    event: &NewEvent,
) -> Result<LockedGroup> {
    const OP: &str = "store event";
    const LOCK: &str = "SELECT id, false AS created, \
         event_regresses(status, resolved_in_release_id, $3) AS regresses FROM groups \
         WHERE project_id = $1 AND fingerprint = $2 FOR UPDATE";
    let lock = || {
        sqlx::query_as::<_, LockedGroup>(LOCK)
            .bind(event.project_id)
            .bind(&event.fingerprint)
            .bind(&event.release)
    };
    if let Some(group) = lock()
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::db(OP, None))?
    {
        return Ok(group);
    }
    let created: Option<LockedGroup> = sqlx::query_as(
        "INSERT INTO groups (project_id, fingerprint, title, culprit, level, type, first_seen, \
           last_seen, times_seen, first_event_id, last_event_id, metadata) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0, $8, $8, $9) \
         ON CONFLICT (project_id, fingerprint) DO NOTHING \
         RETURNING id, true AS created, false AS regresses",
    )
    .bind(event.project_id)
    .bind(&event.fingerprint)
    .bind(&event.title)
    .bind(&event.culprit)
    .bind(&event.level)
    .bind(&event.group_type)
    .bind(event.timestamp)
    .bind(event.event_id)
    .bind(&event.metadata)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::db(OP, None))?;
    match created {
        Some(group) => Ok(group),
        None => lock()
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::db(OP, None))?
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "issue {} of project {} conflicted but is not stored",
                    event.fingerprint, event.project_id
                ))
            }),
    }
}

async fn stored_event(
    db: impl sqlx::PgExecutor<'_>,
    project_id: i64,
    event_id: Uuid,
) -> Result<Option<SavedEvent>> {
    let stored: Option<SavedEvent> = sqlx::query_as(
        "SELECT group_id, is_new, is_regression FROM events \
         WHERE project_id = $1 AND event_id = $2",
    )
    .bind(project_id)
    .bind(event_id)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("look up stored event", None))?;
    Ok(stored.map(|s| SavedEvent {
        duplicate: true,
        ..s
    }))
}

/// Whether the error means the event can never be stored (its project is gone, a value is out
/// of range): retrying will not help, unlike [`StoreError::is_unavailable`]. A unique violation
/// is not permanent: every unique key written here is upserted, so one can only come from a
/// concurrent writer, and the retry finds its row.
pub fn is_permanent(error: &StoreError) -> bool {
    match error {
        StoreError::Database {
            source: sqlx::Error::Database(e),
            ..
        } => {
            // Class 22 data exceptions, 23 integrity violations (e.g. unknown project) except
            // 23505 unique_violation.
            e.code().is_some_and(|c| {
                c.starts_with("22") || (c.starts_with("23") && c != UNIQUE_VIOLATION)
            })
        }
        StoreError::Invalid(_) => true,
        _ => false,
    }
}
