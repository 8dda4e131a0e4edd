//! End to end: an official Sentry SDK sends through relay; consumers group; web lists the
//! issues; postprocess fires an alert to a local webhook receiver. Then a consumer is killed
//! mid-stream and every accepted event is still stored exactly once.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};
use silo_pipeline_tests::Region;
use silo_pipeline_tests::sdk::{EnvelopeSender, Sdk, SdkLevel, envelope_bytes, error_event};
use silo_pipeline_tests::webhook::WebhookReceiver;
use silo_testkit::wait;

const DEADLINE: Duration = Duration::from_secs(90);

#[derive(Debug)]
struct PaymentDeclined {
    card: &'static str,
}

impl fmt::Display for PaymentDeclined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "card {} was declined", self.card)
    }
}

impl std::error::Error for PaymentDeclined {}

#[derive(Debug)]
struct InventoryMissing;

impl fmt::Display for InventoryMissing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("item is out of stock")
    }
}

impl std::error::Error for InventoryMissing {}

/// (title, count) of every issue, sorted by title.
fn summary(issues: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = issues
        .iter()
        .map(|i| {
            (
                i["title"].as_str().unwrap_or_default().to_owned(),
                i["count"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn sdk_events_are_grouped_into_issues_and_an_alert_fires() {
    let region = Region::start("e2e").await;
    let p = region.project("shop").await;
    let hook = WebhookReceiver::start().await;
    region
        .api
        .create_rule(
            &p.org,
            &p.slug,
            json!({"name": "Every new issue", "kind": "new_issue", "webhookUrl": hook.url}),
        )
        .await;

    let sdk = Sdk::new(&p.dsn);
    let declined = PaymentDeclined { card: "visa" };
    let first = sdk.capture_error(&declined);
    sdk.capture_error(&declined);
    sdk.capture_error(&InventoryMissing);
    // Different errors, one explicit fingerprint: one issue.
    sdk.capture_error_with_fingerprint(&PaymentDeclined { card: "amex" }, &["payments-outage"]);
    sdk.capture_error_with_fingerprint(&InventoryMissing, &["payments-outage"]);
    sdk.capture_message("cache warmed", SdkLevel::Info);
    assert!(
        sdk.flush(Duration::from_secs(30)),
        "the SDK sent everything"
    );

    // The fingerprinted issue takes its title from the first of its two events in Kafka; the
    // order in which the SDK's transport delivers them is not part of its contract.
    let wants: Vec<Vec<(String, String)>> = [
        "PaymentDeclined: card amex was declined",
        "InventoryMissing: item is out of stock",
    ]
    .iter()
    .map(|fingerprinted| {
        let mut want = vec![
            (
                "InventoryMissing: item is out of stock".to_owned(),
                "1".to_owned(),
            ),
            ((*fingerprinted).to_owned(), "2".to_owned()),
            (
                "PaymentDeclined: card visa was declined".to_owned(),
                "2".to_owned(),
            ),
            ("cache warmed".to_owned(), "1".to_owned()),
        ];
        want.sort();
        want
    })
    .collect();
    let issues = wait::until("issues grouped as expected", DEADLINE, || async {
        let issues = region.api.issues(&p.org, &p.slug).await?;
        if wants.contains(&summary(&issues)) {
            Ok(issues)
        } else {
            Err(format!("{:?}", summary(&issues)))
        }
    })
    .await;

    // The first event is returned by the API, in the issue of its exception.
    let event = region
        .api
        .event(&p.org, &p.slug, &first.simple().to_string())
        .await
        .expect("first event stored");
    let visa = issues
        .iter()
        .find(|i| i["title"] == "PaymentDeclined: card visa was declined")
        .expect("visa issue");
    assert_eq!(event["groupID"].as_str(), visa["id"].as_str());
    assert_eq!(
        region
            .api
            .issue_events(visa["id"].as_str().unwrap_or_default())
            .await
            .map(|e| e.len()),
        Ok(2)
    );

    // One new-issue notification per issue reached the webhook, naming project and issue.
    let bodies = wait::until("4 new-issue webhooks", DEADLINE, || async {
        let got = hook.received();
        if got.len() >= 4 {
            Ok(got)
        } else {
            Err(format!("{} received", got.len()))
        }
    })
    .await;
    assert_eq!(bodies.len(), 4, "exactly one per new issue");
    assert!(
        bodies
            .iter()
            .all(|b| b["project"] == "shop" && b["rule"]["kind"] == "new_issue")
    );
    let mut ids: Vec<&str> = bodies.iter().filter_map(|b| b["id"].as_str()).collect();
    ids.sort_unstable();
    let mut issue_ids: Vec<&str> = issues.iter().filter_map(|i| i["id"].as_str()).collect();
    issue_ids.sort_unstable();
    assert_eq!(ids, issue_ids);

    region.stop().await;
}

#[tokio::test]
async fn consumer_killed_mid_stream_stores_every_accepted_event_once() {
    let mut region = Region::start("e2ekill").await;
    let p = region.project("kill").await;
    let sender = EnvelopeSender::new(&region.relay_url, &p.id, &p.public_key);

    const N: usize = 300;
    let mut accepted = Vec::new();
    for i in 0..N {
        let mut event = error_event(&PaymentDeclined {
            card: if i % 2 == 0 { "visa" } else { "amex" },
        });
        event.fingerprint = vec![format!("bucket-{}", i % 3).into()].into();
        let id = event.event_id;
        sender
            .send(envelope_bytes(event))
            .await
            .expect("relay accepts the event");
        accepted.push(id);
        if i == N / 3 {
            // Kill as soon as the consumer has made some progress, while more keeps coming.
            // Wait for consumer progress.
            region
                .consumers
                .wait_metric("silo_consumers_events_processed_total", 10.0, DEADLINE)
                .await;
            region.consumers.kill();
        }
        if i == 2 * N / 3 {
            region.consumers.start();
        }
    }
    region.consumers.wait_ready(DEADLINE).await;

    let total = wait::until(
        "every accepted event stored",
        Duration::from_secs(180),
        || async {
            let issues = region.api.issues(&p.org, &p.slug).await?;
            let sum: u64 = issues
                .iter()
                .filter_map(|i| i["count"].as_str()?.parse::<u64>().ok())
                .sum();
            if sum == N as u64 && issues.len() == 3 {
                Ok(sum)
            } else {
                Err(format!("{:?}", summary(&issues)))
            }
        },
    )
    .await;
    assert_eq!(total, N as u64);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&region.db.pool)
        .await
        .expect("count events");
    assert_eq!(stored, N as i64, "each accepted event stored exactly once");
    for id in accepted.iter().step_by(37) {
        assert!(
            region
                .api
                .event(&p.org, &p.slug, &id.simple().to_string())
                .await
                .is_some(),
            "{id} stored"
        );
    }
    region.stop().await;
}
