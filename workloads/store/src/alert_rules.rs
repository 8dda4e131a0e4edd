//! `alert_rules`: per-project rules the post-processor evaluates for every stored event.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};

use crate::error::{Result, StoreError};
use crate::page::{Page, PageRequest, SortKey};

#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct AlertRule {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    /// `new_issue`, `regression` or `frequency`.
    pub kind: String,
    /// Frequency rules: fire when an issue has more than `threshold` events ...
    pub threshold: Option<i64>,
    /// ... within `interval_seconds`.
    pub interval_seconds: Option<i64>,
    pub webhook_url: String,
    pub enabled: bool,
    pub date_created: DateTime<Utc>,
}

/// When a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    NewIssue,
    Regression,
    Frequency,
}

impl RuleKind {
    pub const ALL: [RuleKind; 3] = [
        RuleKind::NewIssue,
        RuleKind::Regression,
        RuleKind::Frequency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::NewIssue => "new_issue",
            RuleKind::Regression => "regression",
            RuleKind::Frequency => "frequency",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A rule to create. Frequency rules need `threshold` and `interval_seconds`.
#[derive(Clone, Debug)]
pub struct NewRule {
    pub project_id: i64,
    pub name: String,
    pub kind: RuleKind,
    pub threshold: Option<i64>,
    pub interval_seconds: Option<i64>,
    pub webhook_url: String,
    pub enabled: bool,
}

const COLUMNS: &str = "r.id, r.project_id, r.name, r.kind, r.threshold, r.interval_seconds, \
                       r.webhook_url, r.enabled, r.date_created";
const ORDER: SortKey = SortKey::int("r.id", "r.id", false);

pub async fn create(db: impl PgExecutor<'_>, rule: &NewRule) -> Result<AlertRule> {
    sqlx::query_as(
        "INSERT INTO alert_rules \
           (project_id, name, kind, threshold, interval_seconds, webhook_url, enabled) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         RETURNING id, project_id, name, kind, threshold, interval_seconds, webhook_url, \
                   enabled, date_created",
    )
    .bind(rule.project_id)
    .bind(&rule.name)
    .bind(rule.kind.as_str())
    .bind(rule.threshold)
    .bind(rule.interval_seconds)
    .bind(&rule.webhook_url)
    .bind(rule.enabled)
    .fetch_one(db)
    .await
    .map_err(StoreError::db("create alert rule", None))
}

pub async fn get(db: impl PgExecutor<'_>, project_id: i64, id: i64) -> Result<Option<AlertRule>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM alert_rules r WHERE r.project_id = $1 AND r.id = $2"
    ))
    .bind(project_id)
    .bind(id)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("get alert rule", None))
}

pub async fn list_for_project(
    db: impl PgExecutor<'_>,
    project_id: i64,
    page: &PageRequest,
) -> Result<Page<AlertRule>> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM alert_rules r WHERE r.project_id = "
    ));
    qb.push_bind(project_id);
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list alert rules", None))?;
    Ok(ORDER.finish(page, rows, |r: &AlertRule| (r.id, r.id)))
}

/// Every enabled rule of a project, for evaluation.
pub async fn enabled_for_project(
    db: impl PgExecutor<'_>,
    project_id: i64,
) -> Result<Vec<AlertRule>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM alert_rules r WHERE r.project_id = $1 AND r.enabled ORDER BY r.id"
    ))
    .bind(project_id)
    .fetch_all(db)
    .await
    .map_err(StoreError::db("list enabled alert rules", None))
}

/// Every enabled rule of the given projects (one query for a batch of records), ordered by
/// project and id.
pub async fn enabled_for_projects(
    db: impl PgExecutor<'_>,
    project_ids: &[i64],
) -> Result<Vec<AlertRule>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM alert_rules r WHERE r.project_id = ANY($1) AND r.enabled          ORDER BY r.project_id, r.id"
    ))
    .bind(project_ids)
    .fetch_all(db)
    .await
    .map_err(StoreError::db("list enabled alert rules", None))
}

/// Delete a rule; whether it existed.
pub async fn delete(db: impl PgExecutor<'_>, project_id: i64, id: i64) -> Result<bool> {
    sqlx::query("DELETE FROM alert_rules WHERE project_id = $1 AND id = $2")
        .bind(project_id)
        .bind(id)
        .execute(db)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::db("delete alert rule", None))
}
