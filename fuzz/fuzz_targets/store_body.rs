//! `POST /api/<project>/store/`: `Content-Encoding` decoding (gzip, deflate, identity) with its
//! size limit, then the store body (JSON, or the legacy base64 of zlib-compressed JSON).
//!
//! The first input byte picks the `Content-Encoding` header, the limit and an extra check;
//! the rest is the body. Checks: decoded output never exceeds the limit (no decompression
//! bomb gets through); identity passes the body through unchanged; compressing the body with
//! gzip, zlib or raw deflate and decoding gives it back (or `TooLarge` exactly when it is over
//! the limit); a JSON body and the same body as legacy base64+zlib are accepted or refused
//! alike; every accepted event decodes on the consumer side with its id in the payload.

#![no_main]

use std::io::Write;

use base64::Engine;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use silo_fuzz::assert_extracted;
use silo_relay::body::{self, BodyError};

const ENCODINGS: [Option<&str>; 8] = [
    None,
    Some("gzip"),
    Some("deflate"),
    Some("identity"),
    Some(" GZIP "),
    Some("x-gzip"),
    Some(""),
    Some("br"),
];
const LIMITS: [usize; 4] = [0, 100, 4096, 256 * 1024];
const MAX_EVENT_BYTES: usize = 16 * 1024;

fn compressed(kind: u8, data: &[u8]) -> (&'static str, Vec<u8>) {
    let level = flate2::Compression::fast();
    let (encoding, result) = match kind {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).expect("in-memory write");
            ("gzip", e.finish())
        }
        2 => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).expect("in-memory write");
            ("deflate", e.finish())
        }
        _ => {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), level);
            e.write_all(data).expect("in-memory write");
            ("deflate", e.finish())
        }
    };
    (encoding, result.expect("in-memory compression"))
}

fn check_store(body: &[u8]) -> Result<(), String> {
    match body::extract_store(body, MAX_EVENT_BYTES) {
        Ok(extracted) => {
            assert_eq!(extracted.events.len(), 1);
            assert!(extracted.dropped.is_empty());
            assert_extracted(&extracted);
            Ok(())
        }
        Err(BodyError::EventTooLarge { limit }) => {
            assert_eq!(limit, MAX_EVENT_BYTES);
            Err("too large".into())
        }
        Err(e) => Err(format!("{e:?}").chars().take(20).collect()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let encoding = ENCODINGS[usize::from(mode & 7)];
    let limit = LIMITS[usize::from((mode >> 3) & 3)];
    let extra = mode >> 5;

    let decoded = body::decode(encoding, Bytes::copy_from_slice(rest), limit);
    let identity = matches!(encoding, None | Some("" | "identity"));
    match &decoded {
        Ok(out) if identity => assert_eq!(&out[..], rest),
        Ok(out) => assert!(
            out.len() <= limit,
            "{} decoded bytes, limit {limit}",
            out.len()
        ),
        Err(BodyError::TooLarge { limit: l }) => assert!(!identity && *l == limit),
        Err(BodyError::UnsupportedEncoding(_)) => assert_eq!(encoding, Some("br")),
        Err(BodyError::Decode { .. }) => assert!(!identity),
        Err(e) => panic!("unexpected decode error {e:?}"),
    }
    let direct = decoded.as_ref().ok().map(|body| check_store(body));

    match extra {
        // Round trip through each compression.
        1..=3 => {
            let (encoding, packed) = compressed(extra, rest);
            match body::decode(Some(encoding), Bytes::from(packed), limit) {
                Ok(out) => assert_eq!(&out[..], rest),
                Err(BodyError::TooLarge { .. }) => assert!(rest.len() > limit),
                Err(e) => panic!("{encoding} round trip failed: {e:?}"),
            }
        }
        // The same event as a legacy base64+zlib body.
        4 if identity && rest.first() == Some(&b'{') && rest.len() <= MAX_EVENT_BYTES => {
            let (_, packed) = compressed(2, rest);
            let legacy = base64::engine::general_purpose::STANDARD.encode(packed);
            let legacy = check_store(legacy.as_bytes());
            assert_eq!(
                legacy.is_ok(),
                direct.as_ref().is_some_and(Result::is_ok),
                "legacy {legacy:?} vs JSON {direct:?}"
            );
        }
        _ => {}
    }
});
