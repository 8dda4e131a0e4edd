//! From an `ingest-events` message to a row to store and the eventstream record. Pure.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use silo_protocol::{EventStreamMessage, IngestMessage};
use silo_store::ingest::{NewEvent, SavedEvent};
use uuid::Uuid;

use crate::enrich::enrich;
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
    /// The DSN key that sent it.
    pub key_id: u64,
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
    let mut payload = msg.payload.clone();
    // Relay gives every event a real id; a nil one (from an older relay) would make every
    // later nil-id event of the project a "duplicate" and drop it. Its replacement is derived
    // from the message, so a replay of the same message still dedupes.
    let event_id = if event_id.is_nil() {
        let derived = derived_event_id(msg);
        if let Some(event) = payload.as_object_mut() {
            event.insert("event_id".into(), derived.simple().to_string().into());
        }
        derived
    } else {
        event_id
    };
    let enriched = enrich(&mut payload, msg.remote_addr.as_deref());
    let n = normalize(&NormalizeInput {
        payload: &payload,
        received: msg.received,
    });
    let grouping = group(&payload, &n);
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
        data: payload,
        fingerprint: grouping.hash,
        tags: enriched.tags,
        user: enriched.user,
    };
    Ok(Prepared {
        event,
        organization_id: msg.organization_id,
        project_id: msg.project_id,
        key_id: msg.key_id,
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

/// A stable id for a message that came without one: the same message always gets the same id.
fn derived_event_id(msg: &IngestMessage) -> Uuid {
    let mut hash = Sha256::new();
    hash.update(msg.project_id.to_be_bytes());
    hash.update(msg.received.to_bits().to_be_bytes());
    hash.update(msg.payload.to_string().as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
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
    fn nil_ids_are_replaced_by_a_stable_derived_id() {
        let nil = "00000000000000000000000000000000";
        let a = prepare(&msg(nil)).unwrap();
        assert!(!a.event.event_id.is_nil());
        assert_eq!(
            a.event.data["event_id"],
            a.event.event_id.simple().to_string()
        );
        assert_eq!(prepare(&msg(nil)).unwrap().event.event_id, a.event.event_id);
        let mut other = msg(nil);
        other.received += 1.0;
        assert_ne!(prepare(&other).unwrap().event.event_id, a.event.event_id);
    }

    #[test]
    fn enriches_the_stored_payload() {
        let mut m = msg("fc6d8c0c43fc4630ad850ee518f1b9d0");
        m.remote_addr = Some("198.51.100.7".into());
        m.payload = json!({
            "logentry": {"message": "payment failed for %s", "params": ["bob"]},
            "user": {"id": "u1", "ip_address": "{{auto}}"},
            "release": "app@2",
        });
        let p = prepare(&m).unwrap();
        assert_eq!(p.event.title, "payment failed for bob");
        assert_eq!(p.event.message, "payment failed for bob");
        assert_eq!(p.event.data["user"]["ip_address"], "198.51.100.7");
        assert_eq!(p.event.user.as_deref(), Some("id:u1"));
        assert!(p.event.tags.contains(&("release".into(), "app@2".into())));
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
