//! Cross-silo RPC signing: `Authorization: Rpcsignature rpc0:<hex HMAC-SHA256(key, path + ":" + body)>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `Authorization` scheme of signed RPC calls.
pub const SCHEME: &str = "Rpcsignature";
const VERSION_PREFIX: &str = "rpc0:";

/// Path prefix of the RPC receiver: `POST /api/0/internal/rpc/<service>/<method>/`.
pub const PATH_PREFIX: &str = "/api/0/internal/rpc/";

fn mac(key: &str, path: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(path.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// The signature value (`rpc0:<hex>`) for `path` and `body` with `key`.
pub fn sign(key: &str, path: &str, body: &[u8]) -> String {
    format!(
        "{VERSION_PREFIX}{}",
        hex::encode(mac(key, path, body).finalize().into_bytes())
    )
}

/// The full `Authorization` header value, signed with the first key.
pub fn authorization(keys: &[String], path: &str, body: &[u8]) -> Option<String> {
    keys.first()
        .map(|key| format!("{SCHEME} {}", sign(key, path, body)))
}

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no RPC secret is configured on the receiver; set RPC_SHARED_SECRET")]
    NoKeys,
    #[error("missing or malformed Authorization header; expected `Rpcsignature rpc0:<hex>`")]
    Malformed,
    #[error("RPC signature does not match any configured key")]
    Mismatch,
}

/// Check an `Authorization` header value against every key (constant-time per key).
pub fn verify(
    keys: &[String],
    path: &str,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    if keys.is_empty() {
        return Err(SignatureError::NoKeys);
    }
    let value = header.ok_or(SignatureError::Malformed)?.trim();
    let signature = value
        .strip_prefix(SCHEME)
        .map(str::trim_start)
        .and_then(|v| v.strip_prefix(VERSION_PREFIX))
        .ok_or(SignatureError::Malformed)?;
    let bytes = hex::decode(signature).map_err(|_| SignatureError::Malformed)?;
    if keys
        .iter()
        .any(|key| mac(key, path, body).verify_slice(&bytes).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/api/0/internal/rpc/organization/create/";

    #[test]
    fn known_vector() {
        // HMAC-SHA256("secret", "/p:body"), computed independently with Python's hmac module.
        assert_eq!(
            sign("secret", "/p", b"body"),
            "rpc0:e1a560db4f9cdc3fb90419bffeb4942586c1132c93f81e0921bd06dee189d728"
        );
    }

    #[test]
    fn any_key_verifies_for_rotation() {
        let keys = vec!["new".to_owned(), "old".to_owned()];
        let signed_old = format!("{SCHEME} {}", sign("old", PATH, b"{}"));
        assert_eq!(verify(&keys, PATH, b"{}", Some(&signed_old)), Ok(()));
        let header = authorization(&keys, PATH, b"{}").unwrap();
        assert_eq!(verify(&keys[..1], PATH, b"{}", Some(&header)), Ok(()));
    }

    #[test]
    fn rejects_tampering_and_garbage() {
        let keys = vec!["k".to_owned()];
        let header = authorization(&keys, PATH, b"{}").unwrap();
        assert_eq!(
            verify(&keys, PATH, b"{\"x\":1}", Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&keys, "/other/", b"{}", Some(&header)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&keys, PATH, b"{}", None),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&keys, PATH, b"{}", Some("Bearer abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&[], PATH, b"{}", Some(&header)),
            Err(SignatureError::NoKeys)
        );
    }
}
