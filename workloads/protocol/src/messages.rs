//! Kafka message bodies (JSON). Keys: the project id as decimal text, so one project's
//! messages stay ordered within a partition.

use serde::{Deserialize, Serialize};

/// One event accepted by relay, on `ingest-events`.
///
/// `P` is the payload representation: a parsed [`serde_json::Value`] by default; a producer may
/// use `Box<serde_json::value::RawValue>` to forward the SDK's JSON without re-encoding it (the
/// bytes on the wire are the same JSON document).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IngestMessage<P = serde_json::Value> {
    /// 32 lowercase hex characters (a UUID without dashes), as Sentry writes event ids.
    pub event_id: String,
    pub project_id: u64,
    pub organization_id: u64,
    /// Numeric id of the DSN key that sent the event.
    pub key_id: u64,
    /// Unix time (seconds, fractional) when relay accepted the event.
    pub received: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// The event payload as the SDK sent it (Sentry event JSON).
    pub payload: P,
}

/// One stored event, on `events` (the eventstream).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventStreamMessage {
    pub event_id: String,
    pub project_id: u64,
    pub organization_id: u64,
    /// The issue the event was grouped into.
    pub group_id: u64,
    /// The first event of a new issue.
    pub is_new: bool,
    /// The issue was resolved and this event reopened it.
    pub is_regression: bool,
    /// Unix time (seconds) of the event.
    pub timestamp: f64,
    /// Unix time (seconds) when relay accepted it.
    pub received: f64,
    pub title: String,
    pub level: String,
}

/// What happened to an item at relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Accepted,
    Filtered,
    RateLimited,
    Invalid,
}

impl OutcomeKind {
    /// Sentry's numeric outcome code.
    pub fn code(self) -> u8 {
        match self {
            OutcomeKind::Accepted => 0,
            OutcomeKind::Filtered => 1,
            OutcomeKind::RateLimited => 2,
            OutcomeKind::Invalid => 3,
        }
    }
}

/// A count of items with one outcome, on `outcomes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// RFC 3339 time, truncated to the second.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<u64>,
    pub outcome: OutcomeKind,
    /// Machine-readable reason (`key_quota`, `invalid_envelope`, `disabled_key`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Data category (`error`, `default`, ...).
    pub category: String,
    pub quantity: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_message_round_trips() {
        let msg = IngestMessage {
            event_id: "fc6d8c0c43fc4630ad850ee518f1b9d0".into(),
            project_id: 1,
            organization_id: 2,
            key_id: 3,
            received: 1_700_000_000.5,
            remote_addr: None,
            payload: serde_json::json!({"message": "hi"}),
        };
        let json = serde_json::to_string(&msg).unwrap();
        assert!(!json.contains("remote_addr"));
        assert_eq!(serde_json::from_str::<IngestMessage>(&json).unwrap(), msg);
    }

    #[test]
    fn outcome_kinds_use_sentry_codes() {
        assert_eq!(OutcomeKind::RateLimited.code(), 2);
        assert_eq!(
            serde_json::to_string(&OutcomeKind::RateLimited).unwrap(),
            "\"rate_limited\""
        );
    }
}
