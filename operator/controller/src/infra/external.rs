//! External stores: a Secret in the operator's namespace with Service-Binding-style keys,
//! checked and normalized into the one shape the workloads read (`uri`, `bootstrap.servers`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use silo_api::{ExternalStore, PostgresSslMode, Store};

/// Key of a Postgres or Redis URL.
pub const URI_KEY: &str = "uri";
/// Key of Kafka's bootstrap servers.
pub const KAFKA_SERVERS_KEY: &str = "bootstrap.servers";
/// Key of the CA bundle (PEM) in the copied Secret, mounted as `ca.crt` into the pods.
pub const CA_BUNDLE_KEY: &str = "ca.crt";
/// Key of Kafka's security protocol (`SSL`, `SASL_PLAINTEXT`, `SASL_SSL`) in the copy.
pub const KAFKA_PROTOCOL_KEY: &str = "security.protocol";
/// Key of Kafka's SASL mechanism in the copy.
pub const KAFKA_MECHANISM_KEY: &str = "sasl.mechanism";
/// Keys of Kafka's SASL username and password in the copy.
pub const KAFKA_USERNAME_KEY: &str = "sasl.username";
pub const KAFKA_PASSWORD_KEY: &str = "sasl.password";

/// Where a store's CA bundle is mounted in the silo's pods.
pub fn ca_bundle_path(store: Store) -> String {
    format!("/etc/silo/stores/{}/{CA_BUNDLE_KEY}", store.name())
}

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
    #[error(
        "external {store} Secret {namespace}/{secret}: the CA bundle key {key:?} (tls.caBundleKey) {problem}; put the PEM bundle of the CA that signs the store's certificate there, or unset caBundleKey to use the image's roots"
    )]
    CaBundle {
        store: &'static str,
        namespace: String,
        secret: String,
        key: String,
        problem: &'static str,
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

/// Check `secret` (None: not found) for `store` as `spec` describes it and return the
/// normalized connection data: the URL (with TLS settings), Kafka's protocol and SASL
/// credentials, and the CA bundle to mount.
pub fn resolve_external(
    store: Store,
    namespace: &str,
    spec: &ExternalStore,
    secret: Option<&Secret>,
) -> Result<BTreeMap<String, String>, ExternalError> {
    let name = spec.secret_name.as_str();
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
            let mut data = BTreeMap::from([(KAFKA_SERVERS_KEY.to_owned(), servers)]);
            let protocol = match (&spec.tls, &spec.sasl) {
                (None, None) => None,
                (Some(_), None) => Some("SSL"),
                (None, Some(_)) => Some("SASL_PLAINTEXT"),
                (Some(_), Some(_)) => Some("SASL_SSL"),
            };
            if let Some(protocol) = protocol {
                data.insert(KAFKA_PROTOCOL_KEY.to_owned(), protocol.to_owned());
            }
            if let Some(sasl) = &spec.sasl {
                let hint = "spec.infrastructure.kafka.external.sasl takes the SASL username and password from the Secret's username and password keys";
                data.insert(
                    KAFKA_MECHANISM_KEY.to_owned(),
                    sasl.mechanism.as_str().to_owned(),
                );
                data.insert(KAFKA_USERNAME_KEY.to_owned(), get("username", hint)?);
                data.insert(KAFKA_PASSWORD_KEY.to_owned(), get("password", hint)?);
            }
            return with_ca_bundle(data, store, namespace, spec, &values);
        }
        Store::Postgres => postgres_tls(
            match values.get(URI_KEY) {
                Some(uri) if uri.starts_with("postgres://") || uri.starts_with("postgresql://") => {
                    uri.clone()
                }
                Some(_) => {
                    return Err(bad(URI_KEY, "must start with postgres:// or postgresql://"));
                }
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
            spec,
            &bad,
        )?,
        Store::Redis => redis_tls(
            match values.get(URI_KEY) {
                Some(uri) if uri.starts_with("redis://") || uri.starts_with("rediss://") => {
                    uri.clone()
                }
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
            spec,
        ),
    };
    let data = BTreeMap::from([(URI_KEY.to_owned(), uri)]);
    with_ca_bundle(data, store, namespace, spec, &values)
}

/// Add `sslmode` (and `sslrootcert` when a CA bundle is given) to a Postgres URL.
fn postgres_tls(
    uri: String,
    spec: &ExternalStore,
    bad: &dyn Fn(&'static str, &'static str) -> ExternalError,
) -> Result<String, ExternalError> {
    let Some(tls) = &spec.tls else {
        return Ok(uri);
    };
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    if query
        .split('&')
        .any(|p| p.starts_with("sslmode=") || p.starts_with("sslrootcert="))
    {
        return Err(bad(
            URI_KEY,
            "sets sslmode or sslrootcert while spec.infrastructure.postgres.external.tls is given; set TLS in one place (remove them from the uri)",
        ));
    }
    let mode = tls.ssl_mode.unwrap_or(PostgresSslMode::VerifyFull);
    let mut uri = format!(
        "{uri}{}sslmode={}",
        if uri.contains('?') { '&' } else { '?' },
        mode.as_str()
    );
    if tls.ca_bundle_key.is_some() {
        uri.push_str(&format!("&sslrootcert={}", ca_bundle_path(Store::Postgres)));
    }
    Ok(uri)
}

/// Use `rediss://` when TLS is asked for (a `rediss://` URL is TLS either way).
fn redis_tls(uri: String, spec: &ExternalStore) -> String {
    match (&spec.tls, uri.strip_prefix("redis://")) {
        (Some(_), Some(rest)) => format!("rediss://{rest}"),
        _ => uri,
    }
}

/// Copy the CA bundle named by `spec.tls.caBundleKey` into `data`, checked to hold PEM
/// certificates.
fn with_ca_bundle(
    mut data: BTreeMap<String, String>,
    store: Store,
    namespace: &str,
    spec: &ExternalStore,
    values: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ExternalError> {
    let Some(key) = spec.tls.as_ref().and_then(|t| t.ca_bundle_key.as_deref()) else {
        return Ok(data);
    };
    let problem = match values.get(key) {
        None => "is missing",
        Some(bundle) if !bundle.contains("-----BEGIN CERTIFICATE-----") => {
            "does not hold a PEM certificate (-----BEGIN CERTIFICATE-----)"
        }
        Some(bundle) => {
            data.insert(CA_BUNDLE_KEY.to_owned(), format!("{bundle}\n"));
            return Ok(data);
        }
    };
    Err(ExternalError::CaBundle {
        store: store.name(),
        namespace: namespace.to_owned(),
        secret: spec.secret_name.clone(),
        key: key.to_owned(),
        problem,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use silo_api::{KafkaSasl, SaslMechanism, StoreTls};

    use super::*;

    fn plain(name: &str) -> ExternalStore {
        ExternalStore {
            secret_name: name.to_owned(),
            egress: Vec::new(),
            tls: None,
            sasl: None,
        }
    }

    fn tls(name: &str, ca: Option<&str>, mode: Option<PostgresSslMode>) -> ExternalStore {
        ExternalStore {
            tls: Some(StoreTls {
                ca_bundle_key: ca.map(str::to_owned),
                ssl_mode: mode,
            }),
            ..plain(name)
        }
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";

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
        let data =
            resolve_external(Store::Postgres, "silo-system", &plain("pg"), Some(&s)).unwrap();
        assert_eq!(
            data.get("uri").map(String::as_str),
            Some("postgres://silo:p%40ss%2Fword@db.example.internal:5432/silo_de")
        );
    }

    #[test]
    fn uri_wins_and_is_checked() {
        let s = secret(&[("uri", "postgres://a:b@h:5433/d"), ("host", "ignored")]);
        let data = resolve_external(Store::Postgres, "ns", &plain("pg"), Some(&s)).unwrap();
        assert_eq!(data["uri"], "postgres://a:b@h:5433/d");
        let s = secret(&[("uri", "mysql://h/d")]);
        let err = resolve_external(Store::Postgres, "ns", &plain("pg"), Some(&s)).unwrap_err();
        assert!(err.to_string().contains("postgres://"), "{err}");
    }

    #[test]
    fn missing_secret_and_keys_are_named() {
        let err = resolve_external(Store::Redis, "silo-system", &plain("cache"), None).unwrap_err();
        assert!(
            err.to_string().contains("silo-system/cache does not exist"),
            "{err}"
        );
        let s = secret(&[("host", "h"), ("username", "u"), ("password", "p")]);
        let err =
            resolve_external(Store::Postgres, "silo-system", &plain("pg"), Some(&s)).unwrap_err();
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
        let err =
            resolve_external(Store::Kafka, "ns", &plain("k"), Some(&secret(&[]))).unwrap_err();
        assert!(err.to_string().contains("bootstrap.servers"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        let s = secret(&[("bootstrap.servers", "kafka-1:9092,nope")]);
        assert!(resolve_external(Store::Kafka, "ns", &plain("k"), Some(&s)).is_err());
        let s = secret(&[("host", "r"), ("port", "99999")]);
        assert!(resolve_external(Store::Redis, "ns", &plain("r"), Some(&s)).is_err());
        let s = secret(&[("host", "r"), ("password", "pw")]);
        let data = resolve_external(Store::Redis, "ns", &plain("r"), Some(&s)).unwrap();
        assert_eq!(data["uri"], "redis://:pw@r:6379/0");
    }

    #[test]
    fn postgres_tls_sets_sslmode_and_the_mounted_ca() {
        let s = secret(&[("uri", "postgres://a:b@db:5432/d"), ("ca.pem", PEM)]);
        let data = resolve_external(
            Store::Postgres,
            "ns",
            &tls("pg", Some("ca.pem"), None),
            Some(&s),
        )
        .unwrap();
        assert_eq!(
            data["uri"],
            "postgres://a:b@db:5432/d?sslmode=verify-full&sslrootcert=/etc/silo/stores/postgres/ca.crt"
        );
        assert!(data["ca.crt"].starts_with("-----BEGIN CERTIFICATE-----"));
        let s = secret(&[("uri", "postgres://a:b@db/d?application_name=x")]);
        let spec = tls("pg", None, Some(PostgresSslMode::Require));
        let data = resolve_external(Store::Postgres, "ns", &spec, Some(&s)).unwrap();
        assert_eq!(
            data["uri"],
            "postgres://a:b@db/d?application_name=x&sslmode=require"
        );
        assert!(!data.contains_key("ca.crt"));
        // TLS in the uri and in the spec at once is ambiguous.
        let s = secret(&[("uri", "postgres://a:b@db/d?sslmode=disable")]);
        let err = resolve_external(Store::Postgres, "ns", &spec, Some(&s)).unwrap_err();
        assert!(err.to_string().contains("set TLS in one place"), "{err}");
    }

    #[test]
    fn a_missing_or_bad_ca_bundle_is_named() {
        let spec = tls("pg", Some("ca.crt"), None);
        let s = secret(&[("uri", "postgres://a:b@db/d")]);
        let err = resolve_external(Store::Postgres, "silo-system", &spec, Some(&s)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("silo-system/pg")
                && text.contains("\"ca.crt\"")
                && text.contains("is missing"),
            "{text}"
        );
        let s = secret(&[
            ("uri", "postgres://a:b@db/d"),
            ("ca.crt", "not a certificate"),
        ]);
        let err = resolve_external(Store::Postgres, "silo-system", &spec, Some(&s)).unwrap_err();
        assert!(err.to_string().contains("PEM"), "{err}");
    }

    #[test]
    fn redis_tls_uses_rediss() {
        let s = secret(&[("host", "cache"), ("password", "pw"), ("ca", PEM)]);
        let data =
            resolve_external(Store::Redis, "ns", &tls("r", Some("ca"), None), Some(&s)).unwrap();
        assert_eq!(data["uri"], "rediss://:pw@cache:6379/0");
        assert!(data.contains_key("ca.crt"));
        // A rediss:// URL is TLS (with the image's roots) even without spec.tls.
        let s = secret(&[("uri", "rediss://cache:6380/0")]);
        let data = resolve_external(Store::Redis, "ns", &plain("r"), Some(&s)).unwrap();
        assert_eq!(data["uri"], "rediss://cache:6380/0");
    }

    #[test]
    fn kafka_protocol_follows_tls_and_sasl() {
        let servers = ("bootstrap.servers", "k1:9093,k2:9093");
        let sasl = |mechanism| Some(KafkaSasl { mechanism });
        let s = secret(&[servers]);
        let data = resolve_external(Store::Kafka, "ns", &plain("k"), Some(&s)).unwrap();
        assert!(!data.contains_key("security.protocol"));
        let data = resolve_external(Store::Kafka, "ns", &tls("k", None, None), Some(&s)).unwrap();
        assert_eq!(data["security.protocol"], "SSL");
        let spec = ExternalStore {
            sasl: sasl(SaslMechanism::ScramSha512),
            ..plain("k")
        };
        let err = resolve_external(Store::Kafka, "ns", &spec, Some(&s)).unwrap_err();
        assert!(
            matches!(
                err,
                ExternalError::MissingKey {
                    key: "username",
                    ..
                }
            ),
            "{err}"
        );
        let s = secret(&[
            servers,
            ("username", "u"),
            ("password", "p"),
            ("ca.crt", PEM),
        ]);
        let data = resolve_external(Store::Kafka, "ns", &spec, Some(&s)).unwrap();
        assert_eq!(data["security.protocol"], "SASL_PLAINTEXT");
        assert_eq!(data["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(
            (
                data["sasl.username"].as_str(),
                data["sasl.password"].as_str()
            ),
            ("u", "p")
        );
        let spec = ExternalStore {
            sasl: sasl(SaslMechanism::Plain),
            ..tls("k", Some("ca.crt"), None)
        };
        let data = resolve_external(Store::Kafka, "ns", &spec, Some(&s)).unwrap();
        assert_eq!(data["security.protocol"], "SASL_SSL");
        assert!(data["ca.crt"].contains("BEGIN CERTIFICATE"));
    }
}
