//! Kafka stopped under idle consumers: `/readyz` turns unready, and once the broker is back it
//! turns ready again although no message arrives (an idle topic brings none to say so); a
//! message sent then is stored.
//!
//! Stops and starts the shared loopback broker through `e2e/services/ctl.sh` (its own test
//! binary, so no other test of this package runs meanwhile).

mod support;

use std::time::Duration;

use silo_testkit::wait;
use support::{Setup, event_id, exception};

const DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_comes_back_on_an_idle_topic_when_kafka_returns() {
    let s = Setup::new("kafka_outage").await;
    let mut consumers = s.start_consumers().await;
    let readyz = format!("http://{}/readyz", consumers.admin_addr);
    let status = || {
        let url = readyz.clone();
        async move {
            match reqwest::get(&url).await {
                Ok(r) => r.status().as_u16(),
                Err(e) => panic!("consumers' admin server does not answer: {e}"),
            }
        }
    };

    let stopped = silo_testkit::services::stop("kafka");
    wait::until(
        "the consumers to report Kafka unready",
        DEADLINE,
        || async {
            match status().await {
                503 => Ok(()),
                other => Err(format!("/readyz {other}")),
            }
        },
    )
    .await;
    drop(stopped); // starts Kafka and waits until it serves
    wait::until(
        "the consumers to be ready again without a message",
        DEADLINE,
        || async {
            match status().await {
                200 => Ok(()),
                other => Err(format!("/readyz {other}")),
            }
        },
    )
    .await;
    assert_eq!(
        consumers
            .metric("silo_consumers_events_processed_total")
            .await,
        0.0,
        "no event was needed to become ready"
    );

    s.send(&s.message(&event_id(1), exception("ValueError", "after the outage")))
        .await;
    s.wait_events(1, DEADLINE).await;
    assert!(consumers.terminate(Duration::from_secs(20)).await);
    s.finish().await;
}
