//! Shared set-up of the consumer integration tests: a fresh database, unique topics, the
//! `consumers` binary of this package, and helpers to feed `ingest-events` directly.

#![allow(dead_code)]

use std::time::Duration;

use rdkafka::producer::FutureProducer;
use serde_json::{Value, json};
use silo_pipeline_tests::kafka::{self, Topics};
use silo_pipeline_tests::{binaries, seed};
use silo_protocol::{IngestMessage, topics};
use silo_testkit::{Process, Services, TestDb, wait};

pub struct Setup {
    pub services: Services,
    pub db: TestDb,
    pub topics: Topics,
    pub producer: FutureProducer,
    pub org_id: i64,
    pub project_id: i64,
}

impl Setup {
    pub async fn new(tag: &str) -> Self {
        let services = Services::get();
        let db = TestDb::migrated(&format!("silo_{tag}"), &silo_store::MIGRATOR).await;
        let topics = Topics::create(&services, tag).await;
        let producer = kafka::producer(&services);
        let (org_id, project_id) = seed::project(&db.pool, tag).await;
        Setup {
            services,
            db,
            topics,
            producer,
            org_id,
            project_id,
        }
    }

    /// Start the `consumers` binary built for this package's tests and wait until ready.
    pub async fn start_consumers(&self) -> Process {
        self.start_consumers_with(&[]).await
    }

    /// [`Setup::start_consumers`] with `extra` settings.
    pub async fn start_consumers_with(&self, extra: &[(&str, &str)]) -> Process {
        assert!(env!("CARGO_BIN_EXE_consumers").ends_with("consumers"));
        let mut settings = vec![
            ("SILO_KAFKA_SESSION_TIMEOUT", "6s"),
            ("SILO_RETRY_MAX_BACKOFF", "1s"),
        ];
        settings.extend_from_slice(extra);
        let (services, db, topics) = (&self.services, &self.db, &self.topics);
        binaries::start_consumer("consumers", services, db, topics, &settings).await
    }

    pub fn message(&self, event_id: &str, payload: Value) -> IngestMessage {
        IngestMessage {
            event_id: event_id.to_owned(),
            project_id: u64::try_from(self.project_id).expect("project id"),
            organization_id: u64::try_from(self.org_id).expect("org id"),
            key_id: 1,
            received: chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
            remote_addr: None,
            payload,
        }
    }

    pub async fn send(&self, msg: &IngestMessage) {
        let topic = self.topics.name(topics::INGEST_EVENTS);
        kafka::send_ingest(&self.producer, &topic, msg).await;
    }

    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE project_id = $1")
            .bind(self.project_id)
            .fetch_one(&self.db.pool)
            .await
            .unwrap_or(-1)
    }

    /// Wait until the project has `n` stored events.
    pub async fn wait_events(&self, n: i64, timeout: Duration) {
        wait::until(&format!("{n} stored events"), timeout, || async {
            let c = self.event_count().await;
            if c == n {
                Ok(())
            } else {
                Err(format!("{c} events"))
            }
        })
        .await;
    }

    /// (title, times_seen) of every issue, sorted by title.
    pub async fn issues(&self) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT title, times_seen FROM groups WHERE project_id = $1 ORDER BY title")
            .bind(self.project_id)
            .fetch_all(&self.db.pool)
            .await
            .expect("list issues")
    }

    pub async fn finish(self) {
        self.db.drop_database().await;
    }
}

pub fn exception(kind: &str, value: &str) -> Value {
    json!({"platform": "rust", "level": "error",
           "exception": {"values": [{"type": kind, "value": value}]}})
}

pub fn event_id(n: u32) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_owned() + &format!("{n:08x}")
}

/// A minimal stored-event row of `project_id` in the issue `fingerprint`, titled `title`.
pub fn new_event(project_id: i64, fingerprint: &str, title: &str) -> silo_store::ingest::NewEvent {
    silo_store::ingest::NewEvent {
        project_id,
        event_id: uuid::Uuid::new_v4(),
        timestamp: chrono::Utc::now(),
        received: chrono::Utc::now(),
        title: title.into(),
        message: String::new(),
        culprit: String::new(),
        platform: "rust".into(),
        level: "error".into(),
        environment: None,
        release: None,
        data: json!({}),
        fingerprint: fingerprint.into(),
        group_type: "error".into(),
        metadata: json!({}),
        tags: Vec::new(),
        user: None,
    }
}
