//! Per-project quotas from the project config, enforced with fixed-window counters in Redis.
//!
//! Each quota counts into `<prefix>quota:<scope>:<scope id>:<quota id>:<window index>`. One Lua
//! script checks every applicable quota and increments them only if none is exceeded, so a
//! rejected event never consumes quota.

use std::sync::Arc;

use silo_protocol::{Quota, QuotaScope};

use crate::redis_conn::{RedisError, RedisHandle};

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("rate limit script failed: {0}")]
    Script(#[source] redis::RedisError),
}

/// Whose counters an item is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scoping {
    pub organization_id: u64,
    pub project_id: u64,
    pub key_id: u64,
}

/// A rejection: which quota, and when to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: u64,
    pub categories: Vec<String>,
    pub scope: QuotaScope,
    pub reason_code: String,
}

impl Limited {
    /// Sentry's `X-Sentry-Rate-Limits` value: `<seconds>:<categories>:<scope>:<reason_code>`.
    pub fn header_value(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.retry_after,
            self.categories.join(";"),
            self.scope.as_str(),
            self.reason_code
        )
    }

    fn from_quota(quota: &Quota, now: u64) -> Self {
        let window = quota.window.max(1);
        Self {
            retry_after: (window - now % window).max(1),
            categories: quota.categories.clone(),
            scope: quota.scope,
            reason_code: quota.reason_code.clone(),
        }
    }
}

/// Quotas that count `category`; a quota without categories counts everything.
pub fn applicable<'a>(quotas: &'a [Quota], category: &str) -> impl Iterator<Item = &'a Quota> {
    quotas
        .iter()
        .filter(move |q| q.categories.is_empty() || q.categories.iter().any(|c| c == category))
}

/// The Redis counter key (before the relay's prefix) of a quota at time `now` (unix seconds).
pub fn counter_key(quota: &Quota, scoping: &Scoping, now: u64) -> String {
    let scope_id = quota.scope_id.clone().unwrap_or_else(|| {
        match quota.scope {
            QuotaScope::Organization => scoping.organization_id,
            QuotaScope::Project => scoping.project_id,
            QuotaScope::Key => scoping.key_id,
        }
        .to_string()
    });
    let window = quota.window.max(1);
    format!(
        "quota:{}:{}:{}:{}",
        quota.scope.as_str(),
        scope_id,
        quota.id,
        now / window
    )
}

const SCRIPT: &str = r"
local qty = tonumber(ARGV[1])
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local current = tonumber(redis.call('GET', KEYS[i]) or '0')
  if current + qty > limit then return i end
end
for i = 1, #KEYS do
  redis.call('INCRBY', KEYS[i], qty)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]))
end
return 0
";

pub struct RateLimiter {
    redis: Arc<RedisHandle>,
    script: redis::Script,
}

impl RateLimiter {
    pub fn new(redis: Arc<RedisHandle>) -> Self {
        Self {
            redis,
            script: redis::Script::new(SCRIPT),
        }
    }

    /// Count `quantity` items of `category`; `Some` when a quota is exhausted (nothing counted).
    pub async fn check(
        &self,
        quotas: &[Quota],
        scoping: &Scoping,
        category: &str,
        quantity: u64,
        now: u64,
    ) -> Result<Option<Limited>, RateLimitError> {
        let quotas: Vec<&Quota> = applicable(quotas, category)
            .filter(|q| q.window > 0)
            .collect();
        if quotas.is_empty() {
            return Ok(None);
        }
        if let Some(q) = quotas.iter().find(|q| q.limit == 0) {
            return Ok(Some(Limited::from_quota(q, now)));
        }
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(quantity);
        for q in &quotas {
            let remaining = q.window - now % q.window;
            invocation
                .key(self.redis.key(&counter_key(q, scoping, now)))
                .arg(q.limit)
                .arg(remaining + 1);
        }
        let mut conn = self.redis.conn().await?;
        let rejected: usize = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(RateLimitError::Script)?;
        Ok(rejected
            .checked_sub(1)
            .and_then(|i| quotas.get(i))
            .map(|q| Limited::from_quota(q, now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(categories: &[&str], scope: QuotaScope) -> Quota {
        Quota {
            id: "q1".into(),
            categories: categories.iter().map(|c| (*c).to_owned()).collect(),
            scope,
            scope_id: None,
            limit: 10,
            window: 60,
            reason_code: "key_quota".into(),
        }
    }

    const SCOPING: Scoping = Scoping {
        organization_id: 1,
        project_id: 2,
        key_id: 3,
    };

    #[test]
    fn header_follows_sentry_format() {
        let limited = Limited::from_quota(&quota(&["error", "default"], QuotaScope::Key), 125);
        assert_eq!(limited.retry_after, 55);
        assert_eq!(limited.header_value(), "55:error;default:key:key_quota");
        let limited = Limited::from_quota(&quota(&[], QuotaScope::Project), 120);
        assert_eq!(limited.header_value(), "60::project:key_quota");
    }

    #[test]
    fn keys_use_scope_ids_and_windows() {
        assert_eq!(
            counter_key(&quota(&[], QuotaScope::Key), &SCOPING, 130),
            "quota:key:3:q1:2"
        );
        assert_eq!(
            counter_key(&quota(&[], QuotaScope::Organization), &SCOPING, 59),
            "quota:organization:1:q1:0"
        );
        let mut q = quota(&[], QuotaScope::Project);
        q.scope_id = Some("77".into());
        assert_eq!(counter_key(&q, &SCOPING, 0), "quota:project:77:q1:0");
    }

    #[test]
    fn categories_filter_quotas() {
        let quotas = vec![
            quota(&["transaction"], QuotaScope::Key),
            quota(&[], QuotaScope::Key),
        ];
        assert_eq!(applicable(&quotas, "error").count(), 1);
        assert_eq!(applicable(&quotas, "transaction").count(), 2);
    }
}
