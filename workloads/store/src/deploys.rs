//! `deploys`: a release deployed to an environment (`sentry-cli releases deploys new`).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest, SortKey, time_to_micros};

/// Longest environment name (Sentry's limit).
pub const MAX_ENVIRONMENT_LEN: usize = 64;

#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct Deploy {
    pub id: i64,
    pub release_id: i64,
    pub environment: String,
    pub name: Option<String>,
    pub url: Option<String>,
    pub date_started: Option<DateTime<Utc>>,
    pub date_finished: DateTime<Utc>,
}

const COLUMNS: &str =
    "d.id, d.release_id, d.environment, d.name, d.url, d.date_started, d.date_finished";
/// Latest finished first.
const ORDER: SortKey = SortKey::time("d.date_finished", "d.id", true);

/// A deploy to record; `date_finished` defaults to now.
#[derive(Clone, Debug, Default)]
pub struct NewDeploy {
    pub environment: String,
    pub name: Option<String>,
    pub url: Option<String>,
    pub date_started: Option<DateTime<Utc>>,
    pub date_finished: Option<DateTime<Utc>>,
}

pub async fn create(db: impl PgExecutor<'_>, release_id: i64, new: &NewDeploy) -> Result<Deploy> {
    sqlx::query_as(&format!(
        "INSERT INTO deploys AS d (release_id, environment, name, url, date_started, \
           date_finished) VALUES ($1, $2, $3, $4, $5, COALESCE($6, now())) RETURNING {COLUMNS}"
    ))
    .bind(release_id)
    .bind(&new.environment)
    .bind(&new.name)
    .bind(&new.url)
    .bind(new.date_started)
    .bind(new.date_finished)
    .fetch_one(db)
    .await
    .map_err(StoreError::db("create deploy", None))
}

/// A release's deploys, latest first.
pub async fn list(
    db: impl PgExecutor<'_>,
    release_id: i64,
    page: &PageRequest,
) -> Result<Page<Deploy>> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM deploys d WHERE d.release_id = "
    ));
    qb.push_bind(release_id);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list deploys", None))?;
    Ok(ORDER.finish(page, rows, |d: &Deploy| {
        (time_to_micros(d.date_finished), d.id)
    }))
}

/// The latest deploy of each release in `release_ids` that has one (Sentry's `lastDeploy`).
pub async fn last_of(db: impl PgExecutor<'_>, release_ids: &[i64]) -> Result<Vec<Deploy>> {
    sqlx::query_as(&format!(
        "SELECT DISTINCT ON (d.release_id) {COLUMNS} FROM deploys d \
         WHERE d.release_id = ANY($1) ORDER BY d.release_id, d.date_finished DESC, d.id DESC"
    ))
    .bind(release_ids)
    .fetch_all(db)
    .await
    .map_err(StoreError::db("list last deploys", None))
}
