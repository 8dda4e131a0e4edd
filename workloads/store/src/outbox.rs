//! `region_outbox`: changes the control silo must learn about, written in the same transaction
//! as the change and drained in per-shard order.
//!
//! ```text
//!  region write ─┬─► organizations / organization_members
//!    (one tx)    └─► region_outbox (shard = organization id)
//!  drainer: pending_shards ─► lock_shard (advisory, skip if another replica has it)
//!           ─► batch(shard, in id order) ─► deliver ─► delete_delivered | record_failure
//! ```

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgExecutor, Postgres, Transaction};

use crate::error::{Result, StoreError};

/// Shard scope of organization-owned messages.
pub const ORGANIZATION_SCOPE: &str = "organization";

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboxCategory {
    #[serde(rename = "organization.created")]
    OrganizationCreated,
    #[serde(rename = "organization.renamed")]
    OrganizationRenamed,
    #[serde(rename = "organization.deleted")]
    OrganizationDeleted,
    #[serde(rename = "member.added")]
    MemberAdded,
}

impl OutboxCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrganizationCreated => "organization.created",
            Self::OrganizationRenamed => "organization.renamed",
            Self::OrganizationDeleted => "organization.deleted",
            Self::MemberAdded => "member.added",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::OrganizationCreated,
            Self::OrganizationRenamed,
            Self::OrganizationDeleted,
            Self::MemberAdded,
        ]
        .into_iter()
        .find(|c| c.as_str() == value)
    }
}

/// One stored message.
#[derive(Clone, Debug, FromRow, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    pub id: i64,
    pub shard_scope: String,
    pub shard_id: i64,
    pub category: String,
    pub object_id: i64,
    pub payload: serde_json::Value,
    pub attempts: i32,
}

/// Append a message; call inside the transaction that makes the change.
pub async fn enqueue(
    tx: &mut Transaction<'_, Postgres>,
    shard_id: i64,
    category: OutboxCategory,
    object_id: i64,
    payload: &serde_json::Value,
) -> Result<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO region_outbox (shard_scope, shard_id, category, object_id, payload) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(ORGANIZATION_SCOPE)
    .bind(shard_id)
    .bind(category.as_str())
    .bind(object_id)
    .bind(payload)
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::db("enqueue outbox message", None))?;
    Ok(id)
}

/// Shards with undelivered messages, oldest first.
pub async fn pending_shards(db: impl PgExecutor<'_>, limit: i64) -> Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT shard_scope, shard_id FROM region_outbox GROUP BY shard_scope, shard_id \
         ORDER BY min(id) LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
    .map_err(StoreError::db("list outbox shards", None))
}

/// Number of undelivered messages.
pub async fn backlog(db: impl PgExecutor<'_>) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM region_outbox")
        .fetch_one(db)
        .await
        .map_err(StoreError::db("count outbox messages", None))?;
    Ok(n)
}

/// Take the shard's drain lock for this transaction; `false` when another process holds it.
pub async fn lock_shard(tx: &mut Transaction<'_, Postgres>, shard_id: i64) -> Result<bool> {
    let (locked,): (bool,) =
        sqlx::query_as("SELECT pg_try_advisory_xact_lock(hashtext('region_outbox'), hashtext($1))")
            .bind(shard_id.to_string())
            .fetch_one(&mut **tx)
            .await
            .map_err(StoreError::db("lock outbox shard", None))?;
    Ok(locked)
}

/// The shard's oldest messages, in id order.
pub async fn batch(
    tx: &mut Transaction<'_, Postgres>,
    shard_scope: &str,
    shard_id: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>> {
    sqlx::query_as(
        "SELECT id, shard_scope, shard_id, category, object_id, payload, attempts \
         FROM region_outbox WHERE shard_scope = $1 AND shard_id = $2 ORDER BY id LIMIT $3",
    )
    .bind(shard_scope)
    .bind(shard_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::db("read outbox batch", None))
}

/// Remove acknowledged messages.
pub async fn delete_delivered(tx: &mut Transaction<'_, Postgres>, ids: &[i64]) -> Result<()> {
    sqlx::query("DELETE FROM region_outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("delete delivered outbox messages", None))?;
    Ok(())
}

/// Count a failed attempt on the shard's first message, with the reason.
pub async fn record_failure(db: impl PgExecutor<'_>, id: i64, error: &str) -> Result<()> {
    sqlx::query("UPDATE region_outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1")
        .bind(id)
        .bind(error)
        .execute(db)
        .await
        .map_err(StoreError::db("record outbox failure", None))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_round_trip() {
        for c in [
            OutboxCategory::OrganizationCreated,
            OutboxCategory::OrganizationRenamed,
            OutboxCategory::OrganizationDeleted,
            OutboxCategory::MemberAdded,
        ] {
            assert_eq!(OutboxCategory::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(OutboxCategory::parse("organization.moved"), None);
    }
}
