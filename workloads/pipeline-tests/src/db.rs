//! A fresh database per test, migrated, dropped on request.

use silo_store::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::services::Services;

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

/// `scheme://user@host:port/<name>` from a URL with any database.
fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap_or((url, ""));
    format!("{base}/{name}")
}

impl TestDb {
    /// Create `silo_<tag>_<random>` and apply the migrations. Panics when Postgres is absent.
    pub async fn create(services: &Services, tag: &str) -> Self {
        let name = format!("silo_{tag}_{}", crate::unique_suffix());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&services.database_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach Postgres at {}: {e}; start it with e2e/services/up.sh",
                    services.database_url
                )
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        admin.close().await;
        let url = with_database(&services.database_url, &name);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        silo_store::migrate(&pool)
            .await
            .unwrap_or_else(|e| panic!("migrating {name} failed: {e}"));
        TestDb { name, url, pool }
    }

    /// Drop the database (call at the end of a passing test; a failed one keeps it to inspect).
    pub async fn drop_database(self, services: &Services) {
        self.pool.close().await;
        if let Ok(admin) = PgPoolOptions::new()
            .max_connections(1)
            .connect(&services.database_url)
            .await
        {
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            if let Err(e) = sqlx::query(&drop).execute(&admin).await {
                eprintln!("cannot drop test database {}: {e}", self.name);
            }
            admin.close().await;
        }
    }

    /// An organization, a project in it and a key, straight in the database (for tests of the
    /// consumers alone; end-to-end tests use the web API). Returns (org id, project id).
    pub async fn seed_project(&self, slug: &str) -> (i64, i64) {
        let org = silo_store::organizations::create(&self.pool, slug, slug)
            .await
            .unwrap_or_else(|e| panic!("create organization: {e}"));
        let project = silo_store::projects::create(&self.pool, org.id, slug, slug, None)
            .await
            .unwrap_or_else(|e| panic!("create project: {e}"));
        (org.id, project.id)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn swaps_the_database_name() {
        assert_eq!(
            super::with_database("postgres://u@h:1/postgres", "x"),
            "postgres://u@h:1/x"
        );
    }
}
