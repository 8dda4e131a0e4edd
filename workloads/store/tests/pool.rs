//! The pool against a real Postgres: a connection that died while idle is pinged and replaced
//! before it is handed out, once it has been idle [`silo_store::PING_AFTER_IDLE`]; a
//! connection handed out again at once goes without that round trip (and so, had it died,
//! would fail the query: the trade the setting makes).

use std::time::Duration;

use silo_store::{PgPool, PoolSettings};
use silo_testkit::{TestDb, wait};

/// A one-connection pool on `db` that pings connections idle at least `ping_after_idle`.
fn pool(db: &TestDb, ping_after_idle: Duration) -> PgPool {
    silo_store::connect_lazy(&PoolSettings {
        max_connections: 1,
        ping_after_idle,
        ..PoolSettings::new(db.url.clone())
    })
    .expect("pool")
}

async fn backend_pid(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
}

/// Wait until the pool's connection is back among the idle ones: sqlx pings a connection as
/// it is released, and only then queues it; terminating it before that would be noticed there.
async fn until_idle(pool: &PgPool) {
    wait::until(
        "the connection to be idle in the pool",
        Duration::from_secs(10),
        || async {
            (pool.num_idle() == 1)
                .then_some(())
                .ok_or(format!("{} idle", pool.num_idle()))
        },
    )
    .await;
}

/// Terminate backend `pid` (from the test's own pool) and wait until it is gone.
async fn terminate(db: &TestDb, pid: i32) {
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .expect("terminate the backend");
    assert!(terminated, "backend {pid} was not there to terminate");
    wait::until(
        "the backend to be gone",
        Duration::from_secs(10),
        || async {
            let alive: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_one(&db.pool)
                    .await
                    .map_err(|e| e.to_string())?;
            (alive == 0)
                .then_some(())
                .ok_or(format!("{alive} backends with pid {pid}"))
        },
    )
    .await;
}

#[tokio::test]
async fn a_connection_that_died_while_idle_is_replaced_before_use() {
    let db = TestDb::create("silo_store_pool").await;
    // Every connection counts as idle long enough: always pinged before use.
    let pool = pool(&db, Duration::ZERO);
    let first = backend_pid(&pool).await.expect("first query");
    until_idle(&pool).await;
    terminate(&db, first).await;
    let second = backend_pid(&pool)
        .await
        .expect("the dead connection is replaced, not handed out");
    assert_ne!(first, second, "a new connection serves the query");
    pool.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_connection_reused_at_once_goes_without_a_ping() {
    let db = TestDb::create("silo_store_pool").await;
    // Never idle long enough: handed out without a ping, so the dead connection is used.
    let pool = pool(&db, Duration::from_secs(3600));
    let first = backend_pid(&pool).await.expect("first query");
    until_idle(&pool).await;
    terminate(&db, first).await;
    let reused = backend_pid(&pool).await;
    assert!(
        reused.is_err(),
        "the terminated connection was used without a ping: {reused:?}"
    );
    // The broken connection is dropped; the next query connects anew.
    let next = backend_pid(&pool).await.expect("a new connection");
    assert_ne!(first, next);
    pool.close().await;
    db.drop_database().await;
}
