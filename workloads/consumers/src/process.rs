//! From an `ingest-events` message to a row to store and the eventstream record. Pure.

use chrono::{DateTime, Utc};
use silo_protocol::{EventStreamMessage, IngestMessage};
use silo_store::ingest::{NewEvent, SavedEvent};
use uuid::Uuid;

use crate::grouping::group;
use crate::normalize::{NormalizeInput, normalize};

/// A message that can never be stored; it is logged, counted and skipped.
#[derive(Debug, thiserror::Error)]
pub enum RejectError {
    #[error("message is not an IngestMessage JSON document: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("event_id {0:?} is not a UUID (32 hex characters)")]
    EventId(String),
    #[error("project id {0} is out of range")]
    ProjectId(u64),
    #[error("receive time {0} is not a valid Unix time")]
    Received(f64),
}

/// An event ready to store, with what the eventstream record needs besides the store result.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub event: NewEvent,
    pub organization_id: u64,
    pub project_id: u64,
    /// Unix seconds.
    pub timestamp: f64,
    pub received: f64,
}

pub fn decode(payload: &[u8]) -> Result<IngestMessage, RejectError> {
    serde_json::from_slice(payload).map_err(RejectError::Decode)
}

/// Normalize and group one accepted event.
pub fn prepare(msg: &IngestMessage) -> Result<Prepared, RejectError> {
    let event_id =
        Uuid::try_parse(&msg.event_id).map_err(|_| RejectError::EventId(msg.event_id.clone()))?;
    let project_id =
        i64::try_from(msg.project_id).map_err(|_| RejectError::ProjectId(msg.project_id))?;
    let received_at = to_time(msg.received).ok_or(RejectError::Received(msg.received))?;
    let n = normalize(&NormalizeInput {
        payload: &msg.payload,
        received: msg.received,
    });
    let grouping = group(&msg.payload, &n);
    let timestamp = to_time(n.timestamp).unwrap_or(received_at);
    let event = NewEvent {
        project_id,
        event_id,
        timestamp,
        received: received_at,
        group_type: n.group_type().to_owned(),
        metadata: n.metadata(),
        title: n.title,
        message: n.message,
        culprit: n.culprit,
        platform: n.platform,
        level: n.level,
        environment: n.environment,
        release: n.release,
        data: msg.payload.clone(),
        fingerprint: grouping.hash,
    };
    Ok(Prepared {
        event,
        organization_id: msg.organization_id,
        project_id: msg.project_id,
        timestamp: n.timestamp,
        received: msg.received,
    })
}

/// The eventstream record for a stored (or previously stored) event.
pub fn stream_message(p: &Prepared, saved: &SavedEvent) -> EventStreamMessage {
    EventStreamMessage {
        event_id: p.event.event_id.simple().to_string(),
        project_id: p.project_id,
        organization_id: p.organization_id,
        group_id: u64::try_from(saved.group_id).unwrap_or_default(),
        is_new: saved.is_new,
        is_regression: saved.is_regression,
        timestamp: p.timestamp,
        received: p.received,
        title: p.event.title.clone(),
        level: p.event.level.clone(),
    }
}

fn to_time(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    DateTime::from_timestamp_micros((secs * 1e6).round() as i64)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn msg(event_id: &str) -> IngestMessage {
        IngestMessage {
            event_id: event_id.into(),
            project_id: 4,
            organization_id: 2,
            key_id: 1,
            received: 1_700_000_000.25,
            remote_addr: None,
            payload: json!({"exception": {"values": [{"type": "E", "value": "v"}]}, "environment": "prod"}),
        }
    }

    #[test]
    fn prepares_and_builds_stream_record() {
        let p = prepare(&msg("fc6d8c0c43fc4630ad850ee518f1b9d0")).unwrap();
        assert_eq!(p.event.project_id, 4);
        assert_eq!(p.event.title, "E: v");
        assert_eq!(p.event.environment.as_deref(), Some("prod"));
        assert_eq!(p.event.received.timestamp_millis(), 1_700_000_000_250);
        let saved = SavedEvent {
            group_id: 9,
            is_new: true,
            is_regression: false,
            duplicate: false,
        };
        let s = stream_message(&p, &saved);
        assert_eq!(s.event_id, "fc6d8c0c43fc4630ad850ee518f1b9d0");
        assert_eq!((s.group_id, s.is_new, s.organization_id), (9, true, 2));
        assert_eq!(s.timestamp, 1_700_000_000.25);
    }

    #[test]
    fn rejects_bad_ids_and_documents() {
        assert!(matches!(
            prepare(&msg("nope")),
            Err(RejectError::EventId(_))
        ));
        let mut m = msg("fc6d8c0c43fc4630ad850ee518f1b9d0");
        m.project_id = u64::MAX;
        assert!(matches!(prepare(&m), Err(RejectError::ProjectId(_))));
        let err = decode(b"{").unwrap_err();
        assert!(err.to_string().contains("not an IngestMessage"));
    }
}
