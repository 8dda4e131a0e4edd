//! DSN authentication: which public key (and optionally project) a request claims.
//!
//! Sources, first match wins: `X-Sentry-Auth: Sentry sentry_key=...` (or the same value in
//! `Authorization`), the `sentry_key` query parameter, then the envelope header's `dsn`.

/// Why no usable key was found in a request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing authentication: send X-Sentry-Auth: Sentry sentry_key=<public key>, \
         ?sentry_key=<public key>, or a \"dsn\" in the envelope header"
    )]
    Missing,
    #[error("malformed X-Sentry-Auth header: {0}")]
    MalformedHeader(String),
    #[error("malformed DSN {dsn:?} in the envelope header: {reason}")]
    MalformedDsn { dsn: String, reason: &'static str },
    #[error("invalid sentry_key {0:?}: a public key is 32 hexadecimal characters")]
    InvalidKey(String),
}

/// The credentials a request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub public_key: String,
    /// Project id from an envelope `dsn`, when that was the source.
    pub dsn_project_id: Option<u64>,
}

/// Parse an `X-Sentry-Auth` value: `Sentry sentry_key=abc, sentry_version=7, ...`.
/// Returns the `sentry_key`, or `None` when the header has none.
pub fn parse_auth_header(value: &str) -> Result<Option<String>, AuthError> {
    let value = value.trim();
    let rest = match value.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sentry") => rest,
        _ if value.starts_with("sentry_") => value,
        _ => {
            return Err(AuthError::MalformedHeader(
                "expected `Sentry sentry_key=<key>, sentry_version=7`".into(),
            ));
        }
    };
    for pair in rest.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((name, val)) = pair.split_once('=') else {
            return Err(AuthError::MalformedHeader(format!(
                "`{pair}` is not name=value"
            )));
        };
        if name.trim() == "sentry_key" {
            return Ok(Some(val.trim().trim_matches('"').to_owned()));
        }
    }
    Ok(None)
}

/// Parse a DSN `scheme://<public>[:<secret>]@host[:port][/path]/<project_id>`.
pub fn parse_dsn(dsn: &str) -> Result<Credentials, AuthError> {
    let bad = |reason| AuthError::MalformedDsn {
        dsn: dsn.to_owned(),
        reason,
    };
    let rest = dsn
        .split_once("://")
        .map(|(_, r)| r)
        .ok_or_else(|| bad("missing scheme"))?;
    let (userinfo, host_path) = rest.split_once('@').ok_or_else(|| bad("missing key@"))?;
    let public = userinfo.split(':').next().unwrap_or_default();
    let path = host_path
        .split_once('/')
        .map(|(_, p)| p)
        .unwrap_or_default();
    let project = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let project_id = project
        .parse::<u64>()
        .map_err(|_| bad("the path must end in a numeric project id"))?;
    Ok(Credentials {
        public_key: validate_key(public)?,
        dsn_project_id: Some(project_id),
    })
}

/// A public key must look like one (32 hex characters) before it is looked up anywhere.
pub fn validate_key(key: &str) -> Result<String, AuthError> {
    if key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(key.to_ascii_lowercase())
    } else {
        Err(AuthError::InvalidKey(key.chars().take(64).collect()))
    }
}

/// Credentials from the request's header and query, before the body is read.
pub fn from_request(
    auth_header: Option<&str>,
    authorization: Option<&str>,
    query: Option<&str>,
) -> Result<Option<Credentials>, AuthError> {
    for header in [auth_header, authorization].into_iter().flatten() {
        if let Some(key) = parse_auth_header(header)? {
            return Ok(Some(Credentials {
                public_key: validate_key(&key)?,
                dsn_project_id: None,
            }));
        }
    }
    if let Some(query) = query {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        if let Some((_, key)) = pairs.into_iter().find(|(k, _)| k == "sentry_key") {
            return Ok(Some(Credentials {
                public_key: validate_key(&key)?,
                dsn_project_id: None,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn header_with_and_without_scheme() {
        let h =
            format!("Sentry sentry_key={KEY}, sentry_version=7, sentry_client=sentry.rust/0.34");
        assert_eq!(parse_auth_header(&h), Ok(Some(KEY.to_owned())));
        let h = format!("sentry_version=7,sentry_key={KEY}");
        assert_eq!(parse_auth_header(&h), Ok(Some(KEY.to_owned())));
        assert_eq!(parse_auth_header("Sentry sentry_version=7"), Ok(None));
        assert!(matches!(
            parse_auth_header("Bearer abc"),
            Err(AuthError::MalformedHeader(_))
        ));
        assert!(matches!(
            parse_auth_header("Sentry sentry_key"),
            Err(AuthError::MalformedHeader(_))
        ));
    }

    #[test]
    fn dsn_forms() {
        let c = parse_dsn(&format!("https://{KEY}@o1.ingest.example.com/42")).unwrap();
        assert_eq!(c.public_key, KEY);
        assert_eq!(c.dsn_project_id, Some(42));
        let c = parse_dsn(&format!("http://{KEY}:secret@127.0.0.1:3000/sub/path/7/")).unwrap();
        assert_eq!(c.dsn_project_id, Some(7));
        assert!(matches!(
            parse_dsn("no-scheme"),
            Err(AuthError::MalformedDsn { .. })
        ));
        assert!(matches!(
            parse_dsn(&format!("http://{KEY}@host/not-a-number")),
            Err(AuthError::MalformedDsn { .. })
        ));
        assert!(matches!(
            parse_dsn("http://short@host/1"),
            Err(AuthError::InvalidKey(_))
        ));
    }

    #[test]
    fn request_sources_in_order() {
        let header = format!("Sentry sentry_key={KEY}");
        let other = "fedcba9876543210fedcba9876543210";
        let query = format!("sentry_version=7&sentry_key={other}");
        let c = from_request(Some(&header), None, Some(&query))
            .unwrap()
            .unwrap();
        assert_eq!(c.public_key, KEY);
        let c = from_request(None, Some(&header), None).unwrap().unwrap();
        assert_eq!(c.public_key, KEY);
        let c = from_request(None, None, Some(&query)).unwrap().unwrap();
        assert_eq!(c.public_key, other);
        assert_eq!(from_request(None, None, Some("sentry_version=7")), Ok(None));
        assert_eq!(
            from_request(None, None, Some("sentry_key=nothex")),
            Err(AuthError::InvalidKey("nothex".into()))
        );
    }

    #[test]
    fn keys_are_normalized_to_lowercase() {
        assert_eq!(validate_key(&KEY.to_uppercase()), Ok(KEY.to_owned()));
    }
}
