//! `notifications`: one row per rule firing for an (issue, event), with delivery state.
//! Written by the post-processor; read here for the API.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest, SortKey};

#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub rule_id: i64,
    pub group_id: i64,
    pub event_id: Uuid,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_delivered: Option<DateTime<Utc>>,
}

const ORDER: SortKey = SortKey::int("n.id", "n.id", true);

/// A rule's notifications, newest first.
pub async fn list_for_rule(
    db: impl PgExecutor<'_>,
    rule_id: i64,
    page: &PageRequest,
) -> Result<Page<Notification>> {
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT n.id, n.rule_id, n.group_id, n.event_id, n.status, n.attempts, n.last_error, \
         n.date_created, n.date_delivered FROM notifications n WHERE n.rule_id = ",
    );
    qb.push_bind(rule_id);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list notifications", None))?;
    Ok(ORDER.finish(page, rows, |n: &Notification| (n.id, n.id)))
}
