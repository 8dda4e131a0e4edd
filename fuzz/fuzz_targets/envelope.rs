//! `POST /api/<project>/envelope/` after decoding: the envelope parser, then what relay does
//! with a parsed envelope (events extracted, the header `dsn` read as credentials).
//!
//! Checks: payloads lie within the input and declared lengths are honored; writing the parsed
//! envelope back out (explicit lengths, and newline-terminated items where possible) parses to
//! the same envelope; every accepted event decodes on the consumer side with its id in the
//! payload; event items over the size limit are refused; a DSN that parses yields a valid key.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use silo_fuzz::{assert_event_id, assert_extracted};
use silo_relay::auth;
use silo_relay::body::{self, BodyError};
use silo_relay::envelope::{self, Envelope};

const MAX_EVENT_BYTES: usize = 4096;

fn header_line(env: &Envelope) -> Vec<u8> {
    let mut out = serde_json::to_vec(&json!({
        "event_id": env.headers.event_id,
        "dsn": env.headers.dsn,
    }))
    .expect("headers encode");
    out.push(b'\n');
    out
}

/// The envelope with every item's length declared.
fn write_with_lengths(env: &Envelope) -> Vec<u8> {
    let mut out = header_line(env);
    for item in &env.items {
        let header = json!({"type": item.ty, "length": item.payload.len()});
        out.extend(serde_json::to_vec(&header).expect("item header encodes"));
        out.push(b'\n');
        out.extend_from_slice(&item.payload);
        out.push(b'\n');
    }
    out
}

/// The envelope with newline-terminated items, when every payload can be written that way.
fn write_without_lengths(env: &Envelope) -> Option<Vec<u8>> {
    let mut out = header_line(env);
    for item in &env.items {
        let p = &item.payload[..];
        // An empty or blank line is skipped as a separator, a `\n` ends the payload and a
        // trailing `\r` is taken as part of a CRLF.
        if p.iter().all(u8::is_ascii_whitespace) || p.contains(&b'\n') || p.ends_with(b"\r") {
            return None;
        }
        let header = json!({"type": item.ty});
        out.extend(serde_json::to_vec(&header).expect("item header encodes"));
        out.push(b'\n');
        out.extend_from_slice(p);
        out.push(b'\n');
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(env) = envelope::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let payload_bytes: usize = env.items.iter().map(|i| i.payload.len()).sum();
    assert!(payload_bytes <= data.len(), "payloads exceed the input");

    let again = envelope::parse(Bytes::from(write_with_lengths(&env)));
    assert_eq!(again.as_ref(), Ok(&env), "round trip with lengths");
    if let Some(text) = write_without_lengths(&env) {
        let again = envelope::parse(Bytes::from(text));
        assert_eq!(again.as_ref(), Ok(&env), "round trip without lengths");
    }

    if let Some(dsn) = env.headers.dsn.as_deref()
        && let Ok(credentials) = auth::parse_dsn(dsn)
    {
        assert_eq!(
            auth::validate_key(&credentials.public_key),
            Ok(credentials.public_key.clone())
        );
        assert!(credentials.dsn_project_id.is_some());
    }

    match body::extract_envelope(&env, MAX_EVENT_BYTES) {
        Ok(extracted) => {
            assert_extracted(&extracted);
            let events: Vec<_> = env.items.iter().filter(|i| i.ty == "event").collect();
            assert_eq!(extracted.events.len(), events.len());
            assert_eq!(extracted.dropped.len(), env.items.len() - events.len());
            for item in events {
                assert!(
                    item.payload.len() <= MAX_EVENT_BYTES,
                    "oversized event accepted"
                );
            }
            if let Some(id) = &extracted.envelope_event_id {
                assert_event_id(id);
            }
        }
        Err(BodyError::EventTooLarge { limit }) => {
            assert_eq!(limit, MAX_EVENT_BYTES);
            assert!(
                env.items
                    .iter()
                    .any(|i| i.ty == "event" && i.payload.len() > MAX_EVENT_BYTES)
            );
        }
        Err(_) => {}
    }
});
