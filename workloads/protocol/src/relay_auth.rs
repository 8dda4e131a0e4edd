//! Relay -> web request signing: only the region's own relays may read project configs.
//!
//! Relay sends `X-Sentry-Relay-Id: <id>` and `X-Sentry-Relay-Signature: <hex HMAC-SHA256(secret,
//! body)>`; the secret is the region's `RELAY_SHARED_SECRET`, known to its relay and web only.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const RELAY_ID_HEADER: &str = "x-sentry-relay-id";
pub const SIGNATURE_HEADER: &str = "x-sentry-relay-signature";
/// Environment variable holding the region's relay secret.
pub const SECRET_ENV: &str = "RELAY_SHARED_SECRET";

fn mac(secret: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac
}

/// The signature header value for `body`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, body).finalize().into_bytes())
}

/// Why a relay request was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayAuthError {
    #[error("no relay secret is configured; set {SECRET_ENV}")]
    NoSecret,
    #[error("missing X-Sentry-Relay-Id or X-Sentry-Relay-Signature header")]
    Missing,
    #[error("relay signature does not match; relay and web must share {SECRET_ENV}")]
    Mismatch,
}

/// Verify a signature header against the body (constant time).
pub fn verify(secret: &str, body: &[u8], signature: Option<&str>) -> Result<(), RelayAuthError> {
    if secret.is_empty() {
        return Err(RelayAuthError::NoSecret);
    }
    let signature = signature.ok_or(RelayAuthError::Missing)?;
    let bytes = hex::decode(signature.trim()).map_err(|_| RelayAuthError::Mismatch)?;
    mac(secret, body)
        .verify_slice(&bytes)
        .map_err(|_| RelayAuthError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let sig = sign("s3cret", b"{\"publicKeys\":[]}");
        assert_eq!(verify("s3cret", b"{\"publicKeys\":[]}", Some(&sig)), Ok(()));
        assert_eq!(
            verify("s3cret", b"{\"publicKeys\":[\"x\"]}", Some(&sig)),
            Err(RelayAuthError::Mismatch)
        );
        assert_eq!(
            verify("other", b"{\"publicKeys\":[]}", Some(&sig)),
            Err(RelayAuthError::Mismatch)
        );
        assert_eq!(verify("s3cret", b"", None), Err(RelayAuthError::Missing));
        assert_eq!(verify("", b"", Some(&sig)), Err(RelayAuthError::NoSecret));
    }
}
