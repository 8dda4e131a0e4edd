//! `events`: stored events, unique per (project, event id). Written by the ingest consumers.
//!
//! The event lists take the issue search's conditions ([`crate::group_search`]), applied to
//! each event's own columns and tags (`is:` to the status of its issue).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::group_search::{Condition, Term};
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

/// An issue's events matching `conditions`, newest first.
pub async fn list_for_group(
    db: impl PgExecutor<'_>,
    group_id: i64,
    conditions: &[Condition],
    page: &PageRequest,
) -> Result<Page<Event>> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(" WHERE e.group_id = ").push_bind(group_id);
    push_conditions(&mut qb, conditions);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list events", None))?;
    Ok(ORDER.finish(page, rows, |e: &Event| (time_to_micros(e.timestamp), e.id)))
}

/// A project's events matching `conditions`, newest first (the events-table index on project
/// and time serves it).
pub async fn list_for_project(
    db: impl PgExecutor<'_>,
    project_id: i64,
    conditions: &[Condition],
    page: &PageRequest,
) -> Result<Page<Event>> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    qb.push(" WHERE e.project_id = ").push_bind(project_id);
    push_conditions(&mut qb, conditions);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list events", None))?;
    Ok(ORDER.finish(page, rows, |e: &Event| (time_to_micros(e.timestamp), e.id)))
}

/// Append ` AND <condition>` for each condition, over the event row `e`. Every term is a
/// plain true/false (never NULL), so a negation selects exactly the other events.
pub fn push_conditions(qb: &mut QueryBuilder<'_, Postgres>, conditions: &[Condition]) {
    for condition in conditions {
        qb.push(if condition.negated {
            " AND NOT "
        } else {
            " AND "
        });
        match &condition.term {
            Term::Status(status) => {
                qb.push("EXISTS (SELECT 1 FROM groups g WHERE g.id = e.group_id AND g.status = ")
                    .push_bind(status.as_str())
                    .push(")");
            }
            Term::Level(level) => {
                qb.push("(e.level = ").push_bind(level.clone()).push(")");
            }
            Term::Environment(env) => {
                qb.push("(e.environment IS NOT DISTINCT FROM ")
                    .push_bind(env.clone())
                    .push(")");
            }
            Term::Release(release) => {
                qb.push("(e.release IS NOT DISTINCT FROM ")
                    .push_bind(release.clone())
                    .push(")");
            }
            Term::UserId(id) => {
                qb.push("((e.data->'user'->>'id') IS NOT DISTINCT FROM ")
                    .push_bind(id.clone())
                    .push(")");
            }
            Term::Tag { key, value } => {
                qb.push("(e.tags @> ")
                    .push_bind(serde_json::json!({ key: value }))
                    .push(")");
            }
            Term::Text(text) => {
                let pattern = format!("%{}%", crate::group_search::escape_like(text));
                qb.push("(e.title ILIKE ")
                    .push_bind(pattern.clone())
                    .push(" OR e.message ILIKE ")
                    .push_bind(pattern.clone())
                    .push(" OR e.culprit ILIKE ")
                    .push_bind(pattern)
                    .push(")");
            }
        }
    }
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
