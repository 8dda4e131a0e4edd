//! Region-side organization changes that the control silo must learn about. Each function
//! makes the change and appends its [`outbox`] message in one transaction, so
//! either both happen or neither does.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgPool};

use crate::error::{Result, StoreError};
use crate::organizations::Organization;
use crate::outbox::{self, OutboxCategory};

/// The state of an organization as carried by outbox messages and RPC replies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSnapshot {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub status: String,
    pub date_created: DateTime<Utc>,
}

impl From<&Organization> for OrganizationSnapshot {
    fn from(org: &Organization) -> Self {
        Self {
            id: org.id,
            slug: org.slug.clone(),
            name: org.name.clone(),
            status: org.status.clone(),
            date_created: org.date_created,
        }
    }
}

/// A member of an organization.
#[derive(Clone, Debug, FromRow, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub id: i64,
    pub organization_id: i64,
    pub email: String,
    pub role: String,
    pub date_added: DateTime<Utc>,
}

const ORG_COLUMNS: &str = "id, slug, name, status, date_created";

/// Create an organization with a caller-chosen (globally unique) id. Creating the same id and
/// slug again returns the existing organization without a second message, so an RPC retry is
/// harmless. [`StoreError::Conflict`] when the slug belongs to another organization.
pub async fn create(pool: &PgPool, id: i64, slug: &str, name: &str) -> Result<Organization> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("begin transaction", None))?;
    let existing: Option<Organization> = sqlx::query_as(&format!(
        "SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db("get organization", None))?;
    if let Some(org) = existing {
        if org.slug == slug {
            return Ok(org);
        }
        return Err(StoreError::Conflict {
            what: format!("an organization with id {id}"),
        });
    }
    let org: Organization = sqlx::query_as(&format!(
        "INSERT INTO organizations (id, slug, name) VALUES ($1, $2, $3) RETURNING {ORG_COLUMNS}"
    ))
    .bind(id)
    .bind(slug)
    .bind(name)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::db(
        "create organization",
        Some(&format!("an organization with slug {slug:?}")),
    ))?;
    let payload = snapshot_json(&org)?;
    outbox::enqueue(
        &mut tx,
        org.id,
        OutboxCategory::OrganizationCreated,
        org.id,
        &payload,
    )
    .await?;
    commit(tx).await?;
    Ok(org)
}

/// Change an organization's name and/or slug.
pub async fn rename(
    pool: &PgPool,
    id: i64,
    name: Option<&str>,
    slug: Option<&str>,
) -> Result<Option<Organization>> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("begin transaction", None))?;
    let org: Option<Organization> = sqlx::query_as(&format!(
        "UPDATE organizations SET name = COALESCE($2, name), slug = COALESCE($3, slug) \
         WHERE id = $1 RETURNING {ORG_COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .bind(slug)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db(
        "rename organization",
        Some(&format!(
            "an organization with slug {:?}",
            slug.unwrap_or("")
        )),
    ))?;
    let Some(org) = org else { return Ok(None) };
    let payload = snapshot_json(&org)?;
    outbox::enqueue(
        &mut tx,
        org.id,
        OutboxCategory::OrganizationRenamed,
        org.id,
        &payload,
    )
    .await?;
    commit(tx).await?;
    Ok(Some(org))
}

/// Schedule an organization for deletion (status `pending_deletion`).
pub async fn delete(pool: &PgPool, id: i64) -> Result<Option<Organization>> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("begin transaction", None))?;
    let org: Option<Organization> = sqlx::query_as(&format!(
        "UPDATE organizations SET status = 'pending_deletion' WHERE id = $1 RETURNING {ORG_COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(StoreError::db("delete organization", None))?;
    let Some(org) = org else { return Ok(None) };
    let payload = snapshot_json(&org)?;
    outbox::enqueue(
        &mut tx,
        org.id,
        OutboxCategory::OrganizationDeleted,
        org.id,
        &payload,
    )
    .await?;
    commit(tx).await?;
    Ok(Some(org))
}

/// Add a member; [`StoreError::Conflict`] when the email is already a member.
pub async fn add_member(pool: &PgPool, org_id: i64, email: &str, role: &str) -> Result<Member> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::db("begin transaction", None))?;
    let member: Member = sqlx::query_as(
        "INSERT INTO organization_members (organization_id, email, role) VALUES ($1, $2, $3) \
         RETURNING id, organization_id, email, role, date_added",
    )
    .bind(org_id)
    .bind(email)
    .bind(role)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::db(
        "add organization member",
        Some(&format!("a member with email {email:?}")),
    ))?;
    let payload = serde_json::to_value(&member)
        .map_err(|e| StoreError::Invalid(format!("member payload: {e}")))?;
    outbox::enqueue(
        &mut tx,
        org_id,
        OutboxCategory::MemberAdded,
        member.id,
        &payload,
    )
    .await?;
    commit(tx).await?;
    Ok(member)
}

/// Members of an organization, oldest first.
pub async fn members(pool: &PgPool, org_id: i64) -> Result<Vec<Member>> {
    sqlx::query_as(
        "SELECT id, organization_id, email, role, date_added FROM organization_members \
         WHERE organization_id = $1 ORDER BY id",
    )
    .bind(org_id)
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("list organization members", None))
}

fn snapshot_json(org: &Organization) -> Result<serde_json::Value> {
    serde_json::to_value(OrganizationSnapshot::from(org))
        .map_err(|e| StoreError::Invalid(format!("organization payload: {e}")))
}

async fn commit(tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<()> {
    tx.commit()
        .await
        .map_err(StoreError::db("commit transaction", None))
}
