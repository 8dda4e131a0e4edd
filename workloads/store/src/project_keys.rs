//! `project_keys`: the client keys (DSNs) events are sent with.

use chrono::{DateTime, Utc};
use rand::Rng;
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest, SortKey};

#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct ProjectKey {
    pub id: i64,
    pub project_id: i64,
    pub public_key: String,
    pub secret_key: String,
    pub label: String,
    pub is_active: bool,
    pub rate_limit_count: Option<i32>,
    pub rate_limit_window: Option<i32>,
    pub date_created: DateTime<Utc>,
}

impl ProjectKey {
    /// The key's rate limit, when both parts are set.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        match (self.rate_limit_count, self.rate_limit_window) {
            (Some(count), Some(window)) => Some(RateLimit { count, window }),
            _ => None,
        }
    }
}

/// At most `count` events per `window` seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub count: i32,
    pub window: i32,
}

/// Changes to a key; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct KeyUpdate {
    pub label: Option<String>,
    pub is_active: Option<bool>,
    /// `Some(None)` removes the rate limit.
    pub rate_limit: Option<Option<RateLimit>>,
}

const COLUMNS: &str = "k.id, k.project_id, k.public_key, k.secret_key, k.label, k.is_active, \
                       k.rate_limit_count, k.rate_limit_window, k.date_created";
const ORDER: SortKey = SortKey::int("k.id", "k.id", false);

/// 32 lowercase hex characters, the shape of Sentry's public and secret keys.
pub fn generate_key() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

/// Create a key with fresh public and secret parts.
pub async fn create(
    db: impl PgExecutor<'_>,
    project_id: i64,
    label: &str,
    rate_limit: Option<RateLimit>,
) -> Result<ProjectKey> {
    sqlx::query_as(
        "INSERT INTO project_keys \
           (project_id, public_key, secret_key, label, rate_limit_count, rate_limit_window) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         RETURNING id, project_id, public_key, secret_key, label, is_active, \
                   rate_limit_count, rate_limit_window, date_created",
    )
    .bind(project_id)
    .bind(generate_key())
    .bind(generate_key())
    .bind(label)
    .bind(rate_limit.map(|r| r.count))
    .bind(rate_limit.map(|r| r.window))
    .fetch_one(db)
    .await
    .map_err(StoreError::db(
        "create project key",
        Some("a key with this public key"),
    ))
}

/// A project's key by its public part (the id Sentry's API uses for keys).
pub async fn get(
    db: impl PgExecutor<'_>,
    project_id: i64,
    public_key: &str,
) -> Result<Option<ProjectKey>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM project_keys k WHERE k.project_id = $1 AND k.public_key = $2"
    ))
    .bind(project_id)
    .bind(public_key)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("get project key", None))
}

pub async fn list_for_project(
    db: impl PgExecutor<'_>,
    project_id: i64,
    page: &PageRequest,
) -> Result<Page<ProjectKey>> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM project_keys k WHERE k.project_id = "
    ));
    qb.push_bind(project_id);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list project keys", None))?;
    Ok(ORDER.finish(page, rows, |k: &ProjectKey| (k.id, k.id)))
}

/// Apply `update` to a key; `None` when the key does not exist.
pub async fn update(
    db: impl PgExecutor<'_>,
    key_id: i64,
    update: &KeyUpdate,
) -> Result<Option<ProjectKey>> {
    let (set_limit, limit) = match update.rate_limit {
        None => (false, None),
        Some(limit) => (true, limit),
    };
    sqlx::query_as(
        "UPDATE project_keys k SET \
           label = COALESCE($2, k.label), \
           is_active = COALESCE($3, k.is_active), \
           rate_limit_count = CASE WHEN $4 THEN $5 ELSE k.rate_limit_count END, \
           rate_limit_window = CASE WHEN $4 THEN $6 ELSE k.rate_limit_window END \
         WHERE k.id = $1 \
         RETURNING id, project_id, public_key, secret_key, label, is_active, \
                   rate_limit_count, rate_limit_window, date_created",
    )
    .bind(key_id)
    .bind(update.label.as_deref())
    .bind(update.is_active)
    .bind(set_limit)
    .bind(limit.map(|r| r.count))
    .bind(limit.map(|r| r.window))
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("update project key", None))
}

/// Delete a key; whether it existed.
pub async fn delete(db: impl PgExecutor<'_>, key_id: i64) -> Result<bool> {
    sqlx::query("DELETE FROM project_keys WHERE id = $1")
        .bind(key_id)
        .execute(db)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::db("delete project key", None))
}

/// What the relay needs to know about a key: the row joined with its project and organization.
#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct RelayKey {
    pub public_key: String,
    pub key_id: i64,
    pub is_active: bool,
    pub rate_limit_count: Option<i32>,
    pub rate_limit_window: Option<i32>,
    pub project_id: i64,
    pub project_slug: String,
    pub organization_id: i64,
    pub organization_slug: String,
    pub organization_status: String,
}

/// Look up many keys at once for the relay project-config endpoint. Unknown keys are absent
/// from the result.
pub async fn lookup_for_relay(
    db: impl PgExecutor<'_>,
    public_keys: &[String],
) -> Result<Vec<RelayKey>> {
    sqlx::query_as(
        "SELECT k.public_key, k.id AS key_id, k.is_active, k.rate_limit_count, \
                k.rate_limit_window, p.id AS project_id, p.slug AS project_slug, \
                o.id AS organization_id, o.slug AS organization_slug, \
                o.status AS organization_status \
         FROM project_keys k \
         JOIN projects p ON p.id = k.project_id \
         JOIN organizations o ON o.id = p.organization_id \
         WHERE k.public_key = ANY($1)",
    )
    .bind(public_keys)
    .fetch_all(db)
    .await
    .map_err(StoreError::db("look up keys for relay", None))
}
