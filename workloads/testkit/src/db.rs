//! Throwaway Postgres databases: one per test (or per silo of a test), dropped at the end.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// `url` with its database name replaced (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority..].find('/') {
        Some(i) => &base[..authority + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A database created for a test, with a lazily connecting pool on it;
/// [`TestDb::drop_database`] removes it.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    /// Its URL, for a process.
    pub url: String,
    /// At most [`TestDb::MAX_CONNECTIONS`], connecting on first use.
    pub pool: PgPool,
    admin_url: String,
}

impl TestDb {
    pub const MAX_CONNECTIONS: u32 = 10;

    /// Create `<prefix>_<pid>_<random>` on the test Postgres
    /// ([`crate::services::database_url`]), empty.
    pub async fn create(prefix: &str) -> TestDb {
        let name = format!("{prefix}_{}", crate::unique_suffix());
        TestDb::create_named(&crate::services::database_url(), &name).await
    }

    /// [`TestDb::create`], then apply `migrator` (the store's `silo_store::MIGRATOR`).
    pub async fn migrated(prefix: &str, migrator: &Migrator) -> TestDb {
        let db = TestDb::create(prefix).await;
        migrator
            .run(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("migrating {} failed: {e}", db.name));
        db
    }

    /// Create `name`, empty, on the server of `admin_url`; panics naming what to run when
    /// Postgres is absent.
    pub async fn create_named(admin_url: &str, name: &str) -> TestDb {
        let mut admin = PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
            panic!(
                "cannot connect to Postgres at {admin_url}: {e}; start it with e2e/services/up.sh"
            )
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = admin.close().await;
        let url = with_database(admin_url, name);
        let pool = PgPoolOptions::new()
            .max_connections(Self::MAX_CONNECTIONS)
            .connect_lazy(&url)
            .unwrap_or_else(|e| panic!("invalid database URL {url}: {e}"));
        TestDb {
            name: name.to_owned(),
            url,
            pool,
            admin_url: admin_url.to_owned(),
        }
    }

    /// Close the pool and drop the database, disconnecting whoever is still connected. Call
    /// it at the end of a passing test: a failed one keeps its database to inspect. A
    /// failure is only logged.
    pub async fn drop_database(&self) {
        self.pool.close().await;
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        match PgConnection::connect(&self.admin_url).await {
            Ok(mut admin) => {
                if let Err(e) = sqlx::query(&drop).execute(&mut admin).await {
                    eprintln!("cannot drop test database {}: {e}", self.name);
                }
                let _ = admin.close().await;
            }
            Err(e) => eprintln!("cannot drop test database {}: {e}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres", "t"),
            "postgres://u@h:1/t"
        );
        assert_eq!(with_database("postgres://u@h:1", "t"), "postgres://u@h:1/t");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "t"),
            "postgres://u@h/t?sslmode=disable"
        );
    }
}
