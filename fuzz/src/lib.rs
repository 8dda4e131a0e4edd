//! Checks shared by the fuzz targets.

use serde_json::Value;
use serde_json::value::RawValue;
use silo_protocol::messages::IngestMessage;
use silo_relay::body::{EventItem, Extracted};

/// A Sentry event id as relay produces it: 32 lowercase hex characters, never the nil id.
pub fn assert_event_id(id: &str) {
    assert_eq!(id.len(), 32, "event id {id:?}");
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "event id {id:?}"
    );
    assert_ne!(id, "0".repeat(32), "nil event id");
}

/// An event relay accepted must be one the consumers can decode: the message relay produces
/// (`IngestMessage<Box<RawValue>>`) parses as `IngestMessage<Value>`, its payload is an object
/// and names the event's id.
pub fn assert_event(event: &EventItem) {
    assert_event_id(&event.event_id);
    let message = IngestMessage::<Box<RawValue>> {
        event_id: event.event_id.clone(),
        project_id: 1,
        organization_id: 1,
        key_id: 1,
        received: 0.0,
        remote_addr: None,
        payload: event.payload.clone(),
    };
    let wire = serde_json::to_vec(&message).expect("an accepted event encodes");
    let decoded: IngestMessage<Value> = match serde_json::from_slice(&wire) {
        Ok(decoded) => decoded,
        Err(e) => panic!(
            "relay accepted an event the consumers cannot decode ({e}): {}",
            event.payload.get()
        ),
    };
    assert_eq!(decoded.event_id, event.event_id);
    let object = decoded.payload.as_object().expect("payload is an object");
    assert_eq!(
        object.get("event_id").and_then(Value::as_str),
        Some(event.event_id.as_str()),
        "payload event_id"
    );
}

/// Everything [`assert_event`] checks, for every event of `extracted`.
pub fn assert_extracted(extracted: &Extracted) {
    if let Some(id) = &extracted.envelope_event_id {
        assert_event_id(id);
    }
    for event in &extracted.events {
        assert_event(event);
    }
}

/// Split `data` at every `sep` into exactly `N` parts (missing parts are empty).
pub fn split<const N: usize>(data: &[u8], sep: u8) -> [&[u8]; N] {
    let mut parts = [&data[..0]; N];
    let mut rest = data;
    for (i, part) in parts.iter_mut().enumerate() {
        if i + 1 == N {
            *part = rest;
            break;
        }
        match rest.iter().position(|&b| b == sep) {
            Some(at) => {
                *part = &rest[..at];
                rest = &rest[at + 1..];
            }
            None => {
                *part = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    parts
}
