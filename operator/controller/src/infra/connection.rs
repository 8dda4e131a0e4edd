//! Why a silo's pods could not connect to an external store, read from what a failed
//! migration pod left (its container name says which store it was talking to, the end of its
//! log says what went wrong): the store, its host and the error class, for
//! `InfrastructureReady`.
//!
//! ```text
//!  "container migrate exited with 1: ... password authentication failed ..."
//!     ─► store of the container (migrate: postgres, redis: redis, topics: kafka)
//!     ─► host from its Secret
//!     ─► class (auth, TLS, DNS, refused, timeout) ─► StoreAuthFailed: external postgres db:5432 ...
//! ```

use silo_api::Store;
use silo_api::conditions::reason;

use super::{Provided, SiloInfra, external};

/// What kind of connection failure a message shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    Auth,
    Tls,
    Dns,
    Refused,
    Timeout,
}

impl ErrorClass {
    pub fn name(self) -> &'static str {
        match self {
            ErrorClass::Auth => "auth",
            ErrorClass::Tls => "TLS",
            ErrorClass::Dns => "DNS",
            ErrorClass::Refused => "refused",
            ErrorClass::Timeout => "timeout",
        }
    }

    /// The `InfrastructureReady` reason.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorClass::Auth => reason::STORE_AUTH_FAILED,
            ErrorClass::Tls => reason::STORE_TLS_FAILED,
            ErrorClass::Dns => reason::STORE_DNS_FAILED,
            ErrorClass::Refused | ErrorClass::Timeout => reason::STORE_UNREACHABLE,
        }
    }
}

/// The error class of a client's error text (Postgres, Redis and Kafka clients' wording),
/// most specific first: a refused password is reported as such even after retries timed out.
pub fn classify(message: &str) -> Option<ErrorClass> {
    let text = message.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if any(&[
        "password authentication failed",
        "authentication failed",
        "saslauthenticationexception",
        "wrongpass",
        "noauth",
        "no pg_hba.conf entry",
        "invalid username-password",
    ]) {
        Some(ErrorClass::Auth)
    } else if any(&[
        "certificate",
        "tls connection",
        "tls handshake",
        "sslhandshakeexception",
        "ssl handshake",
        "pkix path",
        "unknownissuer",
    ]) {
        Some(ErrorClass::Tls)
    } else if any(&[
        "failed to lookup address",
        "name or service not known",
        "temporary failure in name resolution",
        "unknownhostexception",
        "no address associated",
        "nodename nor servname",
    ]) {
        Some(ErrorClass::Dns)
    } else if any(&["connection refused"]) {
        Some(ErrorClass::Refused)
    } else if any(&["timed out", "timeout"]) {
        Some(ErrorClass::Timeout)
    } else {
        None
    }
}

/// The store a container of the migration Job talks to.
fn store_of(message: &str) -> Option<Store> {
    if message.starts_with("container topics") {
        Some(Store::Kafka)
    } else if message.starts_with("container redis") {
        Some(Store::Redis)
    } else if message.starts_with("container migrate") {
        Some(Store::Postgres)
    } else {
        None
    }
}

/// `host:port` of an external store's connection (the URL's authority without credentials,
/// or Kafka's bootstrap servers).
pub fn host_of(store: Store, provided: &Provided) -> Option<String> {
    let Provided::External { data, .. } = provided else {
        return None;
    };
    match store {
        Store::Kafka => data.get(external::KAFKA_SERVERS_KEY).cloned(),
        Store::Postgres | Store::Redis => {
            let uri = data.get(external::URI_KEY)?;
            let rest = uri.split_once("://")?.1;
            let authority = rest.split(['/', '?']).next()?;
            Some(
                authority
                    .rsplit_once('@')
                    .map_or(authority, |(_, h)| h)
                    .to_owned(),
            )
        }
    }
}

/// An external store a failed migration pod could not use, as an `InfrastructureReady`
/// reason and message; `None` when the failure is not a connection problem of an external
/// store (a managed store, or a failing migration itself).
pub fn failure(infra: &SiloInfra, problem: &str) -> Option<(&'static str, String)> {
    let store = store_of(problem)?;
    let host = host_of(store, infra.get(store)?)?;
    let class = classify(problem)?;
    let detail: String = problem.chars().take(400).collect();
    Some((
        class.reason(),
        format!(
            "external {} at {host}: {} error: {detail}; check the store's Secret (host, port, credentials, tls) and the Region's egress to it",
            store.name(),
            class.name()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::infra::Storage;

    fn infra(postgres_uri: &str) -> SiloInfra {
        SiloInfra {
            postgres: Provided::External {
                source: "pg".into(),
                data: BTreeMap::from([("uri".to_owned(), postgres_uri.to_owned())]),
            },
            redis: None,
            kafka: Some(Provided::Managed {
                sizing: Default::default(),
                storage: Storage::EmptyDir,
            }),
            retain_on_delete: false,
        }
    }

    #[test]
    fn client_errors_fall_into_classes() {
        let cases = [
            (
                "error returned from database: password authentication failed for user \"silo\"",
                ErrorClass::Auth,
            ),
            (
                "org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed",
                ErrorClass::Auth,
            ),
            (
                "error occurred while attempting to establish a TLS connection: invalid peer certificate: UnknownIssuer",
                ErrorClass::Tls,
            ),
            (
                "javax.net.ssl.SSLHandshakeException: PKIX path building failed",
                ErrorClass::Tls,
            ),
            (
                "error communicating with database: failed to lookup address information: Name or service not known",
                ErrorClass::Dns,
            ),
            (
                "error communicating with database: Connection refused (os error 111)",
                ErrorClass::Refused,
            ),
            (
                "Timed out waiting for a node assignment. Call: createTopics",
                ErrorClass::Timeout,
            ),
            (
                "redis: AUTH failed: WRONGPASS invalid username-password pair or user is disabled.",
                ErrorClass::Auth,
            ),
            (
                "redis did not answer within 60s: Could not connect to Redis at cache:6379: Connection refused",
                ErrorClass::Refused,
            ),
            (
                "redis: Could not negotiate a TLS connection: SSL_connect failed: certificate verify failed",
                ErrorClass::Tls,
            ),
        ];
        for (message, class) in cases {
            assert_eq!(classify(message), Some(class), "{message}");
        }
        assert_eq!(classify("relation \"events\" already exists"), None);
    }

    #[test]
    fn a_failed_external_connection_names_store_host_and_class() {
        let infra =
            infra("postgres://silo:secret@db.example.internal:5433/silo?sslmode=verify-full");
        let (reason, message) = failure(
            &infra,
            "container migrate exited with 1: database not reachable: password authentication failed for user \"silo\"",
        )
        .expect("a connection failure");
        assert_eq!(reason, reason::STORE_AUTH_FAILED);
        assert!(
            message.starts_with("external postgres at db.example.internal:5433: auth error"),
            "{message}"
        );
        assert!(
            !message.contains("secret@"),
            "no credentials in status: {message}"
        );
        // The Redis step names Redis (its host from the Secret's uri).
        let mut with_redis = infra.clone();
        with_redis.redis = Some(Provided::External {
            source: "cache".into(),
            data: BTreeMap::from([(
                "uri".to_owned(),
                "rediss://:pw@cache.example:6380/0".to_owned(),
            )]),
        });
        let (reason, message) = failure(
            &with_redis,
            "container redis exited with 1: redis did not answer within 60s: Could not connect to Redis at cache.example:6380: Connection refused",
        )
        .expect("a Redis connection failure");
        assert_eq!(reason, reason::STORE_UNREACHABLE);
        assert!(
            message.starts_with("external redis at cache.example:6380: refused error"),
            "{message}"
        );
        // A managed Kafka's failure, or a failure that is no connection problem, is not one.
        assert_eq!(
            failure(&infra, "container topics exited with 1: Timed out waiting"),
            None
        );
        assert_eq!(
            failure(
                &infra,
                "container migrate exited with 1: syntax error at or near"
            ),
            None
        );
    }
}
