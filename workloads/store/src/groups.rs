//! `groups`: issues, one per (project, fingerprint hash).
//!
//! Rows are written by the ingest consumers (`crate::ingest`: locked with `SELECT ... FOR
//! UPDATE`, created with `INSERT ... ON CONFLICT DO NOTHING` leaving `short_id` out so the
//! `groups_short_id` trigger numbers new issues); this module reads them, changes their status
//! (one issue or many at once) and deletes them. Search conditions live in
//! [`crate::group_search`].

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

pub use crate::group_search::{Condition, GroupFilter, Term};

use crate::error::{Result, StoreError};
use crate::group_search;
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
    pub status_details: serde_json::Value,
    pub user_count: i64,
    pub first_release: Option<String>,
    pub last_release: Option<String>,
    pub project_slug: String,
    pub project_name: String,
    pub project_platform: Option<String>,
    pub organization_id: i64,
    pub organization_slug: String,
}

const SELECT: &str = "SELECT g.id, g.project_id, g.fingerprint, g.short_id, g.title, g.culprit, \
     g.level, g.type, g.status, g.resolved_at, g.first_seen, g.last_seen, g.times_seen, \
     g.first_event_id, g.last_event_id, g.metadata, g.status_details, g.user_count, \
     g.first_release, g.last_release, p.slug AS project_slug, \
     p.name AS project_name, p.platform AS project_platform, \
     o.id AS organization_id, o.slug AS organization_slug \
     FROM groups g JOIN projects p ON p.id = g.project_id \
     JOIN organizations o ON o.id = p.organization_id";

/// Issue status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupStatus {
    Unresolved,
    Resolved,
    /// Archived: hidden from the default list; reopens when its snooze (if any) is over.
    Ignored,
}

impl GroupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Unresolved => "unresolved",
            GroupStatus::Resolved => "resolved",
            GroupStatus::Ignored => "ignored",
        }
    }
}

/// A status change asked by the API.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusChange {
    pub status: GroupStatus,
    /// Returned as the issue's `statusDetails` until the next change.
    pub details: serde_json::Value,
    /// Ignored: reopen on an event after this time.
    pub ignore_until: Option<DateTime<Utc>>,
    /// Ignored: reopen once this many more events arrived.
    pub ignore_count: Option<i64>,
    /// Resolved in the next release: the issue remembers its project's newest release and
    /// reopens only on an event from a release added after it.
    pub in_next_release: bool,
}

impl StatusChange {
    pub fn new(status: GroupStatus) -> Self {
        StatusChange {
            status,
            details: serde_json::json!({}),
            ignore_until: None,
            ignore_count: None,
            in_next_release: false,
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

/// Where to list issues from.
#[derive(Clone, Copy, Debug)]
pub enum GroupScope {
    Project(i64),
    Organization(i64),
}

impl GroupScope {
    /// ` WHERE <in scope>` for a query over `groups g JOIN projects p`.
    fn push_where(self, qb: &mut QueryBuilder<'_, Postgres>) {
        match self {
            GroupScope::Project(id) => qb.push(" WHERE g.project_id = ").push_bind(id),
            GroupScope::Organization(id) => qb.push(" WHERE p.organization_id = ").push_bind(id),
        };
    }
}

pub async fn list(
    db: impl PgExecutor<'_>,
    scope: GroupScope,
    filter: &GroupFilter,
    sort: GroupSort,
    page: &PageRequest,
) -> Result<Page<Group>> {
    let mut qb = QueryBuilder::<Postgres>::new(SELECT);
    scope.push_where(&mut qb);
    group_search::push_where(&mut qb, filter);
    let key = sort.key();
    key.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list issues", None))?;
    Ok(key.finish(page, rows, |g: &Group| (sort.cursor_value(g), g.id)))
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Group>> {
    sqlx::query_as(&format!("{SELECT} WHERE g.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .map_err(StoreError::db("get issue", None))
}

/// Ids of the issues in `scope` among `ids` (to tell the caller which of its ids are not).
pub async fn ids_in_scope(
    db: impl PgExecutor<'_>,
    scope: GroupScope,
    ids: &[i64],
) -> Result<Vec<i64>> {
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT g.id FROM groups g JOIN projects p ON p.id = g.project_id",
    );
    scope.push_where(&mut qb);
    qb.push(" AND g.id = ANY(")
        .push_bind(ids.to_vec())
        .push(")");
    qb.build_query_scalar()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("look up issues", None))
}

/// Apply `change` to every issue of `scope` matching `filter` in one statement; the ids
/// changed.
pub async fn set_status(
    db: impl PgExecutor<'_>,
    scope: GroupScope,
    filter: &GroupFilter,
    change: &StatusChange,
) -> Result<Vec<i64>> {
    let mut qb = QueryBuilder::<Postgres>::new("UPDATE groups g SET status = ");
    qb.push_bind(change.status.as_str())
        .push(", status_details = ")
        .push_bind(change.details.clone())
        .push(", resolved_at = CASE WHEN g.status = 'resolved' AND ")
        .push_bind(change.status == GroupStatus::Resolved)
        .push(" THEN g.resolved_at WHEN ")
        .push_bind(change.status == GroupStatus::Resolved)
        .push(" THEN now() ELSE NULL END, ignore_until = ")
        .push_bind(change.ignore_until)
        .push(", ignore_until_times_seen = g.times_seen + ")
        .push_bind(change.ignore_count)
        .push(", resolved_in_release_id = CASE WHEN ")
        .push_bind(change.in_next_release)
        .push(format_args!(" THEN ({NEWEST_RELEASE}) ELSE NULL END"))
        .push(" FROM projects p WHERE p.id = g.project_id");
    match scope {
        GroupScope::Project(id) => qb.push(" AND g.project_id = ").push_bind(id),
        GroupScope::Organization(id) => qb.push(" AND p.organization_id = ").push_bind(id),
    };
    group_search::push_where(&mut qb, filter);
    qb.push(" RETURNING g.id");
    qb.build_query_scalar()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("update issue status", None))
}

/// The newest release of the project of issue `g` (by date added), for resolved in next
/// release.
const NEWEST_RELEASE: &str = "SELECT r.id FROM releases r \
     JOIN release_projects l ON l.release_id = r.id WHERE l.project_id = g.project_id \
     ORDER BY r.date_added DESC, r.id DESC LIMIT 1";

/// Slugs of the projects with issues matching `filter` in `scope` that have no release (and
/// so no basis for "resolved in next release").
pub async fn projects_without_release(
    db: impl PgExecutor<'_>,
    scope: GroupScope,
    filter: &GroupFilter,
) -> Result<Vec<String>> {
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT DISTINCT p.slug FROM groups g JOIN projects p ON p.id = g.project_id",
    );
    scope.push_where(&mut qb);
    group_search::push_where(&mut qb, filter);
    qb.push(
        " AND NOT EXISTS (SELECT 1 FROM release_projects l WHERE l.project_id = g.project_id) \
         ORDER BY p.slug",
    );
    qb.build_query_scalar()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("look up projects without releases", None))
}

/// Delete every issue of `scope` matching `filter` (and their events); the ids deleted.
pub async fn delete(
    db: impl PgExecutor<'_>,
    scope: GroupScope,
    filter: &GroupFilter,
) -> Result<Vec<i64>> {
    let mut qb = QueryBuilder::<Postgres>::new(
        "DELETE FROM groups g USING projects p WHERE p.id = g.project_id",
    );
    match scope {
        GroupScope::Project(id) => qb.push(" AND g.project_id = ").push_bind(id),
        GroupScope::Organization(id) => qb.push(" AND p.organization_id = ").push_bind(id),
    };
    group_search::push_where(&mut qb, filter);
    qb.push(" RETURNING g.id");
    qb.build_query_scalar()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("delete issues", None))
}
