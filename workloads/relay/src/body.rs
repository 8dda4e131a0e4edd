//! Request bodies: bounded reading, `Content-Encoding` (gzip, deflate), and the events they carry.

use std::fmt;
use std::io::Read;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::envelope::{self, Envelope, EnvelopeError};

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("event item exceeds the limit of {limit} bytes")]
    EventTooLarge { limit: usize },
    #[error("unsupported Content-Encoding {0:?}: use gzip, deflate or identity")]
    UnsupportedEncoding(String),
    #[error("body is not valid {encoding} data: {source}")]
    Decode {
        encoding: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read the request body: {0}")]
    Read(String),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("store body is not a JSON object: {0}")]
    StoreJson(String),
}

fn read_limited(
    mut reader: impl Read,
    limit: usize,
    encoding: &'static str,
) -> Result<Bytes, BodyError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    (&mut reader)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|source| BodyError::Decode { encoding, source })?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// Undo `Content-Encoding`; the decoded size is bounded by `limit` as well.
pub fn decode(encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(body),
        Some("gzip" | "x-gzip") => {
            read_limited(flate2::read::MultiGzDecoder::new(&body[..]), limit, "gzip")
        }
        Some("deflate") => {
            // HTTP deflate is zlib-wrapped, but some clients send raw deflate streams.
            match read_limited(flate2::read::ZlibDecoder::new(&body[..]), limit, "deflate") {
                Err(BodyError::Decode { .. }) => read_limited(
                    flate2::read::DeflateDecoder::new(&body[..]),
                    limit,
                    "deflate",
                ),
                other => other,
            }
        }
        Some(other) => Err(BodyError::UnsupportedEncoding(other.to_owned())),
    }
}

/// An event to produce: its normalized id and the payload JSON, forwarded as sent when it
/// already carries that id (otherwise re-encoded with `event_id` set).
#[derive(Clone, Debug)]
pub struct EventItem {
    pub event_id: String,
    pub payload: Box<RawValue>,
}

/// The only field relay reads from an event; parsing into it validates the whole document
/// without building a tree.
#[derive(Deserialize)]
struct EventProbe<'a> {
    #[serde(default, borrow)]
    event_id: Option<std::borrow::Cow<'a, str>>,
}

/// Deepest nesting of arrays and objects an event payload may have (the payload object itself
/// is depth 1). The consumers decode the payload inside the `IngestMessage` object, one level
/// below serde_json's recursion limit (127 nested levels at top level), so 126 is the most
/// they can read.
pub const MAX_EVENT_DEPTH: usize = 126;

/// Reads a JSON value exactly as strictly as `serde_json::Value` would (strings valid UTF-8
/// without lone surrogate escapes, numbers in the range of `f64`, nesting up to
/// [`MAX_EVENT_DEPTH`]) without building it. Skipping a value (`IgnoredAny`, `RawValue`)
/// checks none of that, so a payload forwarded as sent must pass this first or the consumers
/// fail to decode an event relay already accepted.
#[derive(Clone, Copy)]
struct Strict {
    /// Levels of nesting still allowed below this value.
    depth: usize,
}

impl Strict {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        match self.depth.checked_sub(1) {
            Some(depth) => Ok(Self { depth }),
            None => Err(E::custom(format_args!(
                "nested deeper than {MAX_EVENT_DEPTH} levels"
            ))),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while map.next_key_seed(inner)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// Check `payload` with [`Strict`]: one JSON value the consumers can decode, nothing after it.
fn check_strict(payload: &[u8]) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    Strict {
        depth: MAX_EVENT_DEPTH,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()
}

/// What a request carried: events to ingest and the types of items that are not ingested.
#[derive(Clone, Debug, Default)]
pub struct Extracted {
    pub events: Vec<EventItem>,
    pub dropped: Vec<String>,
    /// The envelope's `event_id` header (returned to the SDK when there is no event item).
    pub envelope_event_id: Option<String>,
}

/// Parse an event payload and settle its id (payload's own, else `fallback` (normalized), else a
/// new one; a nil id counts as none).
fn event_item(
    index: usize,
    ty: &str,
    payload: &[u8],
    fallback: Option<&str>,
    max_event_bytes: usize,
) -> Result<EventItem, BodyError> {
    if payload.len() > max_event_bytes {
        return Err(BodyError::EventTooLarge {
            limit: max_event_bytes,
        });
    }
    let invalid = |reason: String| EnvelopeError::Payload {
        index,
        ty: ty.to_owned(),
        reason,
    };
    let payload = payload.trim_ascii();
    if payload.first() != Some(&b'{') {
        return Err(invalid("expected an object".into()).into());
    }
    check_strict(payload).map_err(|e| invalid(e.to_string()))?;
    let probe: EventProbe<'_> =
        serde_json::from_slice(payload).map_err(|e| invalid(e.to_string()))?;
    let sent = probe.event_id.as_deref();
    let own = sent
        .map(envelope::normalize_event_id)
        .transpose()?
        .flatten();
    let event_id = own
        .or_else(|| fallback.map(str::to_owned))
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let raw = if sent == Some(event_id.as_str()) {
        let text = std::str::from_utf8(payload).map_err(|e| invalid(e.to_string()))?;
        RawValue::from_string(text.to_owned()).map_err(|e| invalid(e.to_string()))?
    } else {
        let mut value: Value =
            serde_json::from_slice(payload).map_err(|e| invalid(e.to_string()))?;
        if let Some(object) = value.as_object_mut() {
            object.insert("event_id".into(), Value::String(event_id.clone()));
        }
        serde_json::value::to_raw_value(&value).map_err(|e| invalid(e.to_string()))?
    };
    Ok(EventItem {
        event_id,
        payload: raw,
    })
}

/// The events of an envelope; `event` items are ingested, other item types are reported as
/// dropped.
pub fn extract_envelope(env: &Envelope, max_event_bytes: usize) -> Result<Extracted, BodyError> {
    let envelope_event_id = env
        .headers
        .event_id
        .as_deref()
        .map(envelope::normalize_event_id)
        .transpose()?
        .flatten();
    let mut out = Extracted {
        envelope_event_id: envelope_event_id.clone(),
        ..Extracted::default()
    };
    for (index, item) in env.items.iter().enumerate() {
        if item.ty == "event" {
            out.events.push(event_item(
                index,
                &item.ty,
                &item.payload,
                envelope_event_id.as_deref(),
                max_event_bytes,
            )?);
        } else {
            out.dropped.push(item.ty.clone());
        }
    }
    Ok(out)
}

/// The event of a `/store/` body: JSON, or the legacy base64 of zlib-compressed JSON.
pub fn extract_store(body: &[u8], max_event_bytes: usize) -> Result<Extracted, BodyError> {
    let trimmed = body.trim_ascii_start();
    let event = if trimmed.first() == Some(&b'{') {
        event_item(0, "event", trimmed, None, max_event_bytes)?
    } else {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(body.trim_ascii())
            .map_err(|e| BodyError::StoreJson(format!("neither JSON nor base64 ({e})")))?;
        let json = read_limited(
            flate2::read::ZlibDecoder::new(&raw[..]),
            max_event_bytes,
            "zlib",
        )
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => BodyError::EventTooLarge { limit },
            other => other,
        })?;
        event_item(0, "event", &json, None, max_event_bytes)?
    };
    Ok(Extracted {
        events: vec![event],
        ..Extracted::default()
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn field(item: &EventItem, name: &str) -> Value {
        let value: Value = serde_json::from_str(item.payload.get()).unwrap();
        value[name].clone()
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        Bytes::from(enc.finish().unwrap())
    }

    #[test]
    fn gzip_and_deflate_round_trip() {
        let data = b"{\"message\":\"hello\"}".repeat(10);
        assert_eq!(decode(Some("gzip"), gzip(&data), 1000).unwrap(), &data[..]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&data).unwrap();
        let zlib = Bytes::from(z.finish().unwrap());
        assert_eq!(decode(Some("deflate"), zlib, 1000).unwrap(), &data[..]);
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        d.write_all(&data).unwrap();
        let raw = Bytes::from(d.finish().unwrap());
        assert_eq!(decode(Some("deflate"), raw, 1000).unwrap(), &data[..]);
        assert_eq!(
            decode(None, Bytes::from_static(b"x"), 10).unwrap(),
            &b"x"[..]
        );
    }

    #[test]
    fn decoded_size_is_bounded_and_bad_input_named() {
        let bomb = gzip(&vec![b'a'; 100_000]);
        assert!(matches!(
            decode(Some("gzip"), bomb, 1000),
            Err(BodyError::TooLarge { limit: 1000 })
        ));
        assert!(matches!(
            decode(Some("gzip"), Bytes::from_static(b"not gzip"), 1000),
            Err(BodyError::Decode {
                encoding: "gzip",
                ..
            })
        ));
        assert!(matches!(
            decode(Some("br"), Bytes::new(), 10),
            Err(BodyError::UnsupportedEncoding(_))
        ));
    }

    #[test]
    fn envelope_events_take_ids_from_payload_or_header() {
        let env = envelope::parse(Bytes::from_static(
            b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n\
              {\"type\":\"event\"}\n{\"message\":\"a\"}\n\
              {\"type\":\"client_report\"}\n{}\n",
        ))
        .unwrap();
        let out = extract_envelope(&env, 1000).unwrap();
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].event_id, "9ec79c33ec9942ab8353589fcb2e04dc");
        assert_eq!(
            field(&out.events[0], "event_id"),
            "9ec79c33ec9942ab8353589fcb2e04dc"
        );
        assert_eq!(field(&out.events[0], "message"), "a");
        assert_eq!(out.dropped, vec!["client_report".to_owned()]);

        let env = envelope::parse(Bytes::from_static(
            b"{}\n{\"type\":\"event\"}\n{\"event_id\":\"AAAAAAAA-AAAA-AAAA-AAAA-AAAAAAAAAAAA\"}\n",
        ))
        .unwrap();
        let out = extract_envelope(&env, 1000).unwrap();
        assert_eq!(out.events[0].event_id, "a".repeat(32));
        assert_eq!(field(&out.events[0], "event_id"), "a".repeat(32));
        // Already normalized ids are forwarded byte for byte.
        let sent = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",  \"x\":1}";
        let item = event_item(0, "event", sent, None, 1000).unwrap();
        assert_eq!(item.payload.get().as_bytes(), &sent[..]);
    }

    #[test]
    fn nil_event_ids_get_a_fresh_id_every_time() {
        const NIL: &str = "00000000-0000-0000-0000-000000000000";
        let text = format!(
            "{{\"event_id\":\"{NIL}\"}}\n{{\"type\":\"event\"}}\n{{\"event_id\":\"{NIL}\",\"message\":\"m\"}}\n"
        );
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10 {
            let env = envelope::parse(Bytes::from(text.clone())).unwrap();
            let out = extract_envelope(&env, 1000).unwrap();
            assert_eq!(out.envelope_event_id, None);
            let id = out.events[0].event_id.clone();
            assert!(!id.starts_with("0000000000"), "{id}");
            assert_eq!(field(&out.events[0], "event_id"), id.as_str());
            assert_eq!(field(&out.events[0], "message"), "m");
            assert!(seen.insert(id));
        }
        // A real envelope id still names an event whose own id is nil.
        let env = envelope::parse(Bytes::from(format!(
            "{{\"event_id\":\"{}\"}}\n{{\"type\":\"event\"}}\n{{\"event_id\":\"{NIL}\"}}\n",
            "b".repeat(32)
        )))
        .unwrap();
        let out = extract_envelope(&env, 1000).unwrap();
        assert_eq!(out.events[0].event_id, "b".repeat(32));
        let out = extract_store(format!("{{\"event_id\":\"{NIL}\"}}").as_bytes(), 1000).unwrap();
        assert_ne!(out.events[0].event_id, "0".repeat(32));
    }

    #[test]
    fn event_payload_errors() {
        let env = envelope::parse(Bytes::from_static(b"{}\n{\"type\":\"event\"}\n[1]\n")).unwrap();
        let err = extract_envelope(&env, 1000).unwrap_err();
        assert!(err.to_string().contains("not a JSON object"), "{err}");
        let env = envelope::parse(Bytes::from_static(
            b"{}\n{\"type\":\"event\"}\n{\"message\":\"long\"}\n",
        ))
        .unwrap();
        assert!(matches!(
            extract_envelope(&env, 5),
            Err(BodyError::EventTooLarge { limit: 5 })
        ));
    }

    /// What a consumer does with an accepted event: decode the `IngestMessage` relay produced.
    fn consumer_decodes(item: &EventItem) -> Result<(), serde_json::Error> {
        let message = silo_protocol::messages::IngestMessage {
            event_id: item.event_id.clone(),
            project_id: 1,
            organization_id: 1,
            key_id: 1,
            received: 0.0,
            remote_addr: None,
            payload: item.payload.clone(),
        };
        let wire = serde_json::to_vec(&message)?;
        serde_json::from_slice::<silo_protocol::messages::IngestMessage>(&wire).map(drop)
    }

    #[test]
    fn payloads_the_consumers_cannot_decode_are_refused() {
        // Found by the `envelope` fuzz target: with its id already normalized a payload is
        // forwarded as sent, and skipping over the other fields checked neither escapes nor
        // numbers. The consumers then failed to decode an event relay had answered 200 for.
        let id = "9ec79c33ec9942ab8353589fcb2e04dc";
        for bad in [
            format!(r#"{{"event_id":"{id}","level":"war\udfff"}}"#),
            format!(r#"{{"event_id":"{id}","extra":{{"s":"\ud800x"}}}}"#),
            format!(r#"{{"event_id":"{id}","\udc00":1}}"#),
            format!(r#"{{"event_id":"{id}","n":1e999}}"#),
            r#"{"n":-1e400}"#.to_owned(),
        ] {
            let err = event_item(0, "event", bad.as_bytes(), None, 1000).unwrap_err();
            assert!(
                matches!(err, BodyError::Envelope(EnvelopeError::Payload { .. })),
                "{bad}: {err:?}"
            );
            assert!(extract_store(bad.as_bytes(), 1000).is_err(), "{bad}");
        }
        let fine = format!(r#"{{"event_id":"{id}","s":"\ud83d\ude00\u00e9","n":-1.5e300}}"#);
        let item = event_item(0, "event", fine.as_bytes(), None, 1000).unwrap();
        assert_eq!(item.payload.get(), fine);
        consumer_decodes(&item).unwrap();
    }

    #[test]
    fn payload_nesting_is_bounded_by_what_the_consumers_read() {
        let nested = |depth: usize| {
            let inner = depth - 1;
            format!("{{\"a\":{}{}}}", "[".repeat(inner), "]".repeat(inner))
        };
        for id in [None, Some("9ec79c33ec9942ab8353589fcb2e04dc")] {
            let with_id = |text: String| match id {
                Some(id) => text.replacen('{', &format!("{{\"event_id\":\"{id}\","), 1),
                None => text,
            };
            let deepest = with_id(nested(MAX_EVENT_DEPTH));
            let item = event_item(0, "event", deepest.as_bytes(), None, 100_000).unwrap();
            consumer_decodes(&item).unwrap();
            let deeper = with_id(nested(MAX_EVENT_DEPTH + 1));
            let err = event_item(0, "event", deeper.as_bytes(), None, 100_000).unwrap_err();
            assert!(err.to_string().contains("nested deeper"), "{err}");
        }
    }

    #[test]
    fn store_bodies_json_and_legacy_base64() {
        let out = extract_store(b"{\"message\":\"x\"}", 1000).unwrap();
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].event_id.len(), 32);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b"{\"message\":\"legacy\"}").unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
        let out = extract_store(b64.as_bytes(), 1000).unwrap();
        assert_eq!(field(&out.events[0], "message"), "legacy");
        assert_eq!(
            field(&out.events[0], "event_id"),
            out.events[0].event_id.as_str()
        );
        assert!(matches!(
            extract_store(b"%%%", 1000),
            Err(BodyError::StoreJson(_))
        ));
    }
}
