//! `silo_store::ingest_batch::save_batch` on a real Postgres: a batch stores and counts what
//! `save_event` would, event by event, in Kafka order; concurrent batches of the same events
//! store and count them once.

mod support;

use chrono::{Duration as TimeDelta, Utc};
use silo_pipeline_tests::seed;
use silo_store::StoreError;
use silo_store::ingest::{self, NewEvent, SavedEvent};
use silo_store::ingest_batch::save_batch;
use silo_testkit::TestDb;
use uuid::Uuid;

fn event(project_id: i64, fingerprint: &str, title: &str) -> NewEvent {
    support::new_event(project_id, fingerprint, title)
}

/// `save_batch`, retried on transient errors (another writer's events conflicting, a
/// deadlock between overlapping batches), as the consumer's retry loop does.
async fn save(pool: &silo_store::PgPool, events: &[NewEvent]) -> Vec<SavedEvent> {
    let mut last: Option<StoreError> = None;
    for _ in 0..20 {
        match save_batch(pool, events).await {
            Ok(saved) => return saved,
            Err(e) if ingest::is_permanent(&e) => panic!("permanent error: {e}"),
            Err(e) => last = Some(e),
        }
    }
    panic!("still failing after 20 tries: {last:?}");
}

async fn issue(pool: &silo_store::PgPool, id: i64) -> (String, String, i64, i64, i64) {
    sqlx::query_as(
        "SELECT title, status, times_seen, user_count, \
           (SELECT count(*) FROM events e WHERE e.group_id = g.id) \
         FROM groups g WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("issue")
}

#[tokio::test]
async fn a_batch_names_counts_and_dedupes_like_event_by_event() {
    let db = TestDb::migrated("silo_batch", &silo_store::MIGRATOR).await;
    let (_, project_id) = seed::project(&db.pool, "batch").await;

    let a1 = event(project_id, "a", "A first");
    let mut a2 = event(project_id, "a", "A second");
    a2.user = Some("id:1".into());
    a2.release = Some("app@1".into());
    let mut b1 = event(project_id, "b", "B first");
    b1.user = Some("id:1".into());
    let mut a3 = event(project_id, "a", "A third");
    a3.user = Some("id:2".into());
    a3.release = Some("app@2".into());
    // a1 twice in the batch (a replay arriving with it).
    let batch = [a1.clone(), a2, b1, a1.clone(), a3];
    let r = save(&db.pool, &batch).await;
    let flags: Vec<(bool, bool)> = r.iter().map(|r| (r.is_new, r.duplicate)).collect();
    assert_eq!(
        flags,
        vec![
            (true, false),
            (false, false),
            (true, false),
            (true, true),
            (false, false)
        ]
    );
    let (a, b) = (r[0].group_id, r[2].group_id);
    assert_ne!(a, b);
    assert_eq!(
        issue(&db.pool, a).await,
        ("A first".into(), "unresolved".into(), 3, 2, 3)
    );
    assert_eq!(
        issue(&db.pool, b).await,
        ("B first".into(), "unresolved".into(), 1, 1, 1)
    );
    let releases: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT first_release, last_release FROM groups WHERE id = $1")
            .bind(a)
            .fetch_one(&db.pool)
            .await
            .expect("releases");
    assert_eq!(releases, (Some("app@1".into()), Some("app@2".into())));
    // Issues are numbered in the order their first events came.
    let short_ids: Vec<i64> =
        sqlx::query_scalar("SELECT short_id FROM groups WHERE id = ANY($1) ORDER BY short_id")
            .bind(vec![a, b])
            .fetch_all(&db.pool)
            .await
            .expect("short ids");
    let a_short: i64 = sqlx::query_scalar("SELECT short_id FROM groups WHERE id = $1")
        .bind(a)
        .fetch_one(&db.pool)
        .await
        .expect("short id");
    assert_eq!(short_ids[0], a_short);

    // The whole batch replayed: all duplicates, as first stored, nothing counted again.
    let replay = save(&db.pool, &batch).await;
    assert!(replay.iter().all(|r| r.duplicate), "{replay:?}");
    assert_eq!(replay[0].group_id, a);
    assert!(replay[0].is_new && !replay[1].is_new);
    assert_eq!(issue(&db.pool, a).await.2, 3);
    db.drop_database().await;
}

/// A resolved issue reopens on the batch's first event (a regression); an ignored issue
/// reopens once an event of the batch reaches its count; ignored forever stays ignored.
#[tokio::test]
async fn regressions_and_snoozes_in_a_batch_end_as_event_by_event() {
    let db = TestDb::migrated("silo_batch_status", &silo_store::MIGRATOR).await;
    let (_, project_id) = seed::project(&db.pool, "status").await;
    let first = save(&db.pool, &[event(project_id, "a", "A")]).await;
    let id = first[0].group_id;
    let set = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query(sql)
                .bind(id)
                .execute(&pool)
                .await
                .expect("status set");
        }
    };
    let batch = |n: usize| {
        (0..n)
            .map(|_| event(project_id, "a", "A"))
            .collect::<Vec<_>>()
    };

    set("UPDATE groups SET status = 'resolved', resolved_at = now() WHERE id = $1").await;
    let r = save(&db.pool, &batch(3)).await;
    let regressions: Vec<bool> = r.iter().map(|r| r.is_regression).collect();
    assert_eq!(regressions, vec![true, false, false]);
    assert_eq!(issue(&db.pool, id).await.1, "unresolved");

    // Ignored until 2 more events: a batch of 2 leaves it ignored, the next event reopens it.
    set("UPDATE groups SET status = 'ignored', ignore_until_times_seen = times_seen + 2 WHERE id = $1")
        .await;
    save(&db.pool, &batch(2)).await;
    assert_eq!(issue(&db.pool, id).await.1, "ignored");
    let r = save(&db.pool, &batch(1)).await;
    assert!(!r[0].is_regression);
    assert_eq!(issue(&db.pool, id).await.1, "unresolved");

    set("UPDATE groups SET status = 'ignored', ignore_until_times_seen = NULL WHERE id = $1").await;
    save(&db.pool, &batch(5)).await;
    assert_eq!(issue(&db.pool, id).await.1, "ignored");
    assert_eq!(issue(&db.pool, id).await.2, 1 + 3 + 2 + 1 + 5);
    db.drop_database().await;
}

/// The latest event (by timestamp) becomes the issue's last event, whatever the order.
#[tokio::test]
async fn first_and_last_seen_follow_the_event_timestamps() {
    let db = TestDb::migrated("silo_batch_times", &silo_store::MIGRATOR).await;
    let (_, project_id) = seed::project(&db.pool, "times").await;
    let now = Utc::now();
    let mut events: Vec<NewEvent> = (0..4).map(|_| event(project_id, "a", "A")).collect();
    for (e, minutes) in events.iter_mut().zip([5, 1, 9, 3]) {
        e.timestamp = now - TimeDelta::minutes(minutes);
    }
    let r = save(&db.pool, &events).await;
    let (first_seen, last_seen, last_event): (chrono::DateTime<Utc>, chrono::DateTime<Utc>, Uuid) =
        sqlx::query_as("SELECT first_seen, last_seen, last_event_id FROM groups WHERE id = $1")
            .bind(r[0].group_id)
            .fetch_one(&db.pool)
            .await
            .expect("times");
    assert_eq!(first_seen.timestamp(), events[2].timestamp.timestamp());
    assert_eq!(last_seen.timestamp(), events[1].timestamp.timestamp());
    assert_eq!(last_event, events[1].event_id);
    db.drop_database().await;
}

/// Four consumers storing overlapping batches at once (a rebalance replaying what another
/// already took): every event stored and counted once.
#[tokio::test]
async fn concurrent_overlapping_batches_store_and_count_once() {
    let db = TestDb::migrated("silo_batch_race", &silo_store::MIGRATOR).await;
    let (_, project_id) = seed::project(&db.pool, "race").await;
    let events: Vec<NewEvent> = (0..200)
        .map(|i| event(project_id, &format!("fp-{}", i % 7), "E"))
        .collect();
    let runs: Vec<_> = (0..4)
        .map(|k| {
            let pool = db.pool.clone();
            // Each writer takes a different, overlapping window of the stream.
            let slice = events[k * 30..(k * 30 + 110).min(events.len())].to_vec();
            tokio::spawn(async move { save(&pool, &slice).await })
        })
        .collect();
    for run in runs {
        run.await.expect("writer");
    }
    save(&db.pool, &events).await;
    let (stored, seen, issues): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE project_id = $1), \
           (SELECT sum(times_seen)::bigint FROM groups WHERE project_id = $1), \
           (SELECT count(*) FROM groups WHERE project_id = $1)",
    )
    .bind(project_id)
    .fetch_one(&db.pool)
    .await
    .expect("counts");
    assert_eq!((stored, seen, issues), (200, 200, 7));
    db.drop_database().await;
}

/// Resolved in the next release: in one batch, events of the release it was resolved in leave
/// it resolved; the first event of a newer release reopens it as a regression.
#[tokio::test]
async fn resolved_in_next_release_reopens_on_the_first_event_of_a_newer_release() {
    let db = TestDb::migrated("silo_batch_next", &silo_store::MIGRATOR).await;
    let (_, project_id) = seed::project(&db.pool, "next").await;
    let with_release = |release: &str| {
        let mut e = event(project_id, "a", "A");
        e.release = Some(release.into());
        e
    };
    let first = [with_release("app@1")];
    silo_store::releases::record_seen(&db.pool, &silo_store::releases::seen_in(first.iter()))
        .await
        .expect("release app@1");
    let id = save(&db.pool, &first).await[0].group_id;
    sqlx::query(
        "UPDATE groups SET status = 'resolved', resolved_at = now(), resolved_in_release_id = \
           (SELECT id FROM releases WHERE version = 'app@1') WHERE id = $1",
    )
    .bind(id)
    .execute(&db.pool)
    .await
    .expect("resolve in next release");
    let batch = [
        with_release("app@1"),
        with_release("app@2"),
        with_release("app@2"),
    ];
    silo_store::releases::record_seen(&db.pool, &silo_store::releases::seen_in(batch.iter()))
        .await
        .expect("release app@2");
    let r = save(&db.pool, &batch).await;
    let regressions: Vec<bool> = r.iter().map(|r| r.is_regression).collect();
    assert_eq!(regressions, vec![false, true, false]);
    assert_eq!(issue(&db.pool, id).await.1, "unresolved");
    let cleared: Option<i64> =
        sqlx::query_scalar("SELECT resolved_in_release_id FROM groups WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .expect("resolution release");
    assert_eq!(cleared, None);
    db.drop_database().await;
}
