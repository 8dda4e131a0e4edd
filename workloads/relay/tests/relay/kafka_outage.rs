//! Kafka stopped under a running relay: requests get 503 (never a false 200), and once the
//! broker is back the same relay accepts events again without a restart.
//!
//! Stops and starts the shared loopback broker through `e2e/services/ctl.sh`.

use std::time::Duration;

use crate::common::{Harness, KAFKA_GATE, auth_header, consume_until, envelope, event_id};
use silo_protocol::IngestMessage;
use silo_testkit::wait::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_answers_503_and_recovers_without_restart() {
    let _exclusive = KAFKA_GATE.write().await;
    let h = Harness::start(&["--kafka-delivery-timeout", "2s"]).await;
    let key = h.key(None).await;
    let path = format!("/api/{}/envelope/", key.project_id);
    let post = |id: String| {
        h.http
            .post(h.url(&path))
            .header("x-sentry-auth", auth_header(&key.public_key))
            .body(envelope(&id, "outage", true, None))
            .send()
    };
    assert_eq!(post(event_id()).await.unwrap().status(), 200);

    let stopped = silo_testkit::services::stop("kafka");
    let r = post(event_id()).await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body = r.text().await.unwrap();
    assert!(body.contains("event not stored"), "{body}");
    drop(stopped); // starts Kafka and waits until it serves

    let recovered = eventually(
        "relay accepts events again",
        Duration::from_secs(90),
        || {
            let id = event_id();
            let request = post(id.clone());
            async move {
                let r = request.await.ok()?;
                (r.status() == 200).then_some(id)
            }
        },
    )
    .await;
    consume_until(
        &h.services.kafka_brokers,
        &h.topic("ingest-events"),
        Duration::from_secs(30),
        |payload, _| {
            let msg: IngestMessage = serde_json::from_slice(payload).expect("IngestMessage");
            msg.event_id == recovered
        },
    );
    h.finish().await;
}
