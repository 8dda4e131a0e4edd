//! Postgres stopped while events keep arriving through relay: relay still accepts (Kafka is
//! up, the key's config is cached), consumers retry without committing, and once Postgres is
//! back every accepted event is stored once. Its own test binary: it stops the shared Postgres.

use std::time::Duration;

use silo_pipeline_tests::Region;
use silo_pipeline_tests::sdk::{EnvelopeSender, envelope_bytes};
use silo_testkit::{services, wait};

fn message_event(text: &str) -> sentry::protocol::Event<'static> {
    sentry::protocol::Event {
        message: Some(text.to_owned()),
        level: sentry::Level::Warning,
        platform: "rust".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn postgres_restart_under_load_loses_nothing() {
    let region = Region::start("e2epg").await;
    let p = region.project("pgdown").await;
    let sender = EnvelopeSender::new(&region.relay_url, &p.id, &p.public_key);
    sender
        .send(envelope_bytes(message_event("before the outage")))
        .await
        .expect("accepted");
    wait::until(
        "the first event stored",
        Duration::from_secs(60),
        || async {
            let issues = region.api.issues(&p.org, &p.slug).await?;
            if issues.len() == 1 {
                Ok(())
            } else {
                Err(format!("{} issues", issues.len()))
            }
        },
    )
    .await;

    let stopped = services::stop("postgres");
    const DURING: usize = 40;
    for _ in 0..DURING {
        sender
            .send(envelope_bytes(message_event("during the outage")))
            .await
            .expect("relay accepts while Postgres is down");
    }
    // Wait for the consumers to run into the outage.
    region
        .consumers
        .wait_metric("silo_consumers_errors_total", 1.0, Duration::from_secs(60))
        .await;
    drop(stopped);

    let counts = wait::until(
        "every event stored after the restart",
        Duration::from_secs(120),
        || async {
            let issues = region.api.issues(&p.org, &p.slug).await?;
            let mut counts: Vec<(String, String)> = issues
                .iter()
                .map(|i| {
                    (
                        i["title"].as_str().unwrap_or_default().to_owned(),
                        i["count"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            counts.sort();
            if counts
                .iter()
                .any(|(t, c)| t == "during the outage" && *c == DURING.to_string())
            {
                Ok(counts)
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        counts,
        vec![
            ("before the outage".to_owned(), "1".to_owned()),
            ("during the outage".to_owned(), DURING.to_string()),
        ]
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&region.db.pool)
        .await
        .expect("count events");
    assert_eq!(stored, DURING as i64 + 1);
    region.stop().await;
}
