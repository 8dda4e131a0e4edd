//! What relay writes for events without a usable id and for the client address: a missing or
//! nil event id becomes a fresh one that the answer carries, and `X-Forwarded-For` names the
//! client only when it comes from a `--trusted-proxies` peer.

use std::collections::HashMap;
use std::time::Duration;

use silo_protocol::IngestMessage;

use crate::common::{Harness, KAFKA_GATE, auth_header, consume_until};

const DEADLINE: Duration = Duration::from_secs(30);
const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// POST an envelope (header, one event item, payload) with `headers`; relay's `id`.
async fn send(
    h: &Harness,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: String,
) -> String {
    let mut req = h
        .http
        .post(h.url(path))
        .header("x-sentry-auth", auth_header(key))
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let r = req.send().await.expect("relay answers");
    let status = r.status();
    let body: serde_json::Value = r.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{body}");
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("an id in {body}"))
        .to_owned()
}

fn envelope(header: serde_json::Value, payload: serde_json::Value) -> String {
    format!("{header}\n{{\"type\":\"event\"}}\n{payload}\n")
}

/// The ingest messages of these event ids, by id.
fn messages(h: &Harness, ids: &[String]) -> HashMap<String, IngestMessage> {
    let mut found = HashMap::new();
    consume_until(
        &h.services.kafka_brokers,
        &h.topic("ingest-events"),
        DEADLINE,
        |payload, _| {
            let msg: IngestMessage = serde_json::from_slice(payload).expect("IngestMessage JSON");
            if ids.contains(&msg.event_id) {
                found.insert(msg.event_id.clone(), msg);
            }
            found.len() == ids.len()
        },
    );
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_nil_event_ids_get_fresh_ids_and_forwarded_for_is_ignored() {
    let _shared = KAFKA_GATE.read().await;
    let h = Harness::start(&[]).await;
    let key = h.key(None).await;
    let path = format!("/api/{}/envelope/", key.project_id);
    let spoofed = [("x-forwarded-for", "203.0.113.9")];
    let mut ids = Vec::new();
    for body in [
        // No id anywhere, an empty one, the nil id in the header and the payload.
        envelope(
            serde_json::json!({}),
            serde_json::json!({"message": "none"}),
        ),
        envelope(
            serde_json::json!({"event_id": ""}),
            serde_json::json!({"event_id": "", "message": "empty"}),
        ),
        envelope(
            serde_json::json!({"event_id": NIL}),
            serde_json::json!({"event_id": NIL, "message": "nil"}),
        ),
        envelope(
            serde_json::json!({"event_id": NIL}),
            serde_json::json!({"event_id": NIL, "message": "nil"}),
        ),
    ] {
        ids.push(send(&h, &path, &key.public_key, &spoofed, body).await);
    }
    let store = h
        .http
        .post(h.url(&format!("/api/{}/store/", key.project_id)))
        .header("x-sentry-auth", auth_header(&key.public_key))
        .json(&serde_json::json!({"event_id": NIL, "message": "store"}))
        .send()
        .await
        .expect("store answers");
    assert_eq!(store.status(), 200);
    let body: serde_json::Value = store.json().await.expect("JSON");
    ids.push(body["id"].as_str().expect("store id").to_owned());

    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    for id in &ids {
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) && *id != "0".repeat(32),
            "{id}"
        );
    }
    for (id, msg) in messages(&h, &ids) {
        assert_eq!(
            msg.payload["event_id"],
            id.as_str(),
            "the payload carries the new id"
        );
        // Not a trusted proxy: the header is the client's own claim and is ignored.
        assert_eq!(msg.remote_addr.as_deref(), Some("127.0.0.1"), "{id}");
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_names_the_client() {
    let _shared = KAFKA_GATE.read().await;
    let h = Harness::start(&["--trusted-proxies", "127.0.0.0/8,10.0.0.0/8"]).await;
    let key = h.key(None).await;
    let path = format!("/api/{}/envelope/", key.project_id);
    let mut want = Vec::new();
    for (forwarded, client) in [
        // What the proxy saw, after a spoofed entry the client sent.
        (Some("192.0.2.1, 203.0.113.9"), "203.0.113.9"),
        // Through two proxies.
        (Some("198.51.100.7, 10.1.2.3"), "198.51.100.7"),
        // No header: the peer.
        (None, "127.0.0.1"),
    ] {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let headers: Vec<(&str, &str)> = forwarded
            .map(|f| ("x-forwarded-for", f))
            .into_iter()
            .collect();
        let body = envelope(
            serde_json::json!({"event_id": id}),
            serde_json::json!({"event_id": id, "message": "via proxy", "user": {"ip_address": "{{auto}}"}}),
        );
        assert_eq!(send(&h, &path, &key.public_key, &headers, body).await, id);
        want.push((id, client));
    }
    let ids: Vec<String> = want.iter().map(|(id, _)| id.clone()).collect();
    let got = messages(&h, &ids);
    for (id, client) in want {
        assert_eq!(got[&id].remote_addr.as_deref(), Some(client), "{id}");
    }
    h.finish().await;
}
