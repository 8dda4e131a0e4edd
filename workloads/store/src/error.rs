//! The one error type of the store's queries.

/// A query failed. [`StoreError::is_unavailable`] separates "the database is down" (retry,
/// answer 503) from errors caused by the request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error during {op}: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("running database migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{what} already exists")]
    Conflict { what: String },
    #[error("stored cursor or value is invalid: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Wrap a sqlx error, turning unique-constraint violations into [`StoreError::Conflict`].
    pub fn db(op: &'static str, conflict_what: Option<&str>) -> impl FnOnce(sqlx::Error) -> Self {
        let conflict_what = conflict_what.map(str::to_owned);
        move |source| match (&source, conflict_what) {
            (sqlx::Error::Database(e), Some(what)) if e.is_unique_violation() => {
                StoreError::Conflict { what }
            }
            _ => StoreError::Database { op, source },
        }
    }

    /// The database could not be reached or did not answer (connection refused, pool timed out,
    /// server shutting down). Callers answer 503 and retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database { source, .. } => is_unavailable(source),
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(e)) => is_unavailable(e),
            _ => false,
        }
    }
}

/// Whether a sqlx error means the server is unreachable rather than the query being wrong.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
        // 08xxx connection exceptions, 53300 too_many_connections.
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08") || c == "53300"),
        _ => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
