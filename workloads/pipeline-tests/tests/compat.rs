//! End to end, issue 15: an SDK-built envelope carrying the nil event id, sent 10 times, is 10
//! stored events (never one event and 9 silent drops), and processing does what Sentry's does:
//! logentry params formatted, `{{auto}}` resolved to the client address, environment, release
//! and server_name promoted to tags, distinct users counted, `extra` returned as `context`.

use std::collections::HashSet;
use std::time::Duration;

use sentry::protocol::{Event, IpAddress, LogEntry, User};
use serde_json::{Value, json};
use silo_pipeline_tests::Region;
use silo_pipeline_tests::sdk::{EnvelopeSender, envelope_bytes};
use silo_testkit::wait;

const DEADLINE: Duration = Duration::from_secs(90);
const NIL: &str = "00000000000000000000000000000000";

fn nil_id_event() -> Event<'static> {
    let mut event = Event {
        event_id: uuid::Uuid::nil(),
        level: sentry::Level::Error,
        platform: "rust".into(),
        logentry: Some(LogEntry {
            message: "payment failed for %s".into(),
            params: vec![json!("bob")],
        }),
        user: Some(User {
            id: Some("u-42".into()),
            ip_address: Some(IpAddress::Auto),
            ..User::default()
        }),
        environment: Some("production".into()),
        release: Some("shop@1.2.3".into()),
        server_name: Some("web-7".into()),
        ..Event::default()
    };
    event.extra.insert("order".into(), json!(1001));
    event
}

#[tokio::test]
async fn nil_event_ids_are_stored_as_fresh_events_and_processed_like_sentry() {
    let region = Region::start("compat").await;
    let p = region.project("compat").await;
    let sender = EnvelopeSender::new(&region.relay_url, &p.id, &p.public_key);
    let body = envelope_bytes(nil_id_event());
    assert!(
        String::from_utf8_lossy(&body).contains(NIL),
        "the SDK wrote the nil id"
    );
    // Relay answers each with the fresh id it gave the event.
    let mut answered = HashSet::new();
    for _ in 0..10 {
        let answer = sender
            .send_for_answer(body.clone())
            .await
            .expect("relay accepts it");
        let id = answer["id"]
            .as_str()
            .expect("an id in the answer")
            .to_owned();
        assert_ne!(id, NIL);
        answered.insert(id);
    }
    assert_eq!(answered.len(), 10, "{answered:?}");

    let issue = wait::until("10 events in one issue", DEADLINE, || async {
        let issues = region.api.issues(&p.org, &p.slug).await?;
        match issues.as_slice() {
            [one] if one["count"] == "10" => Ok(one.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(issue["title"], "payment failed for bob");
    assert_eq!(issue["userCount"], 1, "{issue}");
    assert_eq!(issue["firstRelease"]["version"], "shop@1.2.3");

    let issue_id = issue["id"].as_str().expect("issue id");
    let (status, events) = region
        .api
        .get(&format!("/api/0/issues/{issue_id}/events/?per_page=100"))
        .await;
    assert!(status.is_success(), "{events}");
    let ids: HashSet<&str> = events
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["eventID"].as_str())
        .collect();
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert!(!ids.contains(NIL));
    let answered: HashSet<&str> = answered.iter().map(String::as_str).collect();
    assert_eq!(
        ids, answered,
        "the stored events are the ids relay answered"
    );

    let (_, event) = region
        .api
        .get(&format!("/api/0/issues/{issue_id}/events/latest/"))
        .await;
    assert_eq!(event["message"], "payment failed for bob");
    assert_eq!(
        event["user"]["ip_address"], "127.0.0.1",
        "{}",
        event["user"]
    );
    assert_eq!(event["context"], json!({"order": 1001}));
    let tags: Vec<(String, String)> = event["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&t["key"]), text(&t["value"]))
        })
        .collect();
    for want in [
        ("environment", "production"),
        ("release", "shop@1.2.3"),
        ("server_name", "web-7"),
        ("user", "id:u-42"),
    ] {
        assert!(
            tags.contains(&(want.0.to_owned(), want.1.to_owned())),
            "{want:?} in {tags:?}"
        );
    }

    // The promoted tags are searchable.
    let (status, found) = region
        .api
        .get(&format!(
            "/api/0/projects/{}/{}/issues/?query=server_name:web-7%20environment:production",
            p.org, p.slug
        ))
        .await;
    assert!(status.is_success(), "{found}");
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    region.stop().await;
}
