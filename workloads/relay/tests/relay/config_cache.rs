//! Project configs: each key is fetched from web once, concurrent misses share the fetch, and
//! a relay with an empty memory cache is served from Redis without asking web again.

use std::time::Duration;

use crate::common::{Harness, KAFKA_GATE, auth_header, envelope, event_id, metric_value};

const PROJECTCONFIG_ROUTE: &str = "route=\"/api/0/relays/projectconfigs/\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_are_fetched_once_per_key_and_shared_through_redis() {
    let _shared = KAFKA_GATE.read().await;
    let mut h = Harness::start(&["--config-batch-window", "200ms"]).await;
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(h.key(None).await);
    }
    let before = metric_value(
        &h.web_metrics().await,
        "silo_web_http_requests",
        &[PROJECTCONFIG_ROUTE],
    );

    // Four concurrent requests per key, all at once.
    let http = h.http.clone();
    let send = |relay: std::net::SocketAddr, key: &crate::common::Key| {
        http.post(format!("http://{relay}/api/{}/envelope/", key.project_id))
            .header("x-sentry-auth", auth_header(&key.public_key))
            .body(envelope(&event_id(), "cache", true, None))
            .send()
    };
    let requests = keys
        .iter()
        .flat_map(|k| (0..4).map(move |_| k))
        .map(|k| send(h.relay, k));
    for r in futures::future::join_all(requests).await {
        assert_eq!(r.expect("relay request").status(), 200);
    }
    let metrics = h.relay_metrics(0);
    let upstream = metric_value(
        &metrics,
        "silo_relay_project_config_lookups",
        &["source=\"upstream\""],
    );
    assert_eq!(
        upstream, 5.0,
        "each key fetched from web exactly once:\n{metrics}"
    );
    let web_calls = metric_value(
        &h.web_metrics().await,
        "silo_web_http_requests",
        &[PROJECTCONFIG_ROUTE],
    ) - before;
    assert!(
        (1.0..=5.0).contains(&web_calls),
        "20 requests for 5 keys must cost at most one web call per key, got {web_calls}"
    );

    // A second relay shares the Redis cache: it answers without calling web.
    let second = h.second_relay().await;
    let web_before = metric_value(
        &h.web_metrics().await,
        "silo_web_http_requests",
        &[PROJECTCONFIG_ROUTE],
    );
    for key in &keys {
        let r = send(second, key).await.expect("second relay request");
        assert_eq!(r.status(), 200);
    }
    let metrics = h.relay_metrics(1);
    assert_eq!(
        metric_value(
            &metrics,
            "silo_relay_project_config_lookups",
            &["source=\"redis\""]
        ),
        5.0,
        "{metrics}"
    );
    let web_after = metric_value(
        &h.web_metrics().await,
        "silo_web_http_requests",
        &[PROJECTCONFIG_ROUTE],
    );
    assert_eq!(web_after, web_before, "the second relay must not call web");

    // Unknown keys are cached negatively as well (the harness sets a 1s negative TTL); once it
    // expires the key is asked for again.
    let unknown = crate::common::Key {
        public_key: "f".repeat(32),
        ..keys[0].clone()
    };
    assert_eq!(
        send(h.relay, &unknown).await.expect("request").status(),
        403
    );
    silo_testkit::wait::eventually(
        "negative entry expires and is refetched",
        Duration::from_secs(30),
        || {
            let request = send(h.relay, &unknown);
            let relay_metrics = h.relay_metrics(0);
            async move {
                let status = request.await.ok()?.status();
                assert_eq!(status, 403);
                let errors = metric_value(
                    &relay_metrics,
                    "silo_relay_project_config_lookups",
                    &["source=\"redis\""],
                ) + metric_value(
                    &relay_metrics,
                    "silo_relay_project_config_lookups",
                    &["source=\"upstream\""],
                );
                (errors >= 7.0).then_some(())
            }
        },
    )
    .await;
    h.finish().await;
}
