//! `silo_store::ingest::save_event` on a real Postgres: concurrent saves of one event (two
//! consumers racing on a replay) store it once and count it once.

mod support;

use silo_pipeline_tests::seed;
use silo_store::ingest::{NewEvent, save_event};
use silo_testkit::TestDb;

fn event(project_id: i64, event_id: uuid::Uuid, fingerprint: &str) -> NewEvent {
    NewEvent {
        event_id,
        ..support::new_event(project_id, fingerprint, "E: x")
    }
}

#[tokio::test]
async fn concurrent_saves_of_one_event_store_and_count_it_once() {
    let db = TestDb::migrated("silo_save", &silo_store::MIGRATOR).await;
    let (_, project_id) = seed::project(&db.pool, "save").await;

    for round in 0..5 {
        let e = event(project_id, uuid::Uuid::new_v4(), &format!("fp-{round}"));
        let saves: Vec<_> = (0..8)
            .map(|_| {
                let pool = db.pool.clone();
                let e = e.clone();
                tokio::spawn(async move { save_event(&pool, &e).await })
            })
            .collect();
        let mut results = Vec::new();
        for s in saves {
            results.push(s.await.unwrap().unwrap());
        }
        assert_eq!(
            results.iter().filter(|r| !r.duplicate).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .all(|r| r.is_new && r.group_id == results[0].group_id)
        );
        let (times_seen, events): (i64, i64) = sqlx::query_as(
            "SELECT g.times_seen, (SELECT count(*) FROM events e WHERE e.group_id = g.id) \
             FROM groups g WHERE g.id = $1",
        )
        .bind(results[0].group_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!((times_seen, events), (1, 1));
    }
    // Short ids stay unique and increasing even with racing issue creation.
    let short_ids: Vec<i64> =
        sqlx::query_scalar("SELECT short_id FROM groups WHERE project_id = $1 ORDER BY id")
            .bind(project_id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(short_ids.len(), 5);
    assert!(short_ids.windows(2).all(|w| w[0] < w[1]), "{short_ids:?}");
    db.drop_database().await;
}

/// Distinct users and releases are counted on the issue; an ignored issue stays ignored until
/// its snooze is over (here: 2 more events), a resolved one reopens as a regression; a replay
/// counts nothing twice.
#[tokio::test]
async fn users_releases_and_ignore_snoozes_are_kept_on_the_issue() {
    let db = TestDb::migrated("silo_snooze", &silo_store::MIGRATOR).await;
    let (_, project_id) = seed::project(&db.pool, "snooze").await;
    let with = |user: Option<&str>, release: Option<&str>| {
        let mut e = event(project_id, uuid::Uuid::new_v4(), "fp");
        e.user = user.map(str::to_owned);
        e.release = release.map(str::to_owned);
        e
    };
    let first = with(Some("id:1"), Some("app@1"));
    let saved = save_event(&db.pool, &first).await.unwrap();
    save_event(&db.pool, &first).await.unwrap(); // replay
    save_event(&db.pool, &with(Some("id:1"), None))
        .await
        .unwrap();
    save_event(&db.pool, &with(Some("id:2"), Some("app@2")))
        .await
        .unwrap();
    save_event(&db.pool, &with(None, None)).await.unwrap();
    let group = |pool: silo_store::PgPool| async move {
        sqlx::query_as::<_, (String, i64, i64, Option<String>, Option<String>)>(
            "SELECT status, times_seen, user_count, first_release, last_release FROM groups \
             WHERE id = $1",
        )
        .bind(saved.group_id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(
        group(db.pool.clone()).await,
        (
            "unresolved".into(),
            4,
            2,
            Some("app@1".into()),
            Some("app@2".into())
        )
    );

    // Ignored until 2 more events: the first stays ignored, the third reopens it.
    sqlx::query(
        "UPDATE groups SET status = 'ignored', ignore_until_times_seen = times_seen + 2 \
         WHERE id = $1",
    )
    .bind(saved.group_id)
    .execute(&db.pool)
    .await
    .unwrap();
    for _ in 0..2 {
        let r = save_event(&db.pool, &with(None, None)).await.unwrap();
        assert!(!r.is_regression);
        assert_eq!(group(db.pool.clone()).await.0, "ignored");
    }
    save_event(&db.pool, &with(None, None)).await.unwrap();
    assert_eq!(group(db.pool.clone()).await.0, "unresolved");

    // Ignored forever stays ignored; resolved reopens as a regression.
    sqlx::query("UPDATE groups SET status = 'ignored' WHERE id = $1")
        .bind(saved.group_id)
        .execute(&db.pool)
        .await
        .unwrap();
    save_event(&db.pool, &with(None, None)).await.unwrap();
    assert_eq!(group(db.pool.clone()).await.0, "ignored");
    sqlx::query("UPDATE groups SET status = 'resolved', resolved_at = now() WHERE id = $1")
        .bind(saved.group_id)
        .execute(&db.pool)
        .await
        .unwrap();
    let r = save_event(&db.pool, &with(None, None)).await.unwrap();
    assert!(r.is_regression);
    assert_eq!(group(db.pool.clone()).await.0, "unresolved");
    db.drop_database().await;
}
