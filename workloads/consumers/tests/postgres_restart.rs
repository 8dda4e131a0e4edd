//! Postgres stopped under the consumers: they retry without committing, and every event is
//! stored once Postgres is back. (Its own test binary: it stops the shared Postgres.)

mod support;

use std::time::Duration;

use silo_testkit::services;
use support::{Setup, event_id, exception};

#[tokio::test]
async fn postgres_down_then_back_loses_nothing() {
    let s = Setup::new("pgdown").await;
    let consumers = s.start_consumers().await;
    s.send(&s.message(&event_id(0), exception("Before", "outage")))
        .await;
    s.wait_events(1, Duration::from_secs(60)).await;

    let stopped = services::stop("postgres");
    for i in 1..=30 {
        s.send(&s.message(&event_id(i), exception("During", "outage")))
            .await;
    }
    // Wait for the consumers to hit the outage.
    consumers
        .wait_metric("silo_consumers_errors_total", 1.0, Duration::from_secs(60))
        .await;
    drop(stopped);

    s.wait_events(31, Duration::from_secs(120)).await;
    assert_eq!(
        s.issues().await,
        vec![
            ("Before: outage".to_owned(), 1),
            ("During: outage".to_owned(), 30)
        ]
    );
    s.finish().await;
}
