//! The schema against a real Postgres database per test: migrations, short ids, idempotent
//! event rows, keyset pagination over ties, token expiry.

use chrono::{Duration, Utc};
use silo_store::groups::{self, GroupFilter, GroupScope, GroupSort};
use silo_store::{PageRequest, PgPool};
use silo_testkit::TestDb;
use uuid::Uuid;

/// A fresh migrated database; dropped by [`TestDb::drop_database`] at the end.
async fn database() -> TestDb {
    TestDb::migrated("silo_store_test", &silo_store::MIGRATOR).await
}

async fn project(pool: &PgPool, org: &str) -> i64 {
    let o = silo_store::organizations::create(pool, org, org)
        .await
        .expect("create organization");
    silo_store::projects::create(pool, o.id, "p", "P", None)
        .await
        .expect("create project")
        .id
}

/// Upsert a group the way the ingest consumers do; returns (id, short_id).
async fn upsert_group(pool: &PgPool, project_id: i64, fingerprint: &str) -> (i64, i64) {
    let now = Utc::now();
    sqlx::query_as(
        "INSERT INTO groups (project_id, fingerprint, title, first_seen, last_seen, \
           first_event_id, last_event_id) VALUES ($1, $2, 't', $3, $3, $4, $4) \
         ON CONFLICT (project_id, fingerprint) DO UPDATE SET times_seen = groups.times_seen + 1 \
         RETURNING id, short_id",
    )
    .bind(project_id)
    .bind(fingerprint)
    .bind(now)
    .bind(Uuid::new_v4())
    .fetch_one(pool)
    .await
    .expect("upsert group")
}

#[tokio::test]
async fn migrations_are_idempotent_and_short_ids_count_per_project() {
    let db = database().await;
    silo_store::migrate(&db.pool)
        .await
        .expect("second run is a no-op");
    let a = project(&db.pool, "a").await;
    let b = project(&db.pool, "b").await;
    let (g1, s1) = upsert_group(&db.pool, a, "x").await;
    let (_, s2) = upsert_group(&db.pool, a, "y").await;
    let (_, sb) = upsert_group(&db.pool, b, "x").await;
    assert_eq!((s1, s2, sb), (1, 2, 1));
    // Upserting an existing fingerprint keeps its number and does not consume one.
    let (again, s_again) = upsert_group(&db.pool, a, "x").await;
    assert_eq!((again, s_again), (g1, 1));
    let (_, s3) = upsert_group(&db.pool, a, "z").await;
    assert_eq!(s3, 3);
    db.drop_database().await;
}

#[tokio::test]
async fn event_ids_are_unique_per_project() {
    let db = database().await;
    let a = project(&db.pool, "a").await;
    let b = project(&db.pool, "b").await;
    let (ga, _) = upsert_group(&db.pool, a, "x").await;
    let (gb, _) = upsert_group(&db.pool, b, "x").await;
    let event_id = Uuid::new_v4();
    let insert = |project: i64, group: i64| {
        sqlx::query(
            "INSERT INTO events (project_id, event_id, group_id, \"timestamp\") \
             VALUES ($1, $2, $3, now()) ON CONFLICT (project_id, event_id) DO NOTHING",
        )
        .bind(project)
        .bind(event_id)
        .bind(group)
        .execute(&db.pool)
    };
    assert_eq!(insert(a, ga).await.unwrap().rows_affected(), 1);
    assert_eq!(
        insert(a, ga).await.unwrap().rows_affected(),
        0,
        "a replay is a no-op"
    );
    assert_eq!(
        insert(b, gb).await.unwrap().rows_affected(),
        1,
        "other projects may reuse ids"
    );
    let stored = silo_store::events::get(&db.pool, a, event_id)
        .await
        .unwrap();
    assert_eq!(stored.map(|e| e.group_id), Some(ga));
    db.drop_database().await;
}

#[tokio::test]
async fn keyset_pages_cover_ties_exactly_once_both_ways() {
    let db = database().await;
    let p = project(&db.pool, "a").await;
    let same_time = Utc::now() - Duration::minutes(5);
    let mut ids = Vec::new();
    for i in 0..5 {
        let (id, _) = upsert_group(&db.pool, p, &format!("f{i}")).await;
        ids.push(id);
    }
    sqlx::query("UPDATE groups SET last_seen = $1")
        .bind(same_time)
        .execute(&db.pool)
        .await
        .unwrap();
    ids.reverse(); // Ties on last_seen are ordered by id, newest first.

    let filter = GroupFilter::default();
    let mut seen = Vec::new();
    let mut request = PageRequest::first(2);
    let mut pages = Vec::new();
    loop {
        let page = groups::list(
            &db.pool,
            GroupScope::Project(p),
            &filter,
            GroupSort::LastSeen,
            &request,
        )
        .await
        .unwrap();
        seen.extend(page.items.iter().map(|g| g.id));
        pages.push(page.prev.0);
        if !page.next.1 {
            break;
        }
        request = PageRequest {
            cursor: Some(page.next.0),
            limit: 2,
        };
    }
    assert_eq!(seen, ids);
    assert_eq!(pages.len(), 3);

    // From the last page, the previous cursor leads back to the middle page.
    let back = groups::list(
        &db.pool,
        GroupScope::Project(p),
        &filter,
        GroupSort::LastSeen,
        &PageRequest {
            cursor: Some(pages[2]),
            limit: 2,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        back.items.iter().map(|g| g.id).collect::<Vec<_>>(),
        ids[2..4]
    );
    assert!(back.prev.1 && back.next.1);
    db.drop_database().await;
}

#[tokio::test]
async fn expired_tokens_do_not_authenticate() {
    let db = database().await;
    let token = silo_store::api_tokens::generate_token();
    let stored = silo_store::api_tokens::upsert(&db.pool, &token, "t", &["org:read".into()])
        .await
        .unwrap();
    assert!(stored.has_scope("org:read"));
    assert!(
        silo_store::api_tokens::authenticate(&db.pool, &token)
            .await
            .unwrap()
            .is_some()
    );
    sqlx::query("UPDATE api_tokens SET expires_at = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert!(
        silo_store::api_tokens::authenticate(&db.pool, &token)
            .await
            .unwrap()
            .is_none()
    );
    db.drop_database().await;
}

fn message_event(project_id: i64, fingerprint: &str) -> silo_store::ingest::NewEvent {
    let now = Utc::now();
    silo_store::ingest::NewEvent {
        project_id,
        event_id: Uuid::new_v4(),
        timestamp: now,
        received: now,
        title: fingerprint.to_owned(),
        message: fingerprint.to_owned(),
        culprit: String::new(),
        platform: "rust".to_owned(),
        level: "warning".to_owned(),
        environment: None,
        release: None,
        data: serde_json::json!({}),
        fingerprint: fingerprint.to_owned(),
        group_type: "default".to_owned(),
        metadata: serde_json::json!({}),
        tags: Vec::new(),
        user: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_events_of_a_new_issue_are_all_stored_on_one_issue() {
    let db = database().await;
    let a = project(&db.pool, "a").await;
    silo_store::ingest::save_event(&db.pool, &message_event(a, "first"))
        .await
        .expect("first event");
    const N: usize = 40;
    for round in 0..5 {
        let fingerprint = format!("burst-{round}");
        let saves = (0..N).map(|_| {
            let pool = db.pool.clone();
            let event = message_event(a, &fingerprint);
            tokio::spawn(async move { silo_store::ingest::save_event(&pool, &event).await })
        });
        let mut created = 0;
        for save in saves.collect::<Vec<_>>() {
            let saved = save
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("round {round}: storing failed: {e}"));
            created += usize::from(saved.is_new);
        }
        assert_eq!(
            created, 1,
            "round {round}: exactly one event creates the issue"
        );
        let counts: Vec<(i64, i64)> =
            sqlx::query_as("SELECT short_id, times_seen FROM groups WHERE fingerprint = $1")
                .bind(&fingerprint)
                .fetch_all(&db.pool)
                .await
                .expect("groups");
        assert_eq!(counts.len(), 1, "round {round}: one issue");
        assert_eq!(counts[0].1, N as i64, "round {round}: every event counted");
    }
    db.drop_database().await;
}
