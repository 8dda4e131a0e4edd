//! `groups`: issues, one per (project, fingerprint hash).
//!
//! Rows are written by the ingest consumers (`crate::ingest`: locked with `SELECT ... FOR
//! UPDATE`, created with `INSERT ... ON CONFLICT DO NOTHING` leaving `short_id` out so the
//! `groups_short_id` trigger numbers new issues); this module reads them and changes their
//! status.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest, SortKey, time_to_micros};

/// An issue with the project and organization it belongs to.
#[derive(Clone, Debug, FromRow, PartialEq)]
pub struct Group {
    pub id: i64,
    pub project_id: i64,
    pub fingerprint: String,
    pub short_id: i64,
    pub title: String,
    pub culprit: String,
    pub level: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub status: String,
    pub resolved_at: Option<DateTime<Utc>>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub times_seen: i64,
    pub first_event_id: Uuid,
    pub last_event_id: Uuid,
    pub metadata: serde_json::Value,
    pub project_slug: String,
    pub project_name: String,
    pub project_platform: Option<String>,
    pub organization_id: i64,
    pub organization_slug: String,
}

const SELECT: &str = "SELECT g.id, g.project_id, g.fingerprint, g.short_id, g.title, g.culprit, \
     g.level, g.type, g.status, g.resolved_at, g.first_seen, g.last_seen, g.times_seen, \
     g.first_event_id, g.last_event_id, g.metadata, p.slug AS project_slug, \
     p.name AS project_name, p.platform AS project_platform, \
     o.id AS organization_id, o.slug AS organization_slug \
     FROM groups g JOIN projects p ON p.id = g.project_id \
     JOIN organizations o ON o.id = p.organization_id";

/// Issue status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStatus {
    Unresolved,
    Resolved,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Unresolved => "unresolved",
            GroupStatus::Resolved => "resolved",
        }
    }
}

/// List order, named like Sentry's `sort` parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupSort {
    /// Most recently seen first (`date`, the default).
    #[default]
    LastSeen,
    /// Newest issues first (`new`).
    FirstSeen,
    /// Most events first (`freq`).
    TimesSeen,
}

impl GroupSort {
    fn key(self) -> SortKey {
        match self {
            GroupSort::LastSeen => SortKey::time("g.last_seen", "g.id", true),
            GroupSort::FirstSeen => SortKey::time("g.first_seen", "g.id", true),
            GroupSort::TimesSeen => SortKey::int("g.times_seen", "g.id", true),
        }
    }

    fn cursor_value(self, g: &Group) -> i64 {
        match self {
            GroupSort::LastSeen => time_to_micros(g.last_seen),
            GroupSort::FirstSeen => time_to_micros(g.first_seen),
            GroupSort::TimesSeen => g.times_seen,
        }
    }
}

/// Which issues to list.
#[derive(Clone, Debug, Default)]
pub struct GroupFilter {
    pub status: Option<GroupStatus>,
    /// Case-insensitive substring of the title or culprit.
    pub text: Option<String>,
    /// Only these projects (empty: all in scope).
    pub project_ids: Vec<i64>,
}

/// Where to list issues from.
#[derive(Clone, Copy, Debug)]
pub enum GroupScope {
    Project(i64),
    Organization(i64),
}

pub async fn list(
    db: impl PgExecutor<'_>,
    scope: GroupScope,
    filter: &GroupFilter,
    sort: GroupSort,
    page: &PageRequest,
) -> Result<Page<Group>> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    match scope {
        GroupScope::Project(id) => qb.push(" WHERE g.project_id = ").push_bind(id),
        GroupScope::Organization(id) => qb.push(" WHERE p.organization_id = ").push_bind(id),
    };
    if let Some(status) = filter.status {
        qb.push(" AND g.status = ").push_bind(status.as_str());
    }
    if !filter.project_ids.is_empty() {
        qb.push(" AND g.project_id = ANY(")
            .push_bind(filter.project_ids.clone())
            .push(")");
    }
    if let Some(text) = filter.text.as_deref().filter(|t| !t.is_empty()) {
        let pattern = format!("%{}%", escape_like(text));
        qb.push(" AND (g.title ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR g.culprit ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    let key = sort.key();
    key.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list issues", None))?;
    Ok(key.finish(page, rows, |g: &Group| (sort.cursor_value(g), g.id)))
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Group>> {
    sqlx::query_as(&format!("{SELECT} WHERE g.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .map_err(StoreError::db("get issue", None))
}

/// Resolve or reopen an issue; whether it exists.
pub async fn set_status(db: impl PgExecutor<'_>, id: i64, status: GroupStatus) -> Result<bool> {
    sqlx::query(
        "UPDATE groups SET status = $2, \
           resolved_at = CASE WHEN $2 = 'resolved' THEN now() ELSE NULL END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .execute(db)
    .await
    .map(|r| r.rows_affected() > 0)
    .map_err(StoreError::db("update issue status", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("50%_off\\"), "50\\%\\_off\\\\");
    }
}
