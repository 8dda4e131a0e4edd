//! The status part of an issue update body (single and bulk), as Sentry and sentry-cli send it.
//! Pure.
//!
//! ```text
//!  {"status": "resolved" | "resolvedInNextRelease" | "unresolved" | "ignored" | "muted",
//!   "statusDetails": {"ignoreDuration": min, "ignoreCount": n, "ignoreWindow": min,
//!                     "ignoreUntil": iso, "inNextRelease": true, "inRelease": v},
//!   "ignoreDuration": min, "snoozeDuration": min}            (legacy top-level durations)
//!     └─► StatusChange { status, details (echoed as statusDetails), ignore_until, ignore_count,
//!                        in_next_release }
//! ```

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use silo_store::groups::{GroupStatus, StatusChange};

use super::iso;
use crate::error::{ApiResult, AppError};

/// Longest snooze accepted (a year), in minutes.
const MAX_MINUTES: i64 = 366 * 24 * 60;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateIssue {
    pub status: Option<String>,
    pub status_details: Option<Value>,
    pub ignore_duration: Option<i64>,
    pub snooze_duration: Option<i64>,
}

impl UpdateIssue {
    /// The change asked for, validated; `now` anchors durations.
    pub fn change(&self, now: DateTime<Utc>) -> ApiResult<StatusChange> {
        let details = match &self.status_details {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(bad("statusDetails: expected an object.")),
        };
        let status = self.status.as_deref().ok_or_else(|| {
            bad(
                "status: This field is required (resolved, resolvedInNextRelease, unresolved or \
                 ignored); other issue fields cannot be changed here.",
            )
        })?;
        match status {
            "resolved" | "resolvedInNextRelease" => {
                let mut out = Map::new();
                if status == "resolvedInNextRelease" || flag(&details, "inNextRelease")? {
                    out.insert("inNextRelease".into(), Value::Bool(true));
                }
                if let Some(release) = details.get("inRelease") {
                    let release = release
                        .as_str()
                        .filter(|r| !r.trim().is_empty())
                        .ok_or_else(|| {
                            bad("statusDetails.inRelease: expected a release version.")
                        })?;
                    out.insert("inRelease".into(), Value::from(release));
                }
                let in_next_release = out.contains_key("inNextRelease");
                Ok(StatusChange {
                    in_next_release,
                    ..with_details(GroupStatus::Resolved, out)
                })
            }
            "unresolved" => Ok(StatusChange::new(GroupStatus::Unresolved)),
            "ignored" | "muted" => self.ignore(&details, now),
            other => Err(bad(&format!(
                "status: {other:?} is not a valid choice; use resolved, resolvedInNextRelease, \
                 unresolved or ignored."
            ))),
        }
    }

    fn ignore(&self, details: &Map<String, Value>, now: DateTime<Utc>) -> ApiResult<StatusChange> {
        if details.contains_key("ignoreUserCount") || details.contains_key("ignoreUserWindow") {
            return Err(bad(
                "statusDetails.ignoreUserCount is not supported; ignore for a duration \
                 (ignoreDuration) or a number of events (ignoreCount).",
            ));
        }
        let duration = match minutes(details, "ignoreDuration")? {
            Some(m) => Some(m),
            None => match self.ignore_duration.or(self.snooze_duration) {
                Some(m) => Some(check_minutes("ignoreDuration", m)?),
                None => None,
            },
        };
        let until = match details.get("ignoreUntil") {
            None | Some(Value::Null) => duration.map(|m| now + Duration::minutes(m)),
            Some(Value::String(s)) => Some(
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| bad("statusDetails.ignoreUntil: expected an ISO 8601 time."))?,
            ),
            Some(_) => return Err(bad("statusDetails.ignoreUntil: expected an ISO 8601 time.")),
        };
        let count = count(details, "ignoreCount")?;
        let window = minutes(details, "ignoreWindow")?;
        let mut out = Map::new();
        if let Some(m) = duration {
            out.insert("ignoreDuration".into(), json!(m));
        }
        if let Some(t) = until {
            out.insert("ignoreUntil".into(), Value::from(iso(t)));
        }
        if let Some(n) = count {
            out.insert("ignoreCount".into(), json!(n));
        }
        if let Some(w) = window {
            out.insert("ignoreWindow".into(), json!(w));
        }
        let mut change = with_details(GroupStatus::Ignored, out);
        change.ignore_until = until;
        change.ignore_count = count;
        Ok(change)
    }
}

fn with_details(status: GroupStatus, details: Map<String, Value>) -> StatusChange {
    StatusChange {
        details: Value::Object(details),
        ..StatusChange::new(status)
    }
}

fn bad(message: &str) -> AppError {
    AppError::BadRequest(message.to_owned())
}

fn flag(details: &Map<String, Value>, key: &str) -> ApiResult<bool> {
    match details.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(&format!(
            "statusDetails.{key}: expected true or false."
        ))),
    }
}

fn positive(details: &Map<String, Value>, key: &str) -> ApiResult<Option<i64>> {
    match details.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(bad(&format!(
                "statusDetails.{key}: expected a positive whole number."
            ))),
        },
    }
}

fn minutes(details: &Map<String, Value>, key: &str) -> ApiResult<Option<i64>> {
    positive(details, key)?
        .map(|m| check_minutes(key, m))
        .transpose()
}

fn check_minutes(key: &str, m: i64) -> ApiResult<i64> {
    if m <= 0 || m > MAX_MINUTES {
        return Err(bad(&format!(
            "{key}: expected 1 to {MAX_MINUTES} minutes, got {m}."
        )));
    }
    Ok(m)
}

fn count(details: &Map<String, Value>, key: &str) -> ApiResult<Option<i64>> {
    positive(details, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(body: Value) -> ApiResult<StatusChange> {
        let body: UpdateIssue = serde_json::from_value(body).unwrap();
        body.change(DateTime::from_timestamp(1_700_000_000, 0).unwrap())
    }

    #[test]
    fn statuses_and_details() {
        assert_eq!(
            change(json!({"status": "resolved"})).unwrap(),
            StatusChange::new(GroupStatus::Resolved)
        );
        let next = change(json!({"status": "resolvedInNextRelease"})).unwrap();
        assert_eq!(next.status, GroupStatus::Resolved);
        assert_eq!(next.details, json!({"inNextRelease": true}));
        assert!(next.in_next_release);
        let flagged =
            change(json!({"status": "resolved", "statusDetails": {"inNextRelease": true}}))
                .unwrap();
        assert_eq!(flagged, next);
        assert!(
            !change(json!({"status": "resolved"}))
                .unwrap()
                .in_next_release
        );
        let muted = change(json!({"status": "muted"})).unwrap();
        assert_eq!(
            (muted.status, muted.ignore_until),
            (GroupStatus::Ignored, None)
        );
        let snoozed =
            change(json!({"status": "ignored", "statusDetails": {"ignoreDuration": 30}})).unwrap();
        assert_eq!(
            snoozed.ignore_until.map(|t| t.timestamp()),
            Some(1_700_000_000 + 1800)
        );
        assert_eq!(snoozed.details["ignoreDuration"], 30);
        let legacy = change(json!({"status": "ignored", "snoozeDuration": 5})).unwrap();
        assert!(legacy.ignore_until.is_some());
        let counted =
            change(json!({"status": "ignored", "statusDetails": {"ignoreCount": 10}})).unwrap();
        assert_eq!(counted.ignore_count, Some(10));
    }

    #[test]
    fn bad_bodies_say_why() {
        for (body, needle) in [
            (json!({}), "status"),
            (json!({"status": "sleeping"}), "sleeping"),
            (
                json!({"status": "ignored", "statusDetails": {"ignoreDuration": -1}}),
                "ignoreDuration",
            ),
            (
                json!({"status": "ignored", "statusDetails": {"ignoreUserCount": 3}}),
                "ignoreUserCount",
            ),
            (
                json!({"status": "ignored", "statusDetails": {"ignoreUntil": "soon"}}),
                "ignoreUntil",
            ),
            (
                json!({"status": "resolved", "statusDetails": []}),
                "statusDetails",
            ),
        ] {
            let err = change(body.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
