//! The region database as a dependency of a consumer: queries retried while it is down,
//! its readiness flag kept up to date.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use silo_runtime::Shutdown;
use silo_runtime::admin::ReadyFlag;
use silo_store::{PgPool, StoreError, ingest};

use crate::retry::{Attempt, retry};
use crate::{CountErrors, Interrupted};

/// The pool with what retrying needs: the `postgres` readiness flag, the workload's error
/// counter, the backoff ceiling and the shutdown that cuts a wait short.
#[derive(Clone, Debug)]
pub struct Postgres {
    pub pool: PgPool,
    pub ready: ReadyFlag,
    pub errors: Arc<dyn CountErrors>,
    pub max_backoff: Duration,
    pub shutdown: Shutdown,
}

impl Postgres {
    /// Run `query`, retrying while it fails transiently (counted as `postgres`; an
    /// unreachable server also clears the readiness flag). `Ok(None)` when it can never
    /// succeed (a data or integrity error, counted as `invalid`); `what` names it in logs.
    pub async fn query<T, F, Fut>(&self, what: &str, query: F) -> Result<Option<T>, Interrupted>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        match self.query_or_permanent(what, query).await? {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                tracing::error!(%error, what, "cannot succeed (unknown row or invalid value); skipping");
                self.errors.error("invalid");
                Ok(None)
            }
        }
    }

    /// Like [`Postgres::query`], but a permanent error is returned to the caller (neither
    /// logged nor counted), e.g. to retry a failed batch one item at a time.
    pub async fn query_or_permanent<T, F, Fut>(
        &self,
        what: &str,
        mut query: F,
    ) -> Result<Result<T, StoreError>, Interrupted>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let outcome = retry(self.max_backoff, &self.shutdown, || {
            let running = query();
            async move {
                match running.await {
                    Ok(value) => {
                        self.ready.set(true);
                        Attempt::Done(Ok(value))
                    }
                    // Done as far as retrying goes: the caller decides what to do with it.
                    Err(error) if ingest::is_permanent(&error) => Attempt::Done(Err(error)),
                    Err(error) => {
                        if error.is_unavailable() {
                            self.ready.set(false);
                        }
                        self.errors.error("postgres");
                        tracing::warn!(%error, what, "database query failed; retrying");
                        Attempt::Again
                    }
                }
            }
        })
        .await?;
        Ok(outcome.unwrap_or_else(|| Err(StoreError::Invalid(format!("{what}: given up")))))
    }

    /// Wait until the database answers (and, with `migrate`, until the migrations are
    /// applied), then set the readiness flag; `false` when shutdown came first.
    pub async fn wait_until_ready(&self, migrate: bool) -> bool {
        let ready = retry(self.max_backoff, &self.shutdown, || async {
            let result = if migrate {
                silo_store::migrate(&self.pool).await
            } else {
                silo_store::ping(&self.pool).await
            };
            match result {
                Ok(()) => Attempt::Done(()),
                Err(error) => {
                    tracing::warn!(%error, "database not ready; retrying");
                    Attempt::Again
                }
            }
        })
        .await;
        self.ready.set(ready.is_ok());
        ready.is_ok()
    }
}
