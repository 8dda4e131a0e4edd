//! The post-processor against real Kafka and Postgres with a local webhook receiver: rules
//! fire once per firing, replays do not notify twice, failures are recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde_json::{Value, json};
use silo_pipeline_tests::kafka::{self, Topics};
use silo_pipeline_tests::{binaries, seed};
use silo_protocol::{EventStreamMessage, topics};
use silo_store::alert_rules::{self, NewRule, RuleKind};
use silo_store::ingest::{NewEvent, save_event};
use silo_testkit::{Process, Services, TestDb, wait};

const DEADLINE: Duration = Duration::from_secs(60);

type Received = Arc<Mutex<Vec<Value>>>;

/// A webhook receiver: `/ok` records and answers 200, `/fail` records and answers 500.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    async fn ok(State(r): State<Received>, Json(body): Json<Value>) -> StatusCode {
        r.lock().expect("test step").push(body);
        StatusCode::OK
    }
    async fn fail(State(r): State<Received>, Json(body): Json<Value>) -> StatusCode {
        r.lock().expect("test step").push(json!({"failed": body}));
        StatusCode::INTERNAL_SERVER_ERROR
    }
    let app = Router::new()
        .route("/ok", post(ok))
        .route("/fail", post(fail))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("test step");
    let addr = listener.local_addr().expect("test step");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("test step") });
    (format!("http://{addr}"), received)
}

struct Setup {
    services: Services,
    db: TestDb,
    topics: Topics,
    org_id: i64,
    project_id: i64,
}

impl Setup {
    async fn new(tag: &str) -> Self {
        let services = Services::get();
        let db = TestDb::migrated(&format!("silo_{tag}"), &silo_store::MIGRATOR).await;
        let topics = Topics::create(&services, tag).await;
        let (org_id, project_id) = seed::project(&db.pool, tag).await;
        Setup {
            services,
            db,
            topics,
            org_id,
            project_id,
        }
    }

    async fn rule(
        &self,
        kind: RuleKind,
        threshold: Option<i64>,
        interval: Option<i64>,
        url: &str,
    ) -> i64 {
        alert_rules::create(
            &self.db.pool,
            &NewRule {
                project_id: self.project_id,
                name: format!("{} rule", kind.as_str()),
                kind,
                threshold,
                interval_seconds: interval,
                webhook_url: url.to_owned(),
                enabled: true,
            },
        )
        .await
        .expect("test step")
        .id
    }

    async fn start(&self) -> Process {
        assert!(env!("CARGO_BIN_EXE_postprocess").ends_with("postprocess"));
        let settings = [
            ("SILO_WEBHOOK_MAX_ATTEMPTS", "2"),
            ("SILO_RETRY_MAX_BACKOFF", "200ms"),
            ("SILO_PUBLIC_URL", "http://silo.test"),
        ];
        let (services, db, topics) = (&self.services, &self.db, &self.topics);
        binaries::start_consumer("postprocess", services, db, topics, &settings).await
    }

    /// Store an event the way the consumers do and publish its eventstream record.
    async fn ingest(&self, kind: &str) -> EventStreamMessage {
        let event_id = uuid::Uuid::new_v4();
        let now = chrono::Utc::now();
        let title = format!("{kind}: boom");
        let saved = save_event(
            &self.db.pool,
            &NewEvent {
                project_id: self.project_id,
                event_id,
                timestamp: now,
                received: now,
                title: title.clone(),
                message: String::new(),
                culprit: "app in run".into(),
                platform: "rust".into(),
                level: "error".into(),
                environment: None,
                release: None,
                data: json!({}),
                fingerprint: kind.to_owned(),
                group_type: "error".into(),
                metadata: json!({}),
                tags: Vec::new(),
                user: None,
            },
        )
        .await
        .expect("test step");
        let record = EventStreamMessage {
            event_id: event_id.simple().to_string(),
            project_id: u64::try_from(self.project_id).expect("test step"),
            organization_id: u64::try_from(self.org_id).expect("test step"),
            group_id: u64::try_from(saved.group_id).expect("test step"),
            is_new: saved.is_new,
            is_regression: saved.is_regression,
            timestamp: now.timestamp_micros() as f64 / 1e6,
            received: now.timestamp_micros() as f64 / 1e6,
            title,
            level: "error".into(),
        };
        self.publish(&record).await;
        record
    }

    async fn publish(&self, record: &EventStreamMessage) {
        let producer = kafka::producer(&self.services);
        let topic = self.topics.name(topics::EVENTS);
        let body = serde_json::to_vec(record).expect("test step");
        let key = record.project_id.to_string();
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&body),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .expect("test step");
    }

    /// (rule id, status, attempts) of every notification, by id.
    async fn notifications(&self) -> Vec<(i64, String, i32)> {
        sqlx::query_as("SELECT rule_id, status, attempts FROM notifications ORDER BY id")
            .fetch_all(&self.db.pool)
            .await
            .expect("test step")
    }
}

async fn wait_notifications(s: &Setup, n: usize) -> Vec<(i64, String, i32)> {
    wait::until(&format!("{n} settled notifications"), DEADLINE, || async {
        let rows = s.notifications().await;
        let settled = rows.iter().filter(|(_, st, _)| st != "pending").count();
        if settled == n {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await
}

#[tokio::test]
async fn new_issue_and_regression_rules_notify_once_and_replays_do_not_repeat() {
    let s = Setup::new("ppnew").await;
    let (hook, received) = receiver().await;
    let new_rule = s
        .rule(RuleKind::NewIssue, None, None, &format!("{hook}/ok"))
        .await;
    let regression_rule = s
        .rule(RuleKind::Regression, None, None, &format!("{hook}/ok"))
        .await;
    let mut pp = s.start().await;

    let first = s.ingest("ValueError").await;
    let _second = s.ingest("ValueError").await;
    let rows = wait_notifications(&s, 1).await;
    assert_eq!(rows, vec![(new_rule, "delivered".to_owned(), 1)]);
    // The first event's record again (a replay): nothing new is sent.
    s.publish(&first).await;
    // Wait for the replay to be evaluated.
    pp.wait_metric("silo_postprocess_events_processed_total", 3.0, DEADLINE)
        .await;
    assert_eq!(s.notifications().await.len(), 1);
    {
        let got = received.lock().expect("test step");
        assert_eq!(got.len(), 1);
        let body = &got[0];
        assert_eq!(body["project"], "ppnew");
        assert_eq!(body["id"], first.group_id.to_string());
        assert_eq!(body["message"], "ValueError: boom");
        assert_eq!(body["event"]["event_id"], first.event_id);
        assert_eq!(body["rule"]["kind"], "new_issue");
        assert_eq!(
            body["url"],
            format!(
                "http://silo.test/organizations/ppnew/issues/{}/",
                first.group_id
            )
        );
    }

    // Resolve the issue: the next event is a regression.
    sqlx::query("UPDATE groups SET status = 'resolved' WHERE id = $1")
        .bind(i64::try_from(first.group_id).expect("test step"))
        .execute(&s.db.pool)
        .await
        .expect("test step");
    let third = s.ingest("ValueError").await;
    assert!(third.is_regression);
    let rows = wait_notifications(&s, 2).await;
    assert_eq!(rows[1], (regression_rule, "delivered".to_owned(), 1));
    assert_eq!(
        received.lock().expect("test step")[1]["rule"]["kind"],
        "regression"
    );

    assert!(
        pp.terminate(Duration::from_secs(30)).await,
        "clean exit on SIGTERM"
    );
    s.db.drop_database().await;
}

#[tokio::test]
async fn frequency_rule_fires_once_above_threshold_and_failures_are_recorded() {
    let s = Setup::new("ppfreq").await;
    let (hook, received) = receiver().await;
    let freq = s
        .rule(
            RuleKind::Frequency,
            Some(2),
            Some(3600),
            &format!("{hook}/ok"),
        )
        .await;
    let failing = s
        .rule(RuleKind::NewIssue, None, None, &format!("{hook}/fail"))
        .await;
    let _pp = s.start().await;

    let mut records = Vec::new();
    for _ in 0..5 {
        records.push(s.ingest("Timeout").await);
    }
    // The new-issue rule's webhook fails twice (max attempts) and is recorded as failed;
    // the frequency rule fires on the third event only (then throttled for the interval).
    let rows = wait_notifications(&s, 2).await;
    assert_eq!(
        rows,
        vec![
            (failing, "failed".to_owned(), 2),
            (freq, "delivered".to_owned(), 1),
        ]
    );
    let last_error: Option<String> =
        sqlx::query_scalar("SELECT last_error FROM notifications WHERE rule_id = $1")
            .bind(failing)
            .fetch_one(&s.db.pool)
            .await
            .expect("test step");
    assert!(last_error.expect("test step").contains("500"));
    let got = received.lock().expect("test step").clone();
    assert_eq!(got.iter().filter(|b| b.get("failed").is_some()).count(), 2);
    let ok: Vec<&Value> = got.iter().filter(|b| b.get("failed").is_none()).collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(
        ok[0]["event"]["event_id"], records[2].event_id,
        "fired for the event that took the count past 2"
    );
    s.db.drop_database().await;
}
