//! `projects`: an organization's applications; events and issues belong to one.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest, SortKey};

#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub organization_id: i64,
    pub slug: String,
    pub name: String,
    pub platform: Option<String>,
    pub date_created: DateTime<Utc>,
}

const COLUMNS: &str = "p.id, p.organization_id, p.slug, p.name, p.platform, p.date_created";
const ORDER: SortKey = SortKey::int("p.id", "p.id", false);

/// Create a project; [`StoreError::Conflict`] when the org already has the slug.
pub async fn create(
    db: impl PgExecutor<'_>,
    organization_id: i64,
    slug: &str,
    name: &str,
    platform: Option<&str>,
) -> Result<Project> {
    sqlx::query_as(
        "INSERT INTO projects (organization_id, slug, name, platform) VALUES ($1, $2, $3, $4) \
         RETURNING id, organization_id, slug, name, platform, date_created",
    )
    .bind(organization_id)
    .bind(slug)
    .bind(name)
    .bind(platform)
    .fetch_one(db)
    .await
    .map_err(StoreError::db(
        "create project",
        Some(&format!(
            "a project with slug {slug:?} in this organization"
        )),
    ))
}

pub async fn get_by_slug(
    db: impl PgExecutor<'_>,
    organization_id: i64,
    slug: &str,
) -> Result<Option<Project>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM projects p WHERE p.organization_id = $1 AND p.slug = $2"
    ))
    .bind(organization_id)
    .bind(slug)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("get project", None))
}

pub async fn get(db: impl PgExecutor<'_>, id: i64) -> Result<Option<Project>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM projects p WHERE p.id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
        .map_err(StoreError::db("get project", None))
}

/// An organization's projects in creation order.
pub async fn list_for_organization(
    db: impl PgExecutor<'_>,
    organization_id: i64,
    page: &PageRequest,
) -> Result<Page<Project>> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM projects p WHERE p.organization_id = "
    ));
    qb.push_bind(organization_id);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list projects", None))?;
    Ok(ORDER.finish(page, rows, |p: &Project| (p.id, p.id)))
}
