//! External stores: a Secret in the operator's namespace with Service-Binding-style keys,
//! checked and normalized into the one shape the workloads read (`uri`, `bootstrap.servers`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use silo_api::Store;

/// Key of a Postgres or Redis URL.
pub const URI_KEY: &str = "uri";
/// Key of Kafka's bootstrap servers.
pub const KAFKA_SERVERS_KEY: &str = "bootstrap.servers";

/// Why an external store's Secret cannot be used; each names the Secret and what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    #[error(
        "external {store} Secret {namespace}/{secret} does not exist; create it with the store's connection keys (see Region.spec.infrastructure.{store}.external)"
    )]
    Missing {
        store: &'static str,
        namespace: String,
        secret: String,
    },
    #[error("external {store} Secret {namespace}/{secret} lacks key {key:?}; {hint}")]
    MissingKey {
        store: &'static str,
        namespace: String,
        secret: String,
        key: &'static str,
        hint: &'static str,
    },
    #[error("external {store} Secret {namespace}/{secret}: key {key:?} {problem}")]
    BadValue {
        store: &'static str,
        namespace: String,
        secret: String,
        key: &'static str,
        problem: &'static str,
    },
}

/// The Secret's values as text (non-UTF-8 values count as absent).
fn values(secret: &Secret) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        if let Ok(text) = String::from_utf8(v.0.clone()) {
            out.insert(k.clone(), text.trim().to_owned());
        }
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.trim().to_owned());
    }
    out.retain(|_, v| !v.is_empty());
    out
}

/// Percent-encode a URL userinfo or path component.
fn encode(part: &str) -> String {
    let mut out = String::new();
    for b in part.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Check `secret` (None: not found) for `store` and return the normalized connection data.
pub fn resolve_external(
    store: Store,
    namespace: &str,
    name: &str,
    secret: Option<&Secret>,
) -> Result<BTreeMap<String, String>, ExternalError> {
    let store_name = store.name();
    let secret = secret.ok_or_else(|| ExternalError::Missing {
        store: store_name,
        namespace: namespace.to_owned(),
        secret: name.to_owned(),
    })?;
    let values = values(secret);
    let missing = |key: &'static str, hint: &'static str| ExternalError::MissingKey {
        store: store_name,
        namespace: namespace.to_owned(),
        secret: name.to_owned(),
        key,
        hint,
    };
    let bad = |key: &'static str, problem: &'static str| ExternalError::BadValue {
        store: store_name,
        namespace: namespace.to_owned(),
        secret: name.to_owned(),
        key,
        problem,
    };
    let get = |key: &'static str, hint: &'static str| {
        values.get(key).cloned().ok_or_else(|| missing(key, hint))
    };
    let port_of = |default: &str| -> Result<String, ExternalError> {
        let port = values
            .get("port")
            .cloned()
            .unwrap_or_else(|| default.to_owned());
        port.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(|_| port)
            .ok_or_else(|| bad("port", "must be a TCP port number (1-65535)"))
    };
    let uri = match store {
        Store::Kafka => {
            let servers = get(
                KAFKA_SERVERS_KEY,
                "set it to the brokers as host:port[,host:port...]",
            )?;
            let valid = servers.split(',').all(|s| {
                s.trim()
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            });
            if !valid {
                return Err(bad(KAFKA_SERVERS_KEY, "must be host:port[,host:port...]"));
            }
            return Ok(BTreeMap::from([(KAFKA_SERVERS_KEY.to_owned(), servers)]));
        }
        Store::Postgres => match values.get(URI_KEY) {
            Some(uri) if uri.starts_with("postgres://") || uri.starts_with("postgresql://") => {
                uri.clone()
            }
            Some(_) => return Err(bad(URI_KEY, "must start with postgres:// or postgresql://")),
            None => {
                let hint = "give either uri, or host, port, username, password and database";
                let host = get("host", hint)?;
                let user = get("username", hint)?;
                let password = get("password", hint)?;
                let database = get("database", hint)?;
                let port = port_of("5432")?;
                format!(
                    "postgres://{}:{}@{host}:{port}/{}",
                    encode(&user),
                    encode(&password),
                    encode(&database)
                )
            }
        },
        Store::Redis => match values.get(URI_KEY) {
            Some(uri) if uri.starts_with("redis://") || uri.starts_with("rediss://") => uri.clone(),
            Some(_) => return Err(bad(URI_KEY, "must start with redis:// or rediss://")),
            None => {
                let host = get("host", "give either uri, or host, port and password")?;
                let port = port_of("6379")?;
                match values.get("password") {
                    Some(password) => format!("redis://:{}@{host}:{port}/0", encode(password)),
                    None => format!("redis://{host}:{port}/0"),
                }
            }
        },
    };
    Ok(BTreeMap::from([(URI_KEY.to_owned(), uri)]))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;

    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn postgres_from_parts_is_encoded_into_one_uri() {
        let s = secret(&[
            ("host", "db.example.internal"),
            ("username", "silo"),
            ("password", "p@ss/word"),
            ("database", "silo_de"),
        ]);
        let data = resolve_external(Store::Postgres, "silo-system", "pg", Some(&s)).unwrap();
        assert_eq!(
            data.get("uri").map(String::as_str),
            Some("postgres://silo:p%40ss%2Fword@db.example.internal:5432/silo_de")
        );
    }

    #[test]
    fn uri_wins_and_is_checked() {
        let s = secret(&[("uri", "postgres://a:b@h:5433/d"), ("host", "ignored")]);
        let data = resolve_external(Store::Postgres, "ns", "pg", Some(&s)).unwrap();
        assert_eq!(data["uri"], "postgres://a:b@h:5433/d");
        let s = secret(&[("uri", "mysql://h/d")]);
        let err = resolve_external(Store::Postgres, "ns", "pg", Some(&s)).unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
    }

    #[test]
    fn missing_secret_and_keys_are_named() {
        let err = resolve_external(Store::Redis, "silo-system", "cache", None).unwrap_err();
        assert!(
            err.to_string().contains("silo-system/cache does not exist"),
            "{err}"
        );
        let s = secret(&[("host", "h"), ("username", "u"), ("password", "p")]);
        let err = resolve_external(Store::Postgres, "silo-system", "pg", Some(&s)).unwrap_err();
        assert!(
            matches!(
                err,
                ExternalError::MissingKey {
                    key: "database",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("silo-system/pg"), "{err}");
        let err = resolve_external(Store::Kafka, "ns", "k", Some(&secret(&[]))).unwrap_err();
        assert!(err.to_string().contains("bootstrap.servers"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let s = secret(&[("bootstrap.servers", "kafka-1:9092,nope")]);
        assert!(resolve_external(Store::Kafka, "ns", "k", Some(&s)).is_err());
        let s = secret(&[("host", "r"), ("port", "99999")]);
        assert!(resolve_external(Store::Redis, "ns", "r", Some(&s)).is_err());
        let s = secret(&[("host", "r"), ("password", "pw")]);
        let data = resolve_external(Store::Redis, "ns", "r", Some(&s)).unwrap();
        assert_eq!(data["uri"], "redis://:pw@r:6379/0");
    }
}
