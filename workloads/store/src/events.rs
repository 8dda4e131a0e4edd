//! `events`: stored events, unique per (project, event id). Written by the ingest consumers.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest, SortKey, time_to_micros};

#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct Event {
    pub id: i64,
    pub project_id: i64,
    pub event_id: Uuid,
    pub group_id: i64,
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
}

const SELECT: &str = "SELECT e.id, e.project_id, e.event_id, e.group_id, e.\"timestamp\", \
     e.received, e.title, e.message, e.culprit, e.platform, e.level, e.environment, e.release, \
     e.data FROM events e";
const ORDER: SortKey = SortKey::time("e.\"timestamp\"", "e.id", true);

/// An issue's events, newest first.
pub async fn list_for_group(
    db: impl PgExecutor<'_>,
    group_id: i64,
    page: &PageRequest,
) -> Result<Page<Event>> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(" WHERE e.group_id = ").push_bind(group_id);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list events", None))?;
    Ok(ORDER.finish(page, rows, |e: &Event| (time_to_micros(e.timestamp), e.id)))
}

/// A project's events, newest first (the events-table index on project and time serves it).
pub async fn list_for_project(
    db: impl PgExecutor<'_>,
    project_id: i64,
    page: &PageRequest,
) -> Result<Page<Event>> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(" WHERE e.project_id = ").push_bind(project_id);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list events", None))?;
    Ok(ORDER.finish(page, rows, |e: &Event| (time_to_micros(e.timestamp), e.id)))
}

pub async fn get(
    db: impl PgExecutor<'_>,
    project_id: i64,
    event_id: Uuid,
) -> Result<Option<Event>> {
    sqlx::query_as(&format!(
        "{SELECT} WHERE e.project_id = $1 AND e.event_id = $2"
    ))
    .bind(project_id)
    .bind(event_id)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("get event", None))
}

/// The newest or oldest event of an issue.
pub async fn edge_of_group(
    db: impl PgExecutor<'_>,
    group_id: i64,
    newest: bool,
) -> Result<Option<Event>> {
    let dir = if newest { "DESC" } else { "ASC" };
    sqlx::query_as(&format!(
        "{SELECT} WHERE e.group_id = $1 ORDER BY e.\"timestamp\" {dir}, e.id {dir} LIMIT 1"
    ))
    .bind(group_id)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("get event", None))
}
