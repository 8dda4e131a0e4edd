//! A batch of eventstream records: the rules of every project in the batch are read in one
//! query; then each record in turn: evaluate its project's rules, record each firing once,
//! deliver it.
//!
//! A record is finished when every firing is recorded and its delivery settled (delivered or
//! failed); the batch's offsets are committed once all its records are. A replay finds the
//! recorded rows and only retries those still pending.

use std::collections::BTreeSet;
use std::future::Future;

use chrono::Utc;
use silo_kafka_consumer::{CountErrors, Handler, Interrupted, Postgres};
use silo_protocol::EventStreamMessage;
use silo_store::{StoreError, alert_rules, alerting, groups};
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::payload;
use crate::rules::{FrequencyFacts, Rule};
use crate::webhook::{Delivery, Webhook};

#[derive(Clone)]
pub struct Worker {
    pub postgres: Postgres,
    pub webhook: Webhook,
    /// Base URL of the web UI/API, for issue links.
    pub base_url: String,
    pub metrics: Metrics,
}

impl Handler for Worker {
    /// The records one after the other, each settled before the next starts, with the rules
    /// of all their projects loaded once.
    async fn handle_batch(&self, payloads: &[Option<&[u8]>]) -> Result<(), Interrupted> {
        let records: Vec<Record> = payloads.iter().filter_map(|p| self.decode(*p)).collect();
        let projects: Vec<i64> = records
            .iter()
            .map(|r| r.project_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if projects.is_empty() {
            return Ok(());
        }
        let rules = self
            .db("load alert rules", || {
                alert_rules::enabled_for_projects(&self.postgres.pool, &projects)
            })
            .await?
            .unwrap_or_default();
        let rules: Vec<(i64, Rule)> = rules
            .iter()
            .filter_map(|stored| match Rule::try_from(stored) {
                Ok(rule) => Some((stored.project_id, rule)),
                Err(error) => {
                    tracing::error!(%error, "skipping an alert rule");
                    self.metrics.error("invalid");
                    None
                }
            })
            .collect();
        for record in &records {
            for (_, rule) in rules.iter().filter(|(p, _)| *p == record.project_id) {
                self.apply(rule, &record.event, record.event_id, record.group_id)
                    .await?;
            }
            self.metrics.events_processed.inc();
        }
        Ok(())
    }
}

/// A decoded eventstream record with its ids checked.
struct Record {
    event: EventStreamMessage,
    event_id: Uuid,
    project_id: i64,
    group_id: i64,
}

impl Worker {
    /// Decode a record; `None` (logged, counted) when it can never be processed.
    fn decode(&self, payload: Option<&[u8]>) -> Option<Record> {
        let event: EventStreamMessage = match serde_json::from_slice(payload.unwrap_or_default()) {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(%error, "skipping a record that is not an EventStreamMessage");
                self.metrics.error("invalid");
                return None;
            }
        };
        let (Ok(event_id), Ok(project_id), Ok(group_id)) = (
            Uuid::try_parse(&event.event_id),
            i64::try_from(event.project_id),
            i64::try_from(event.group_id),
        ) else {
            tracing::error!(event_id = %event.event_id, "skipping a record with invalid ids");
            self.metrics.error("invalid");
            return None;
        };
        Some(Record {
            event,
            event_id,
            project_id,
            group_id,
        })
    }

    async fn apply(
        &self,
        rule: &Rule,
        event: &EventStreamMessage,
        event_id: Uuid,
        group_id: i64,
    ) -> Result<(), Interrupted> {
        let facts = match rule.window(event) {
            None => None,
            Some(w) => {
                let count = self
                    .db("count issue events", || {
                        alerting::count_group_events(
                            &self.postgres.pool,
                            group_id,
                            w.since,
                            w.until,
                        )
                    })
                    .await?;
                let since = Utc::now() - chrono::Duration::seconds(rule.interval_seconds);
                let fired_recently = self
                    .db("check recent notifications", || {
                        alerting::fired_recently(
                            &self.postgres.pool,
                            rule.id,
                            group_id,
                            event_id,
                            since,
                        )
                    })
                    .await?;
                match (count, fired_recently) {
                    (Some(count), Some(fired_recently)) => Some(FrequencyFacts {
                        count,
                        fired_recently,
                    }),
                    _ => None,
                }
            }
        };
        if !rule.fires(event, facts) {
            return Ok(());
        }
        let Some(recorded) = self
            .db("record notification", || {
                alerting::record_notification(&self.postgres.pool, rule.id, group_id, event_id)
            })
            .await?
        else {
            return Ok(());
        };
        if recorded.status != "pending" {
            // Settled before a restart; a replay must not notify twice.
            self.metrics.notification("replayed");
            return Ok(());
        }
        if recorded.created {
            self.metrics
                .rules_fired
                .get_or_create(&crate::metrics::KindLabels {
                    kind: rule.kind.as_str(),
                })
                .inc();
        }
        let Some(group) = self
            .db("load issue", || groups::get(&self.postgres.pool, group_id))
            .await?
            .flatten()
        else {
            self.settle(
                recorded.id,
                recorded.attempts,
                Err("the issue no longer exists".into()),
            )
            .await?;
            return Ok(());
        };
        let body = payload::build(&self.base_url, rule, &group, event);
        let outcome = self
            .webhook
            .deliver(&rule.webhook_url, &body, &self.postgres.shutdown)
            .await;
        let (attempts, result) = match outcome {
            Delivery::Delivered { attempts } => (attempts, Ok(())),
            Delivery::Failed { attempts, error } => (attempts, Err(error)),
            Delivery::Interrupted { attempts } => {
                self.metrics
                    .webhook_attempts
                    .inc_by(u64::try_from(attempts).unwrap_or(0));
                return Err(Interrupted);
            }
        };
        self.metrics
            .webhook_attempts
            .inc_by(u64::try_from(attempts).unwrap_or(0));
        self.settle(recorded.id, recorded.attempts + attempts, result)
            .await
    }

    async fn settle(
        &self,
        id: i64,
        attempts: i32,
        result: Result<(), String>,
    ) -> Result<(), Interrupted> {
        match &result {
            Ok(()) => {
                self.metrics.notification("delivered");
                self.db("mark notification delivered", || {
                    alerting::mark_delivered(&self.postgres.pool, id, attempts)
                })
                .await?;
            }
            Err(error) => {
                self.metrics.notification("failed");
                tracing::error!(notification = id, attempts, %error, "notification failed");
                self.db("mark notification failed", || {
                    alerting::mark_failed(&self.postgres.pool, id, attempts, error)
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Run a query, retrying while the database is unavailable. `None` when the query can
    /// never succeed (logged).
    async fn db<T, F, Fut>(&self, what: &'static str, query: F) -> Result<Option<T>, Interrupted>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        self.postgres.query(what, query).await
    }
}
