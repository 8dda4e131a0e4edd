//! The caller's identity as the gateway forwards it to a region.
//!
//! Control tokens live in the control database, which regions cannot read. The gateway
//! authenticates the token itself, then sends the region two headers:
//!
//! ```text
//!  X-Silo-Identity:           base64url(JSON {tokenId, label, scopes, path, exp})
//!  X-Silo-Identity-Signature: Rpcsignature rpc0:<hex HMAC-SHA256(key, path + ":" + identity)>
//! ```
//!
//! signed like an RPC call with the first key of `RPC_SHARED_SECRET`. The region accepts the
//! identity (instead of looking the bearer token up) when the signature matches any of its
//! keys, the signed path is the request's path and `exp` has not passed. Anything else is a
//! 401: a client cannot forge the headers without the RPC secret, and a captured pair is only
//! good for the same path for a minute.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use silo_contract::rpc;

/// Header carrying the identity.
pub const IDENTITY_HEADER: &str = "x-silo-identity";
/// Header carrying its signature.
pub const SIGNATURE_HEADER: &str = "x-silo-identity-signature";
/// How long a forwarded identity stays valid, in seconds.
pub const TTL_SECONDS: i64 = 60;

/// Who the gateway authenticated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedIdentity {
    pub token_id: i64,
    pub label: String,
    pub scopes: Vec<String>,
    /// The request path the identity is good for.
    pub path: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

/// Why a forwarded identity was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("forwarded identity signature: {0}")]
    Signature(#[from] rpc::SignatureError),
    #[error("forwarded identity is not base64url JSON")]
    Malformed,
    #[error("forwarded identity was signed for another path")]
    WrongPath,
    #[error("forwarded identity has expired")]
    Expired,
}

/// The two header values for `identity`, signed with the first key; `None` without keys.
pub fn encode(keys: &[String], identity: &ForwardedIdentity) -> Option<(String, String)> {
    let json = serde_json::to_vec(identity).ok()?;
    let value = URL_SAFE_NO_PAD.encode(json);
    let signature = rpc::authorization(keys, &identity.path, value.as_bytes())?;
    Some((value, signature))
}

/// Check the headers of a request to `path`.
pub fn verify(
    keys: &[String],
    path: &str,
    value: &str,
    signature: Option<&str>,
) -> Result<ForwardedIdentity, IdentityError> {
    rpc::verify(keys, path, value.as_bytes(), signature)?;
    let json = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| IdentityError::Malformed)?;
    let identity: ForwardedIdentity =
        serde_json::from_slice(&json).map_err(|_| IdentityError::Malformed)?;
    if identity.path != path {
        return Err(IdentityError::WrongPath);
    }
    if identity.exp < Utc::now().timestamp() {
        return Err(IdentityError::Expired);
    }
    Ok(identity)
}

/// An identity for `path`, valid for [`TTL_SECONDS`].
pub fn for_path(token_id: i64, label: &str, scopes: &[String], path: &str) -> ForwardedIdentity {
    ForwardedIdentity {
        token_id,
        label: label.to_owned(),
        scopes: scopes.to_vec(),
        path: path.to_owned(),
        exp: Utc::now().timestamp() + TTL_SECONDS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn round_trips_and_accepts_any_key() {
        let id = for_path(7, "ci", &["org:read".into()], "/api/0/organizations/acme/");
        let (value, signature) = encode(&keys(&["old"]), &id).unwrap();
        let got = verify(
            &keys(&["new", "old"]),
            "/api/0/organizations/acme/",
            &value,
            Some(&signature),
        )
        .unwrap();
        assert_eq!(got, id);
    }

    #[test]
    fn refuses_other_paths_keys_expiry_and_tampering() {
        let path = "/api/0/organizations/acme/";
        let id = for_path(7, "ci", &["org:read".into()], path);
        let (value, signature) = encode(&keys(&["k"]), &id).unwrap();
        assert!(matches!(
            verify(
                &keys(&["k"]),
                "/api/0/organizations/other/",
                &value,
                Some(&signature)
            ),
            Err(IdentityError::Signature(_))
        ));
        assert!(matches!(
            verify(&keys(&["other"]), path, &value, Some(&signature)),
            Err(IdentityError::Signature(_))
        ));
        assert!(matches!(
            verify(&keys(&["k"]), path, &value, None),
            Err(IdentityError::Signature(_))
        ));
        let mut forged = id.clone();
        forged.scopes.push("org:admin".into());
        let forged_value = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(verify(&keys(&["k"]), path, &forged_value, Some(&signature)).is_err());
        let mut old = id;
        old.exp = Utc::now().timestamp() - 1;
        let (value, signature) = encode(&keys(&["k"]), &old).unwrap();
        assert_eq!(
            verify(&keys(&["k"]), path, &value, Some(&signature)),
            Err(IdentityError::Expired)
        );
        // Signed for /a/ but naming /b/: refused even though the signature matches.
        let elsewhere = for_path(7, "ci", &[], "/b/");
        let value = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&elsewhere).unwrap());
        let signature = rpc::authorization(&keys(&["k"]), "/a/", value.as_bytes()).unwrap();
        assert_eq!(
            verify(&keys(&["k"]), "/a/", &value, Some(&signature)),
            Err(IdentityError::WrongPath)
        );
    }
}
