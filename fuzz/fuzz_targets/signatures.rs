//! Signature headers checked on requests from outside the pod: relay -> web
//! (`X-Sentry-Relay-Signature`) and cross-silo RPC (`Authorization: Rpcsignature rpc0:<hex>`).
//!
//! The input is four NUL-separated parts: secret (a comma-separated `RPC_SHARED_SECRET` list
//! for RPC), request path, body and the signature header. Checks: a fuzzed header verifies only
//! if it carries the real MAC; what `sign`/`authorization` write always verifies; a flipped
//! body byte never does; errors match the input (no secret, missing, malformed, mismatch).

#![no_main]

use libfuzzer_sys::fuzz_target;
use silo_contract::{env, rpc};
use silo_fuzz::split;
use silo_protocol::relay_auth::{self, RelayAuthError};

fuzz_target!(|data: &[u8]| {
    let [secret, path, body, header] = split::<4>(data, 0);
    let (Ok(secret), Ok(path), Ok(header)) = (
        std::str::from_utf8(secret),
        std::str::from_utf8(path),
        std::str::from_utf8(header),
    ) else {
        return;
    };
    let mut tampered = body.to_vec();
    if let Some(b) = tampered.first_mut() {
        *b ^= 1;
    } else {
        tampered.push(0);
    }

    // Relay -> web.
    let signed = relay_auth::sign(secret, body);
    match relay_auth::verify(secret, body, Some(header)) {
        Ok(()) => assert_eq!(
            hex::decode(header.trim()).ok(),
            hex::decode(&signed).ok(),
            "a signature other than the MAC verified"
        ),
        Err(RelayAuthError::NoSecret) => assert!(secret.is_empty()),
        Err(RelayAuthError::Missing) => panic!("header was given"),
        Err(RelayAuthError::Mismatch) => assert!(!secret.is_empty()),
    }
    if secret.is_empty() {
        assert_eq!(
            relay_auth::verify(secret, body, Some(&signed)),
            Err(RelayAuthError::NoSecret)
        );
    } else {
        assert_eq!(relay_auth::verify(secret, body, Some(&signed)), Ok(()));
        assert_eq!(
            relay_auth::verify(secret, body, None),
            Err(RelayAuthError::Missing)
        );
        assert_eq!(
            relay_auth::verify(secret, &tampered, Some(&signed)),
            Err(RelayAuthError::Mismatch)
        );
    }

    // Cross-silo RPC.
    let keys = env::parse_secret_list(secret);
    assert!(keys.iter().all(|k| !k.is_empty() && k.trim() == k));
    assert_eq!(env::parse_secret_list(&env::join_secret_list(&keys)), keys);
    match rpc::verify(&keys, path, body, Some(header)) {
        Ok(()) => {
            let sig = header
                .trim()
                .strip_prefix(rpc::SCHEME)
                .map(str::trim_start)
                .and_then(|v| v.strip_prefix("rpc0:"))
                .expect("a verified header has the scheme and version");
            assert!(
                keys.iter()
                    .any(|k| hex::decode(sig).ok()
                        == hex::decode(&rpc::sign(k, path, body)[5..]).ok()),
                "a signature other than a key's MAC verified"
            );
        }
        Err(rpc::SignatureError::NoKeys) => assert!(keys.is_empty()),
        Err(_) => assert!(!keys.is_empty()),
    }
    match rpc::authorization(&keys, path, body) {
        Some(written) => {
            assert_eq!(rpc::verify(&keys, path, body, Some(&written)), Ok(()));
            for key in &keys {
                let alone = format!("{} {}", rpc::SCHEME, rpc::sign(key, path, body));
                assert_eq!(rpc::verify(&keys, path, body, Some(&alone)), Ok(()));
            }
            assert_eq!(
                rpc::verify(&keys, path, &tampered, Some(&written)),
                Err(rpc::SignatureError::Mismatch)
            );
            assert_eq!(
                rpc::verify(&keys, path, body, None),
                Err(rpc::SignatureError::Malformed)
            );
        }
        None => assert!(keys.is_empty()),
    }
});
