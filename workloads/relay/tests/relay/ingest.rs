//! Relay against real Kafka, Redis, Postgres and the web API: accepted events reach Kafka, bad
//! input is refused with the right status and a reason, quotas answer 429 with Sentry's headers.

use std::io::Write;
use std::time::Duration;

use crate::common::{Harness, KAFKA_GATE, auth_header, consume_until, envelope, event_id};
use silo_protocol::{IngestMessage, Outcome, OutcomeKind};

const DEADLINE: Duration = Duration::from_secs(30);

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip write");
    enc.finish().expect("gzip finish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_reach_kafka_in_every_sdk_shape() {
    let _shared = KAFKA_GATE.read().await;
    let h = Harness::start(&[]).await;
    let key = h.key(None).await;
    let path = format!("/api/{}/envelope/", key.project_id);

    // 1. X-Sentry-Auth header, item with length.
    let id1 = event_id();
    let r = h
        .http
        .post(h.url(&path))
        .header("x-sentry-auth", auth_header(&key.public_key))
        .body(envelope(&id1, "with auth header", true, None))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["id"], id1.as_str());

    // 2. ?sentry_key=, chunked gzip body without Content-Length, item without length.
    let id2 = event_id();
    let compressed = gzip(envelope(&id2, "chunked gzip", false, None).as_bytes());
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        compressed.chunks(7).map(|c| Ok(c.to_vec())).collect();
    let r = h
        .http
        .post(h.url(&format!(
            "{path}?sentry_version=7&sentry_key={}&sentry_client=test",
            key.public_key
        )))
        .header("content-encoding", "gzip")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    // 3. Key from the envelope header's dsn only.
    let id3 = event_id();
    let dsn = format!("http://{}@127.0.0.1/{}", key.public_key, key.project_id);
    let r = h
        .http
        .post(h.url(&path))
        .body(envelope(&id3, "dsn in header", true, Some(&dsn)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    // 4. Legacy store endpoint.
    let id4 = event_id();
    let r = h
        .http
        .post(h.url(&format!("/api/{}/store/", key.project_id)))
        .header("x-sentry-auth", auth_header(&key.public_key))
        .json(&serde_json::json!({"event_id": id4, "message": "store"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());

    let mut pending: Vec<String> = vec![id1, id2, id3, id4];
    let topic = h.topic("ingest-events");
    consume_until(
        &h.services.kafka_brokers,
        &topic,
        DEADLINE,
        |payload, msg_key| {
            let msg: IngestMessage = serde_json::from_slice(payload).expect("IngestMessage JSON");
            assert_eq!(msg.project_id, key.project_id);
            assert_eq!(msg.organization_id, key.organization_id);
            assert_eq!(msg.key_id, key.id);
            assert_eq!(msg_key, Some(key.project_id.to_string().as_bytes()));
            assert_eq!(msg.payload["event_id"], msg.event_id.as_str());
            pending.retain(|id| *id != msg.event_id);
            pending.is_empty()
        },
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_reason() {
    let _shared = KAFKA_GATE.read().await;
    let h = Harness::start(&[
        "--max-envelope-bytes",
        "65536",
        "--max-event-bytes",
        "32768",
    ])
    .await;
    let key = h.key(None).await;
    let path = format!("/api/{}/envelope/", key.project_id);
    let auth = auth_header(&key.public_key);
    let post = |url: String, auth: Option<String>, body: Vec<u8>| {
        let mut req = h.http.post(url).body(body);
        if let Some(auth) = auth {
            req = req.header("x-sentry-auth", auth);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };

    let (status, body) = post(h.url(&path), Some(auth.clone()), b"not json\n".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("envelope header is not a JSON object"),
        "{body}"
    );

    let truncated = b"{}\n{\"type\":\"event\",\"length\":500}\n{}\n".to_vec();
    let (status, body) = post(h.url(&path), Some(auth.clone()), truncated).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("declared length 500"), "{body}");

    let (status, body) = post(
        h.url(&path),
        None,
        envelope(&event_id(), "x", true, None).into(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing authentication"), "{body}");

    let (status, body) = post(
        h.url(&path),
        Some("Sentry sentry_key=not-a-key".into()),
        envelope(&event_id(), "x", true, None).into(),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    let unknown = auth_header("0123456789abcdef0123456789abcdef");
    let (status, body) = post(
        h.url(&path),
        Some(unknown),
        envelope(&event_id(), "x", true, None).into(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("unknown or disabled"), "{body}");

    let disabled = h.key(None).await;
    h.disable(&disabled).await;
    let (status, body) = post(
        h.url(&format!("/api/{}/envelope/", disabled.project_id)),
        Some(auth_header(&disabled.public_key)),
        envelope(&event_id(), "x", true, None).into(),
    )
    .await;
    assert_eq!(status, 403, "{body}");

    let other = h.key(None).await;
    let (status, body) = post(
        h.url(&format!("/api/{}/envelope/", other.project_id)),
        Some(auth.clone()),
        envelope(&event_id(), "x", true, None).into(),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(&format!("not project {}", other.project_id)),
        "{body}"
    );

    let (status, _) = post(h.url("/api/abc/envelope/"), Some(auth.clone()), Vec::new()).await;
    assert_eq!(status, 400);

    // Oversized: declared by Content-Length, and streamed without it.
    let big = envelope(&event_id(), &"x".repeat(70_000), true, None).into_bytes();
    let (status, body) = post(h.url(&path), Some(auth.clone()), big.clone()).await;
    assert_eq!(status, 413, "{body}");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let r = h
        .http
        .post(h.url(&path))
        .header("x-sentry-auth", auth.clone())
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // A gzip body that inflates past the limit.
    let bomb = gzip(envelope(&event_id(), &"y".repeat(200_000), true, None).as_bytes());
    let r = h
        .http
        .post(h.url(&path))
        .header("x-sentry-auth", auth.clone())
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // One event over the per-event limit inside an envelope under the envelope limit.
    let (status, body) = post(
        h.url(&path),
        Some(auth.clone()),
        envelope(&event_id(), &"z".repeat(40_000), true, None).into(),
    )
    .await;
    assert_eq!(status, 413, "{body}");

    // Invalid envelopes are counted to the outcomes topic.
    consume_until(
        &h.services.kafka_brokers,
        &h.topic("outcomes"),
        DEADLINE,
        |payload, _| {
            let outcome: Outcome = serde_json::from_slice(payload).expect("Outcome JSON");
            outcome.outcome == OutcomeKind::Invalid
                && outcome.reason.as_deref() == Some("invalid_envelope")
                && outcome.project_id == Some(key.project_id)
        },
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_answer_429_with_sentry_headers() {
    let _shared = KAFKA_GATE.read().await;
    let h = Harness::start(&[]).await;
    let key = h.key(Some((2, 60))).await;
    let path = format!("/api/{}/envelope/", key.project_id);
    let send = || {
        h.http
            .post(h.url(&path))
            .header("x-sentry-auth", auth_header(&key.public_key))
            .body(envelope(&event_id(), "limited", true, None))
            .send()
    };
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..4 {
        let r = send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            limited = Some(r);
        }
    }
    // Two fit the quota; a window boundary between requests may let a third one through.
    assert!(statuses[..2].iter().all(|s| *s == 200), "{statuses:?}");
    let r = limited.unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let limits = r.headers()["x-sentry-rate-limits"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(limits, format!("{retry_after}::key:key_quota"));
    let body = r.text().await.unwrap();
    assert!(body.contains("rate limit exceeded"), "{body}");

    consume_until(
        &h.services.kafka_brokers,
        &h.topic("outcomes"),
        DEADLINE,
        |payload, _| {
            let outcome: Outcome = serde_json::from_slice(payload).expect("Outcome JSON");
            outcome.outcome == OutcomeKind::RateLimited
                && outcome.reason.as_deref() == Some("key_quota")
                && outcome.key_id == Some(key.id)
        },
    );
    h.finish().await;
}
