//! `organizations`: the tenants of a region.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest, SortKey};

#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct Organization {
    pub id: i64,
    pub slug: String,
    pub name: String,
    /// `active`, `pending_deletion` or `deletion_in_progress`.
    pub status: String,
    pub date_created: DateTime<Utc>,
}

const COLUMNS: &str = "o.id, o.slug, o.name, o.status, o.date_created";
const ORDER: SortKey = SortKey::int("o.id", "o.id", false);

/// Create an organization; [`StoreError::Conflict`] when the slug is taken.
pub async fn create(db: impl PgExecutor<'_>, slug: &str, name: &str) -> Result<Organization> {
    sqlx::query_as(
        "INSERT INTO organizations (slug, name) VALUES ($1, $2) \
         RETURNING id, slug, name, status, date_created",
    )
    .bind(slug)
    .bind(name)
    .fetch_one(db)
    .await
    .map_err(StoreError::db(
        "create organization",
        Some(&format!("an organization with slug {slug:?}")),
    ))
}

pub async fn get_by_slug(db: impl PgExecutor<'_>, slug: &str) -> Result<Option<Organization>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM organizations o WHERE o.slug = $1"
    ))
    .bind(slug)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("get organization", None))
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Organization>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM organizations o WHERE o.id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("get organization", None))
}

/// Organizations in creation order.
pub async fn list(db: impl PgExecutor<'_>, page: &PageRequest) -> Result<Page<Organization>> {
    let mut qb =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM organizations o WHERE TRUE"));
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list organizations", None))?;
    Ok(ORDER.finish(page, rows, |o: &Organization| (o.id, o.id)))
}
