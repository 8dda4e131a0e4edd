//! The consumers against real Kafka and Postgres: grouping, deduplication, regressions, the
//! eventstream, and a SIGKILL mid-stream.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::Message;
use serde_json::json;
use silo_pipeline_tests::kafka;
use silo_protocol::{EventStreamMessage, Outcome, OutcomeKind, topics};
use silo_testkit::wait;
use support::{Setup, event_id, exception};

const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn groups_events_dedupes_replays_and_publishes_the_eventstream() {
    let s = Setup::new("group").await;
    let mut consumers = s.start_consumers().await;

    let first = event_id(1);
    let a1 = s.message(&first, exception("ValueError", "bad input 17"));
    s.send(&a1).await;
    // Messages of a batch are stored concurrently: let the first one create its issue alone.
    s.wait_events(1, DEADLINE).await;
    s.send(&s.message(&event_id(2), exception("ValueError", "bad input 18")))
        .await;
    let mut released = exception("KeyError", "id");
    released["release"] = json!("svc@2.0");
    s.send(&s.message(&event_id(3), released)).await;
    let mut fp = exception("DbError", "connection reset");
    fp["fingerprint"] = json!(["database-down"]);
    s.send(&s.message(&event_id(4), fp)).await;
    let mut fp = exception("IoError", "pipe closed");
    fp["fingerprint"] = json!(["database-down"]);
    s.send(&s.message(&event_id(5), fp)).await;
    s.send(&s.message(
        &event_id(6),
        json!({"message": "disk full", "level": "warning"}),
    ))
    .await;
    // The same event again (an SDK retry or a replay): stored once, counted once.
    s.send(&a1).await;

    s.wait_events(6, DEADLINE).await;
    // Wait for the duplicate to be seen.
    consumers
        .wait_metric("silo_consumers_duplicates_total", 1.0, DEADLINE)
        .await;
    assert_eq!(
        s.issues().await,
        vec![
            ("DbError: connection reset".to_owned(), 2),
            ("KeyError: id".to_owned(), 1),
            ("ValueError: bad input 17".to_owned(), 2),
            ("disk full".to_owned(), 1),
        ]
    );

    // The batch's release exists and belongs to the event's project.
    let releases: Vec<(String, bool)> = sqlx::query_as(
        "SELECT r.version, l.last_event IS NOT NULL FROM releases r \
         JOIN release_projects l ON l.release_id = r.id",
    )
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(releases, vec![("svc@2.0".to_owned(), true)]);

    // The eventstream carries one record per processed message, the first of an issue is_new.
    let reader = kafka::reader(&s.services, &s.topics.name(topics::EVENTS));
    let mut records: Vec<EventStreamMessage> = Vec::new();
    while records.len() < 7 {
        let m = tokio::time::timeout(DEADLINE, reader.recv())
            .await
            .expect("eventstream record within deadline")
            .expect("kafka receive");
        records.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
    }
    let by_id: BTreeMap<&str, Vec<&EventStreamMessage>> =
        records.iter().fold(BTreeMap::new(), |mut acc, r| {
            acc.entry(r.event_id.as_str()).or_default().push(r);
            acc
        });
    assert_eq!(by_id.len(), 6);
    assert_eq!(by_id[first.as_str()].len(), 2, "the replay is republished");
    assert!(
        by_id[first.as_str()]
            .iter()
            .all(|r| r.is_new && r.title == "ValueError: bad input 17")
    );
    assert_eq!(records.iter().filter(|r| r.is_new).count(), 4 + 1);

    // Resolve the ValueError issue: its next event is a regression and reopens it.
    let group_id = by_id[first.as_str()][0].group_id;
    sqlx::query("UPDATE groups SET status = 'resolved', resolved_at = now() WHERE id = $1")
        .bind(i64::try_from(group_id).unwrap())
        .execute(&s.db.pool)
        .await
        .unwrap();
    let again = event_id(7);
    s.send(&s.message(&again, exception("ValueError", "bad input 99")))
        .await;
    s.wait_events(7, DEADLINE).await;
    let (status, times_seen): (String, i64) =
        sqlx::query_as("SELECT status, times_seen FROM groups WHERE id = $1")
            .bind(i64::try_from(group_id).unwrap())
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), times_seen), ("unresolved", 3));
    let regression = loop {
        let m = tokio::time::timeout(DEADLINE, reader.recv())
            .await
            .expect("regression record within deadline")
            .expect("kafka receive");
        let r: EventStreamMessage = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if r.event_id == again {
            break r;
        }
    };
    assert!(regression.is_regression && !regression.is_new);

    assert!(
        consumers.terminate(Duration::from_secs(30)).await,
        "clean exit on SIGTERM"
    );
    s.finish().await;
}

/// The `n` outcomes the consumers wrote (they write nothing else to `outcomes` in these
/// tests).
async fn outcomes(s: &Setup, n: usize) -> Vec<Outcome> {
    let reader = kafka::reader(&s.services, &s.topics.name(topics::OUTCOMES));
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(DEADLINE, reader.recv())
            .await
            .unwrap_or_else(|_| panic!("{n} outcomes within the deadline, got {out:?}"))
            .expect("kafka receive");
        out.push(serde_json::from_slice(m.payload().expect("payload")).expect("Outcome JSON"));
    }
    out.sort_by(|a: &Outcome, b| a.reason.cmp(&b.reason));
    out
}

#[tokio::test]
async fn invalid_messages_are_skipped_without_blocking_the_partition() {
    let s = Setup::new("invalid").await;
    let _consumers = s.start_consumers().await;
    // Not a UUID, a project that does not exist, not a message at all: all skipped, each loss
    // counted as an outcome; later events still stored.
    s.send(&s.message("not-an-id", exception("E", "x"))).await;
    let lost = event_id(1);
    let mut unknown = s.message(&lost, exception("E", "x"));
    unknown.project_id = 999_999;
    s.send(&unknown).await;
    let topic = s.topics.name(topics::INGEST_EVENTS);
    s.producer
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key("1")
                .payload("{not json"),
            Duration::from_secs(30),
        )
        .await
        .expect("produce garbage");
    s.send(&s.message(&event_id(2), exception("E", "y"))).await;
    s.wait_events(1, DEADLINE).await;
    assert_eq!(s.issues().await, vec![("E: y".to_owned(), 1)]);

    let got = outcomes(&s, 3).await;
    let reasons: Vec<&str> = got.iter().filter_map(|o| o.reason.as_deref()).collect();
    assert_eq!(
        reasons,
        ["invalid_event", "invalid_message", "unstorable"],
        "{got:?}"
    );
    assert!(
        got.iter()
            .all(|o| o.outcome == OutcomeKind::Invalid && o.quantity == 1 && o.category == "error")
    );
    let project = u64::try_from(s.project_id).unwrap();
    assert_eq!(
        (got[0].project_id, got[0].event_id.as_deref()),
        (Some(project), Some("not-an-id"))
    );
    assert_eq!(
        (got[1].project_id, got[1].event_id.as_deref()),
        (None, None)
    );
    assert_eq!(
        (got[2].project_id, got[2].key_id, got[2].event_id.as_deref()),
        (Some(999_999), Some(1), Some(lost.as_str()))
    );
    s.finish().await;
}

#[tokio::test]
async fn sigkill_mid_stream_then_restart_stores_every_event_exactly_once() {
    let s = Setup::new("kill").await;
    const N: u32 = 400;
    let ids: Vec<String> = (0..N).map(event_id).collect();
    for (i, id) in ids.iter().enumerate() {
        let kind = format!("Error{}", i % 5);
        s.send(&s.message(id, exception(&kind, "boom"))).await;
    }
    // One event per transaction: the 400 take hundreds of commits, so the kill lands
    // mid-stream (full batches of 100 could all be stored between two looks).
    let mut consumers = s
        .start_consumers_with(&[("SILO_CONSUMER_BATCH_SIZE", "1")])
        .await;
    wait::until("some events stored before the kill", DEADLINE, || async {
        let c = s.event_count().await;
        if c >= 20 {
            Ok(())
        } else {
            Err(format!("{c} events"))
        }
    })
    .await;
    consumers.kill();
    let at_kill = s.event_count().await;
    assert!(
        at_kill < i64::from(N),
        "the kill must land mid-stream ({at_kill} stored)"
    );

    consumers.start();
    consumers.wait_ready(DEADLINE).await;
    s.wait_events(i64::from(N), Duration::from_secs(120)).await;

    // Replaying part of the stream again changes nothing.
    for id in ids.iter().take(10) {
        s.send(&s.message(id, exception("Error0", "boom"))).await;
    }
    // Wait for the replays to be processed.
    consumers
        .wait_metric("silo_consumers_duplicates_total", 10.0, DEADLINE)
        .await;
    assert_eq!(s.event_count().await, i64::from(N));
    let issues = s.issues().await;
    assert_eq!(issues.len(), 5);
    assert!(
        issues.iter().all(|(_, seen)| *seen == i64::from(N / 5)),
        "{issues:?}"
    );
    s.finish().await;
}

/// A burst of 10 000 events over 50 issues, all waiting in Kafka when the consumer starts (so
/// every batch is full): each issue counts exactly its 200 events.
#[tokio::test]
async fn a_burst_of_10000_events_over_50_issues_counts_every_event_exactly() {
    let s = Setup::new("burst").await;
    const N: u32 = 10_000;
    const ISSUES: u32 = 50;
    let messages: Vec<_> = (0..N)
        .map(|i| {
            s.message(
                &event_id(i),
                exception(&format!("Burst{:02}", i % ISSUES), "x"),
            )
        })
        .collect();
    for chunk in messages.chunks(500) {
        futures::future::join_all(chunk.iter().map(|m| s.send(m))).await;
    }
    let consumers = s.start_consumers().await;
    s.wait_events(i64::from(N), Duration::from_secs(300)).await;
    let issues = s.issues().await;
    assert_eq!(issues.len(), ISSUES as usize);
    for (i, (title, seen)) in issues.iter().enumerate() {
        assert_eq!(
            (title.as_str(), *seen),
            (format!("Burst{i:02}: x").as_str(), i64::from(N / ISSUES))
        );
    }
    let batches = consumers
        .wait_metric("silo_consumers_batch_events_count", 1.0, DEADLINE)
        .await;
    assert!(
        batches < f64::from(N) / 2.0,
        "a backlog is stored in batches, not event by event ({batches} batches)"
    );
    s.finish().await;
}

/// One poisoned event in a batch (Postgres refuses its NUL byte for good) is rejected alone:
/// the batch is stored again one event at a time and every other event is stored once.
#[tokio::test]
async fn a_poisoned_event_is_rejected_alone_and_the_rest_of_its_batch_stored() {
    let s = Setup::new("poison").await;
    for i in 0..20 {
        let value = if i == 10 { "nul \u{0} byte" } else { "fine" };
        s.send(&s.message(&event_id(i), exception("E", value)))
            .await;
    }
    let consumers = s.start_consumers().await;
    s.wait_events(19, DEADLINE).await;
    consumers
        .wait_metric(
            "silo_consumers_errors_total{kind=\"batch_split\"}",
            1.0,
            DEADLINE,
        )
        .await;
    consumers
        .wait_metric(
            "silo_consumers_errors_total{kind=\"invalid\"}",
            1.0,
            DEADLINE,
        )
        .await;
    assert_eq!(s.issues().await, vec![("E: fine".to_owned(), 19)]);
    let got = outcomes(&s, 1).await;
    assert_eq!(got[0].reason.as_deref(), Some("unstorable"), "{got:?}");
    assert_eq!(
        got[0].project_id,
        Some(u64::try_from(s.project_id).unwrap())
    );
    s.finish().await;
}
