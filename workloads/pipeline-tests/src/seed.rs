//! Rows a test needs before it starts, written straight to the database (for tests of one
//! workload alone; end-to-end tests use the web API).

use silo_store::PgPool;

/// An organization and a project in it, both named `slug`. Returns (org id, project id).
pub async fn project(pool: &PgPool, slug: &str) -> (i64, i64) {
    let org = silo_store::organizations::create(pool, slug, slug)
        .await
        .unwrap_or_else(|e| panic!("create organization: {e}"));
    let project = silo_store::projects::create(pool, org.id, slug, slug, None)
        .await
        .unwrap_or_else(|e| panic!("create project: {e}"));
    (org.id, project.id)
}
