//! The webhook body: Sentry's legacy webhook shape (`id`, `project`, `culprit`, `message`,
//! `url`, `triggering_rules`, `event`) plus `issue` and `rule` objects. Pure.

use serde_json::{Value, json};
use silo_protocol::EventStreamMessage;
use silo_store::groups::Group;

use crate::rules::Rule;

/// The issue's page: `<base>/organizations/<org>/issues/<id>/`.
pub fn issue_url(base_url: &str, group: &Group) -> String {
    format!(
        "{}/organizations/{}/issues/{}/",
        base_url.trim_end_matches('/'),
        group.organization_slug,
        group.id
    )
}

pub fn build(base_url: &str, rule: &Rule, group: &Group, event: &EventStreamMessage) -> Value {
    let url = issue_url(base_url, group);
    json!({
        "action": "triggered",
        "id": group.id.to_string(),
        "project": group.project_slug,
        "project_name": group.project_name,
        "project_slug": group.project_slug,
        "organization": group.organization_slug,
        "level": event.level,
        "culprit": group.culprit,
        "message": group.title,
        "url": url,
        "triggering_rules": [rule.name],
        "rule": {"id": rule.id, "name": rule.name, "kind": rule.kind.as_str()},
        "issue": {
            "id": group.id.to_string(),
            "shortId": group.display_short_id(),
            "title": group.title,
            "culprit": group.culprit,
            "status": group.status,
            "count": group.times_seen.to_string(),
            "firstSeen": group.first_seen.to_rfc3339(),
            "lastSeen": group.last_seen.to_rfc3339(),
            "url": url,
        },
        "event": {
            "event_id": event.event_id,
            "title": event.title,
            "level": event.level,
            "timestamp": event.timestamp,
            "received": event.received,
            "issue_id": group.id.to_string(),
            "is_new": event.is_new,
            "is_regression": event.is_regression,
        },
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use silo_store::alert_rules::RuleKind;

    use super::*;

    fn group() -> Group {
        Group {
            id: 42,
            project_id: 1,
            fingerprint: "f".into(),
            short_id: 71,
            title: "ValueError: bad".into(),
            culprit: "app in run".into(),
            level: "error".into(),
            kind: "error".into(),
            status: "unresolved".into(),
            resolved_at: None,
            first_seen: Utc::now(),
            last_seen: Utc::now(),
            times_seen: 5,
            first_event_id: uuid::Uuid::nil(),
            last_event_id: uuid::Uuid::nil(),
            metadata: json!({}),
            status_details: json!({}),
            user_count: 0,
            first_release: None,
            last_release: None,
            project_slug: "backend".into(),
            project_name: "Backend".into(),
            project_platform: None,
            organization_id: 2,
            organization_slug: "acme".into(),
        }
    }

    #[test]
    fn payload_names_project_issue_event_and_rule() {
        let rule = Rule {
            id: 9,
            name: "New issues".into(),
            kind: RuleKind::NewIssue,
            threshold: 0,
            interval_seconds: 0,
            webhook_url: "http://hook".into(),
        };
        let event = EventStreamMessage {
            event_id: "ab".repeat(16),
            project_id: 1,
            organization_id: 2,
            group_id: 42,
            is_new: true,
            is_regression: false,
            timestamp: 1.0,
            received: 2.0,
            title: "ValueError: bad".into(),
            level: "error".into(),
        };
        let body = build("http://sentry.local/", &rule, &group(), &event);
        assert_eq!(body["project"], "backend");
        assert_eq!(body["id"], "42");
        assert_eq!(
            body["url"],
            "http://sentry.local/organizations/acme/issues/42/"
        );
        assert_eq!(body["issue"]["shortId"], "BACKEND-1Z");
        assert_eq!(body["issue"]["count"], "5");
        assert_eq!(body["event"]["event_id"], "ab".repeat(16));
        assert_eq!(body["triggering_rules"][0], "New issues");
        assert_eq!(body["rule"]["kind"], "new_issue");
    }
}
