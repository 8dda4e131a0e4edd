//! Sentry envelopes: a JSON header line, then items, each a JSON header line and a payload.
//!
//! ```text
//! {"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"https://key@host/42"}\n
//! {"type":"event","length":41}\n            <- payload is exactly `length` bytes
//! {"message":"hello","level":"error"}...\n
//! {"type":"event"}\n                        <- no length: payload runs to the next newline
//! {"message":"hi"}\n
//! ```

use bytes::Bytes;
use serde::Deserialize;

/// Why an envelope was refused; every message names the problem for the SDK author.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("empty envelope: expected a JSON header line")]
    Empty,
    #[error("envelope header is not a JSON object: {0}")]
    Header(String),
    #[error("item {index}: header is not a JSON object with a \"type\": {reason}")]
    ItemHeader { index: usize, reason: String },
    #[error(
        "item {index} ({ty}): declared length {length} exceeds the {remaining} bytes left in the envelope"
    )]
    Truncated {
        index: usize,
        ty: String,
        length: usize,
        remaining: usize,
    },
    #[error("invalid event_id {0:?}: expected 32 hexadecimal characters or a UUID")]
    EventId(String),
    #[error("item {index} ({ty}): payload is not a JSON object: {reason}")]
    Payload {
        index: usize,
        ty: String,
        reason: String,
    },
}

/// The envelope header fields relay reads; others are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct EnvelopeHeaders {
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub dsn: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ItemHeader {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    length: Option<usize>,
}

/// One item: its type (`event`, `attachment`, `session`, ...) and raw payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub ty: String,
    pub payload: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub headers: EnvelopeHeaders,
    pub items: Vec<Item>,
}

/// The line starting at `pos`, without its `\n` (and a `\r` before it), and the position after.
fn line(data: &[u8], pos: usize) -> (&[u8], usize) {
    match data[pos..].iter().position(|&b| b == b'\n') {
        Some(i) => {
            let l = &data[pos..pos + i];
            (l.strip_suffix(b"\r").unwrap_or(l), pos + i + 1)
        }
        None => (&data[pos..], data.len()),
    }
}

/// Split an envelope into its header and items.
pub fn parse(data: Bytes) -> Result<Envelope, EnvelopeError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(EnvelopeError::Empty);
    }
    let (header_line, mut pos) = line(&data, 0);
    let headers: EnvelopeHeaders =
        serde_json::from_slice(header_line).map_err(|e| EnvelopeError::Header(e.to_string()))?;
    let mut items = Vec::new();
    while pos < data.len() {
        let (header_line, next) = line(&data, pos);
        pos = next;
        if header_line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let index = items.len();
        let header: ItemHeader =
            serde_json::from_slice(header_line).map_err(|e| EnvelopeError::ItemHeader {
                index,
                reason: e.to_string(),
            })?;
        let payload = match header.length {
            Some(length) => {
                let remaining = data.len() - pos;
                if length > remaining {
                    return Err(EnvelopeError::Truncated {
                        index,
                        ty: header.ty,
                        length,
                        remaining,
                    });
                }
                let payload = data.slice(pos..pos + length);
                pos += length;
                if data.get(pos) == Some(&b'\r') && data.get(pos + 1) == Some(&b'\n') {
                    pos += 2;
                } else if data.get(pos) == Some(&b'\n') {
                    pos += 1;
                }
                payload
            }
            None => {
                let (body, next) = line(&data, pos);
                let start = pos;
                pos = next;
                data.slice(start..start + body.len())
            }
        };
        items.push(Item {
            ty: header.ty,
            payload,
        });
    }
    Ok(Envelope { headers, items })
}

/// Sentry event ids: 32 lowercase hex characters; hyphenated UUIDs are accepted and normalized.
///
/// The nil id (`00000000-0000-0000-0000-000000000000`, which some clients send when none is
/// set) and an empty string mean "no id": `None`, so the caller assigns a fresh one as Sentry
/// does. Storing events under the nil id would make every later one a "duplicate".
pub fn normalize_event_id(id: &str) -> Result<Option<String>, EnvelopeError> {
    let id = id.trim();
    if id.is_empty() {
        return Ok(None);
    }
    uuid::Uuid::try_parse(id)
        .map(|u| (!u.is_nil()).then(|| u.simple().to_string()))
        .map_err(|_| EnvelopeError::EventId(id.chars().take(64).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Envelope, EnvelopeError> {
        parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn items_with_and_without_length() {
        let env = parse_str(concat!(
            "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://k@h/1\"}\n",
            "{\"type\":\"attachment\",\"length\":10}\n",
            "a\nb\nc\nd\ne\n",
            "\n",
            "{\"type\":\"event\"}\n",
            "{\"message\":\"hi\"}\n",
        ))
        .unwrap();
        assert_eq!(
            env.headers.event_id.as_deref(),
            Some("9ec79c33ec9942ab8353589fcb2e04dc")
        );
        assert_eq!(env.headers.dsn.as_deref(), Some("https://k@h/1"));
        assert_eq!(env.items.len(), 2);
        assert_eq!(env.items[0].ty, "attachment");
        assert_eq!(&env.items[0].payload[..], b"a\nb\nc\nd\ne\n");
        assert_eq!(env.items[1].ty, "event");
        assert_eq!(&env.items[1].payload[..], b"{\"message\":\"hi\"}");
    }

    #[test]
    fn last_item_without_trailing_newline_and_crlf() {
        let env = parse_str("{}\r\n{\"type\":\"event\",\"length\":2}\r\n{}").unwrap();
        assert_eq!(&env.items[0].payload[..], b"{}");
        let env = parse_str("{}\n{\"type\":\"event\"}\n{\"a\":1}").unwrap();
        assert_eq!(&env.items[0].payload[..], b"{\"a\":1}");
        let env = parse_str("{}").unwrap();
        assert!(env.items.is_empty());
    }

    #[test]
    fn zero_length_item_at_end() {
        let env = parse_str("{}\n{\"type\":\"session\",\"length\":0}\n").unwrap();
        assert_eq!(env.items.len(), 1);
        assert!(env.items[0].payload.is_empty());
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(parse_str(""), Err(EnvelopeError::Empty));
        assert!(matches!(
            parse_str("not json\n"),
            Err(EnvelopeError::Header(_))
        ));
        assert!(matches!(
            parse_str("{}\n{\"length\":2}\n{}\n"),
            Err(EnvelopeError::ItemHeader { index: 0, .. })
        ));
        let err = parse_str("{}\n{\"type\":\"event\",\"length\":100}\n{}\n").unwrap_err();
        assert_eq!(
            err,
            EnvelopeError::Truncated {
                index: 0,
                ty: "event".into(),
                length: 100,
                remaining: 3
            }
        );
        assert!(err.to_string().contains("declared length 100"));
    }

    #[test]
    fn event_ids() {
        assert_eq!(
            normalize_event_id("9EC79C33-EC99-42AB-8353-589FCB2E04DC")
                .unwrap()
                .unwrap(),
            "9ec79c33ec9942ab8353589fcb2e04dc"
        );
        assert_eq!(
            normalize_event_id("9ec79c33ec9942ab8353589fcb2e04dc")
                .unwrap()
                .as_deref(),
            Some("9ec79c33ec9942ab8353589fcb2e04dc")
        );
        assert!(normalize_event_id("xyz").is_err());
        // The nil id and an empty one mean "no id".
        for none in [
            "00000000-0000-0000-0000-000000000000",
            "00000000000000000000000000000000",
            "",
        ] {
            assert_eq!(normalize_event_id(none).unwrap(), None, "{none:?}");
        }
    }
}
