//! The control silo's organization directory: which region owns which organization, the users
//! known from memberships, and the outbox messages applied so far.
//!
//! ```text
//!  POST /organizations/ (control) ─► reserve (pending) ─► RPC create in region ─► activate
//!                                                            └─ failure ─► release
//!  region outbox drain ─► apply(region, messages) ─► receipt per message (idempotent)
//!                                                  └─► mapping / member upserts
//!  gateway ─► resolve(org slug or id) ─► region name
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Acquire, FromRow, PgExecutor, PgPool, Postgres, QueryBuilder, Transaction};

use crate::error::{Result, StoreError};
use crate::org_changes::{Member, OrganizationSnapshot};
use crate::outbox::OutboxCategory;
use crate::page::{Page, PageRequest, SortKey};

/// One organization as the control silo knows it.
#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct OrganizationMapping {
    pub organization_id: i64,
    pub slug: String,
    pub name: String,
    pub region_name: String,
    pub status: String,
    pub date_created: DateTime<Utc>,
}

const COLUMNS: &str = "m.organization_id, m.slug, m.name, m.region_name, m.status, m.date_created";
const ORDER: SortKey = SortKey::int("m.organization_id", "m.organization_id", false);

/// Reserve `slug` for a new organization in `region` (status `pending`).
/// [`StoreError::Conflict`] when any region already has the slug.
pub async fn reserve(
    db: impl PgExecutor<'_>,
    id: i64,
    slug: &str,
    name: &str,
    region: &str,
) -> Result<OrganizationMapping> {
    sqlx::query_as(&format!(
        "INSERT INTO organization_mappings AS m (organization_id, slug, name, region_name, status) \
         VALUES ($1, $2, $3, $4, 'pending') RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(slug)
    .bind(name)
    .bind(region)
    .fetch_one(db)
    .await
    .map_err(StoreError::db(
        "reserve organization slug",
        Some(&format!("an organization with slug {slug:?}")),
    ))
}

/// Record the region's answer for a reserved organization.
pub async fn activate(
    db: impl PgExecutor<'_>,
    region: &str,
    org: &OrganizationSnapshot,
) -> Result<OrganizationMapping> {
    upsert(db, region, org)
        .await?
        .ok_or_else(|| StoreError::Conflict {
            what: format!("organization {} in another region", org.id),
        })
}

/// Drop a reservation whose region call failed (only while still `pending`).
pub async fn release(db: impl PgExecutor<'_>, id: i64) -> Result<()> {
    sqlx::query(
        "DELETE FROM organization_mappings WHERE organization_id = $1 AND status = 'pending'",
    )
    .bind(id)
    .execute(db)
    .await
    .map_err(StoreError::db("release organization slug", None))?;
    Ok(())
}

/// The mapping for a slug or numeric id (reservations in flight are not visible).
pub async fn resolve(
    db: impl PgExecutor<'_>,
    id_or_slug: &str,
) -> Result<Option<OrganizationMapping>> {
    // Slugs are never all digits, so a number is an id.
    let id = id_or_slug.parse::<i64>().ok();
    let sql = format!(
        "SELECT {COLUMNS} FROM organization_mappings m WHERE m.status <> 'pending' \
         AND (m.organization_id = $1 OR ($1 IS NULL AND m.slug = $2))"
    );
    sqlx::query_as(&sql)
        .bind(id)
        .bind(id_or_slug)
        .fetch_optional(db)
        .await
        .map_err(StoreError::db("resolve organization", None))
}

/// Every mapped organization (across all regions) in id order.
pub async fn list(
    db: impl PgExecutor<'_>,
    page: &PageRequest,
) -> Result<Page<OrganizationMapping>> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS} FROM organization_mappings m WHERE m.status <> 'pending'"
    ));
    ORDER.push_page(&mut qb, page);
    let rows = qb
        .build_query_as()
        .fetch_all(db)
        .await
        .map_err(StoreError::db("list organization mappings", None))?;
    Ok(ORDER.finish(page, rows, |m: &OrganizationMapping| {
        (m.organization_id, m.organization_id)
    }))
}

/// Insert or update a mapping from the region's state; `None` when another region owns the id.
async fn upsert(
    db: impl PgExecutor<'_>,
    region: &str,
    org: &OrganizationSnapshot,
) -> Result<Option<OrganizationMapping>> {
    sqlx::query_as(&format!(
        "INSERT INTO organization_mappings AS m \
             (organization_id, slug, name, region_name, status, date_created) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (organization_id) DO UPDATE SET slug = EXCLUDED.slug, name = EXCLUDED.name, \
             status = EXCLUDED.status, date_created = EXCLUDED.date_created, date_updated = now() \
         WHERE m.region_name = EXCLUDED.region_name \
         RETURNING {COLUMNS}"
    ))
    .bind(org.id)
    .bind(&org.slug)
    .bind(&org.name)
    .bind(region)
    .bind(&org.status)
    .bind(org.date_created)
    .fetch_optional(db)
    .await
    .map_err(StoreError::db(
        "update organization mapping",
        Some(&format!("an organization with slug {:?}", org.slug)),
    ))
}

/// An outbox message as delivered by a region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundMessage {
    pub id: i64,
    pub category: String,
    pub shard_id: i64,
    pub object_id: i64,
    pub payload: serde_json::Value,
}

/// What became of one delivered message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub id: i64,
    /// `applied`, `duplicate` (seen before, nothing done) or `rejected` (permanently refused).
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Apply `messages` from `region` in order, each at most once. A message that can never apply
/// (its slug is taken elsewhere, unknown category) is recorded as rejected so it does not
/// block its shard; a database failure aborts the batch so it is delivered again.
///
/// The transaction runs in a task of its own: a caller that goes away (the region closed the
/// RPC connection while stopping) must not cancel it between statements, which could hand its
/// connection back to the pool inside an open transaction still holding row locks (a later
/// slug reservation then waits on them).
pub async fn apply(
    pool: &PgPool,
    region: &str,
    messages: &[InboundMessage],
) -> Result<Vec<Receipt>> {
    let (pool, region, messages) = (pool.clone(), region.to_owned(), messages.to_vec());
    tokio::spawn(async move { apply_in_transaction(&pool, &region, &messages).await })
        .await
        // The task panicked or the runtime is shutting down: the batch is delivered again.
        .map_err(|_| StoreError::Database {
            op: "apply outbox messages",
            source: sqlx::Error::WorkerCrashed,
        })?
}

async fn apply_in_transaction(
    pool: &PgPool,
    region: &str,
    messages: &[InboundMessage],
) -> Result<Vec<Receipt>> {
    let mut receipts = Vec::with_capacity(messages.len());
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("begin transaction", None))?;
    for message in messages {
        let seen: Option<(String,)> = sqlx::query_as(
            "SELECT outcome FROM outbox_receipts WHERE region_name = $1 AND outbox_id = $2",
        )
        .bind(region)
        .bind(message.id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("read outbox receipt", None))?;
        if seen.is_some() {
            receipts.push(Receipt {
                id: message.id,
                outcome: "duplicate".into(),
                detail: None,
            });
            continue;
        }
        let mut savepoint = tx
            .begin()
            .await
            .map_err(StoreError::db("begin savepoint", None))?;
        let (outcome, detail) = match apply_one(&mut savepoint, region, message).await {
            Ok(()) => {
                savepoint
                    .commit()
                    .await
                    .map_err(StoreError::db("release savepoint", None))?;
                ("applied", None)
            }
            Err(error @ (StoreError::Conflict { .. } | StoreError::Invalid(_))) => {
                savepoint
                    .rollback()
                    .await
                    .map_err(StoreError::db("roll back savepoint", None))?;
                tracing::warn!(region, id = message.id, %error, "outbox message rejected");
                ("rejected", Some(error.to_string()))
            }
            Err(error) => return Err(error),
        };
        sqlx::query(
            "INSERT INTO outbox_receipts (region_name, outbox_id, category, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(region)
        .bind(message.id)
        .bind(&message.category)
        .bind(outcome)
        .bind(&detail)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("record outbox receipt", None))?;
        receipts.push(Receipt {
            id: message.id,
            outcome: outcome.into(),
            detail,
        });
    }
    tx.commit()
        .await
        .map_err(StoreError::db("commit transaction", None))?;
    Ok(receipts)
}

async fn apply_one(
    tx: &mut Transaction<'_, Postgres>,
    region: &str,
    message: &InboundMessage,
) -> Result<()> {
    let category = OutboxCategory::parse(&message.category)
        .ok_or_else(|| StoreError::Invalid(format!("unknown category {:?}", message.category)))?;
    match category {
        OutboxCategory::OrganizationCreated
        | OutboxCategory::OrganizationRenamed
        | OutboxCategory::OrganizationDeleted => {
            let org: OrganizationSnapshot = serde_json::from_value(message.payload.clone())
                .map_err(|e| StoreError::Invalid(format!("organization payload: {e}")))?;
            upsert(&mut **tx, region, &org)
                .await?
                .ok_or_else(|| StoreError::Conflict {
                    what: format!("organization {} in another region", org.id),
                })?;
        }
        OutboxCategory::MemberAdded => {
            let member: Member = serde_json::from_value(message.payload.clone())
                .map_err(|e| StoreError::Invalid(format!("member payload: {e}")))?;
            let (user_id,): (i64,) = sqlx::query_as(
                "INSERT INTO users (email) VALUES ($1) \
                 ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id",
            )
            .bind(&member.email)
            .fetch_one(&mut **tx)
            .await
            .map_err(StoreError::db("upsert user", None))?;
            sqlx::query(
                "INSERT INTO organization_member_mappings \
                     (organization_id, user_id, role, region_name, date_added) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (organization_id, user_id) DO UPDATE SET role = EXCLUDED.role",
            )
            .bind(member.organization_id)
            .bind(user_id)
            .bind(&member.role)
            .bind(region)
            .bind(member.date_added)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("upsert member mapping", None))?;
        }
    }
    Ok(())
}

/// Emails of an organization's members as the control silo knows them.
pub async fn member_emails(db: impl PgExecutor<'_>, org_id: i64) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT u.email FROM organization_member_mappings mm JOIN users u ON u.id = mm.user_id \
         WHERE mm.organization_id = $1 ORDER BY u.email",
    )
    .bind(org_id)
    .fetch_all(db)
    .await
    .map_err(StoreError::db("list member mappings", None))?;
    Ok(rows.into_iter().map(|(e,)| e).collect())
}
