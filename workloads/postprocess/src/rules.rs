//! Alert rule evaluation. Pure: the facts that need the database (an issue's recent event
//! count, whether the rule fired lately) are asked for by [`Rule::window`] and passed in.

use chrono::{DateTime, Duration, Utc};
use silo_protocol::EventStreamMessage;
use silo_store::alert_rules::{AlertRule, RuleKind};

/// A rule in evaluable form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    pub kind: RuleKind,
    /// Frequency rules: fire when an issue has more than `threshold` events ...
    pub threshold: i64,
    /// ... within this many seconds.
    pub interval_seconds: i64,
    pub webhook_url: String,
}

/// A stored rule this version cannot evaluate.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error(
        "alert rule {id} has unknown kind {kind:?}; expected new_issue, regression or frequency"
    )]
    UnknownKind { id: i64, kind: String },
    #[error("frequency rule {id} needs a positive threshold and interval_seconds")]
    IncompleteFrequency { id: i64 },
}

impl TryFrom<&AlertRule> for Rule {
    type Error = RuleError;

    fn try_from(r: &AlertRule) -> Result<Self, RuleError> {
        let kind = RuleKind::parse(&r.kind).ok_or_else(|| RuleError::UnknownKind {
            id: r.id,
            kind: r.kind.clone(),
        })?;
        let (threshold, interval_seconds) = match kind {
            RuleKind::Frequency => match (r.threshold, r.interval_seconds) {
                (Some(t), Some(i)) if t > 0 && i > 0 => (t, i),
                _ => return Err(RuleError::IncompleteFrequency { id: r.id }),
            },
            _ => (0, 0),
        };
        Ok(Rule {
            id: r.id,
            name: r.name.clone(),
            kind,
            threshold,
            interval_seconds,
            webhook_url: r.webhook_url.clone(),
        })
    }
}

/// The time window a frequency rule counts events in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// What the database says about a frequency rule's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrequencyFacts {
    /// Events of the issue within the window.
    pub count: i64,
    /// The rule already fired for this issue within the last interval (for another event).
    pub fired_recently: bool,
}

impl Rule {
    /// The window to count for this event, for frequency rules.
    pub fn window(&self, event: &EventStreamMessage) -> Option<Window> {
        if self.kind != RuleKind::Frequency {
            return None;
        }
        let until = event_time(event);
        Some(Window {
            since: until - Duration::seconds(self.interval_seconds),
            until,
        })
    }

    /// Whether the rule fires for `event`; `facts` are required for frequency rules.
    pub fn fires(&self, event: &EventStreamMessage, facts: Option<FrequencyFacts>) -> bool {
        match self.kind {
            RuleKind::NewIssue => event.is_new,
            RuleKind::Regression => event.is_regression,
            RuleKind::Frequency => {
                facts.is_some_and(|f| f.count > self.threshold && !f.fired_recently)
            }
        }
    }
}

/// The event's own time (microsecond precision), the reference for frequency windows.
pub fn event_time(event: &EventStreamMessage) -> DateTime<Utc> {
    let micros = (event.timestamp * 1e6).round();
    if micros.is_finite() {
        DateTime::from_timestamp_micros(micros as i64).unwrap_or_else(Utc::now)
    } else {
        Utc::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(is_new: bool, is_regression: bool) -> EventStreamMessage {
        EventStreamMessage {
            event_id: "fc6d8c0c43fc4630ad850ee518f1b9d0".into(),
            project_id: 1,
            organization_id: 1,
            group_id: 7,
            is_new,
            is_regression,
            timestamp: 1_700_000_000.5,
            received: 1_700_000_001.0,
            title: "E: x".into(),
            level: "error".into(),
        }
    }

    fn stored(kind: &str, threshold: Option<i64>, interval: Option<i64>) -> AlertRule {
        AlertRule {
            id: 3,
            project_id: 1,
            name: "r".into(),
            kind: kind.into(),
            threshold,
            interval_seconds: interval,
            webhook_url: "http://hook".into(),
            enabled: true,
            date_created: Utc::now(),
        }
    }

    fn rule(kind: &str, threshold: Option<i64>, interval: Option<i64>) -> Rule {
        Rule::try_from(&stored(kind, threshold, interval)).unwrap()
    }

    #[test]
    fn new_issue_and_regression_follow_the_event_flags() {
        let new_issue = rule("new_issue", None, None);
        let regression = rule("regression", None, None);
        assert!(new_issue.fires(&event(true, false), None));
        assert!(!new_issue.fires(&event(false, true), None));
        assert!(regression.fires(&event(false, true), None));
        assert!(!regression.fires(&event(true, false), None));
        assert_eq!(new_issue.window(&event(true, false)), None);
    }

    #[test]
    fn frequency_fires_above_threshold_once_per_interval() {
        let r = rule("frequency", Some(3), Some(60));
        let e = event(false, false);
        let w = r.window(&e).unwrap();
        assert_eq!((w.until - w.since).num_seconds(), 60);
        assert_eq!(w.until.timestamp_micros(), 1_700_000_000_500_000);
        let facts = |count, fired_recently| {
            Some(FrequencyFacts {
                count,
                fired_recently,
            })
        };
        assert!(!r.fires(&e, facts(3, false)), "3 is not more than 3");
        assert!(r.fires(&e, facts(4, false)));
        assert!(
            !r.fires(&e, facts(10, true)),
            "already fired in this interval"
        );
        assert!(!r.fires(&e, None), "no facts, no alert");
    }

    #[test]
    fn malformed_rules_are_refused_with_reasons() {
        let err = Rule::try_from(&stored("sometimes", None, None)).unwrap_err();
        assert!(err.to_string().contains("unknown kind"));
        let err = Rule::try_from(&stored("frequency", Some(3), None)).unwrap_err();
        assert!(err.to_string().contains("threshold and interval_seconds"));
    }
}
