//! `api_tokens`: bearer tokens for the API. Only a SHA-256 of each token is stored.

use chrono::{DateTime, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgExecutor};

use crate::error::{Result, StoreError};

#[derive(Clone, Debug, FromRow, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub token_last_four: String,
    pub label: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub date_created: DateTime<Utc>,
}

impl ApiToken {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Hex SHA-256 of a token, the form it is stored and looked up in.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token: 64 hex characters.
pub fn generate_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

fn last_four(token: &str) -> String {
    let start = token.len().saturating_sub(4);
    token.get(start..).unwrap_or_default().to_owned()
}

/// Store `token` with `scopes`. Storing the same token again replaces its label and scopes, so
/// seeding a bootstrap token at every start is idempotent.
pub async fn upsert(
    db: impl PgExecutor<'_>,
    token: &str,
    label: &str,
    scopes: &[String],
) -> Result<ApiToken> {
    sqlx::query_as(
        "INSERT INTO api_tokens (token_hash, token_last_four, label, scopes) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (token_hash) DO UPDATE SET label = EXCLUDED.label, scopes = EXCLUDED.scopes \
         RETURNING id, token_last_four, label, scopes, expires_at, date_created",
    )
    .bind(hash_token(token))
    .bind(last_four(token))
    .bind(label)
    .bind(scopes)
    .fetch_one(db)
    .await
    .map_err(StoreError::db("store api token", None))
}

/// The unexpired token matching `token`, if any.
pub async fn authenticate(db: impl PgExecutor<'_>, token: &str) -> Result<Option<ApiToken>> {
    sqlx::query_as(
        "SELECT id, token_last_four, label, scopes, expires_at, date_created FROM api_tokens \
         WHERE token_hash = $1 AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(hash_token(token))
    .fetch_optional(db)
    .await
    .map_err(StoreError::db("authenticate api token", None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_hex_and_tokens_are_random() {
        assert_eq!(hash_token("abc"), hash_token("abc"));
        assert_eq!(hash_token("abc").len(), 64);
        assert_ne!(generate_token(), generate_token());
        assert_eq!(last_four("abcdef"), "cdef");
        assert_eq!(last_four("ab"), "ab");
    }
}
