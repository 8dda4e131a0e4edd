//! Why a customer-provided cluster cannot be used, and the class of a failed request.

use std::fmt;

/// The broad cause of a failed request to a cluster, as `ClusterReachable` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The server's host name does not resolve.
    Dns,
    /// The TLS handshake failed (certificate authority, server name, protocol).
    Tls,
    /// The server rejected the credentials (HTTP 401).
    Unauthorized,
    /// The credentials are valid but lack a permission (HTTP 403).
    Forbidden,
    /// No answer within the request timeout.
    Timeout,
    /// Nothing listens at the server's address.
    Refused,
    /// Any other failure (the message has the details).
    Other,
}

impl ErrorClass {
    /// The condition reason of this class.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorClass::Dns => "DNS",
            ErrorClass::Tls => "TLS",
            ErrorClass::Unauthorized => "Unauthorized",
            ErrorClass::Forbidden => "Forbidden",
            ErrorClass::Timeout => "Timeout",
            ErrorClass::Refused => "Refused",
            ErrorClass::Other => "Error",
        }
    }

    /// What the platform team can do about it.
    pub fn advice(self) -> &'static str {
        match self {
            ErrorClass::Dns => "check the server address in the kubeconfig Secret",
            ErrorClass::Tls => {
                "check certificate-authority-data and the server name in the kubeconfig Secret"
            }
            ErrorClass::Unauthorized => {
                "the token is expired or revoked: renew it with `silo-operator onboard rotate`"
            }
            ErrorClass::Forbidden => {
                "the identity lacks a permission: run `silo-operator onboard` again to restore its roles"
            }
            ErrorClass::Timeout | ErrorClass::Refused | ErrorClass::Other => {
                "the operator retries with backoff; check that the cluster's API server is up and reachable"
            }
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

/// A Region's cluster cannot be used; every message names the Secret and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "kubeconfig Secret {namespace}/{secret} does not exist; create it with `silo-operator onboard`, or fix spec.cluster.kubeconfigSecret"
    )]
    SecretMissing { namespace: String, secret: String },
    #[error(
        "kubeconfig Secret {namespace}/{secret} has no key `value`; put the kubeconfig under `value` (Cluster API format)"
    )]
    NoValue { namespace: String, secret: String },
    #[error(
        "kubeconfig in Secret {namespace}/{secret} is not usable: {problem}; write a kubeconfig with one current context (e.g. with `silo-operator onboard`)"
    )]
    InvalidKubeconfig {
        namespace: String,
        secret: String,
        problem: String,
    },
    #[error("cluster of Secret {secret} ({server}) failed: {class}: {message}; {}", class.advice())]
    Request {
        secret: String,
        server: String,
        class: ErrorClass,
        message: String,
    },
    // Worded like `Request` without the count or the wait: the status stays unchanged (no
    // write) while the cluster backs off.
    #[error(
        "cluster of Secret {secret} ({server}) failed: {class}: {last}; {}", class.advice()
    )]
    BackingOff {
        secret: String,
        server: String,
        failures: u32,
        last: String,
        retry_in_secs: u64,
        class: ErrorClass,
    },
}

impl ClusterError {
    /// The condition reason: the error class, or what is wrong with the Secret.
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterError::SecretMissing { .. } => "SecretMissing",
            ClusterError::NoValue { .. } => "SecretHasNoValue",
            ClusterError::InvalidKubeconfig { .. } => "InvalidKubeconfig",
            ClusterError::Request { class, .. } | ClusterError::BackingOff { class, .. } => {
                class.reason()
            }
        }
    }
}

/// The class of a failed request, from the API status or the transport error chain.
pub fn classify(error: &kube::Error) -> ErrorClass {
    if let kube::Error::Api(status) = error {
        return match status.code {
            401 => ErrorClass::Unauthorized,
            403 => ErrorClass::Forbidden,
            _ => ErrorClass::Other,
        };
    }
    let mut chain = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return ErrorClass::Refused,
                std::io::ErrorKind::TimedOut => return ErrorClass::Timeout,
                _ => {}
            }
        }
        chain.push(e.to_string().to_lowercase());
        source = e.source();
    }
    classify_text(&chain.join(": "))
}

/// The class named by an error's text (transport errors carry no typed cause everywhere).
pub fn classify_text(text: &str) -> ErrorClass {
    let text = text.to_lowercase();
    if text.contains("dns error")
        || text.contains("failed to lookup address")
        || text.contains("name or service not known")
    {
        ErrorClass::Dns
    } else if text.contains("connection refused") {
        ErrorClass::Refused
    } else if text.contains("timed out") || text.contains("deadline has elapsed") {
        ErrorClass::Timeout
    } else if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        ErrorClass::Tls
    } else if text.contains("unauthorized") {
        ErrorClass::Unauthorized
    } else {
        ErrorClass::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_texts_map_to_their_class() {
        assert_eq!(
            classify_text(
                "client error (Connect): dns error: failed to lookup address information"
            ),
            ErrorClass::Dns
        );
        assert_eq!(
            classify_text("tcp connect error: Connection refused (os error 111)"),
            ErrorClass::Refused
        );
        assert_eq!(
            classify_text("invalid peer certificate: UnknownIssuer"),
            ErrorClass::Tls
        );
        assert_eq!(classify_text("deadline has elapsed"), ErrorClass::Timeout);
        assert_eq!(classify_text("something else"), ErrorClass::Other);
    }

    #[test]
    fn api_statuses_map_to_their_class() {
        let status = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert_eq!(classify(&status(401)), ErrorClass::Unauthorized);
        assert_eq!(classify(&status(403)), ErrorClass::Forbidden);
        assert_eq!(classify(&status(500)), ErrorClass::Other);
    }

    #[test]
    fn messages_say_what_to_do() {
        let e = ClusterError::NoValue {
            namespace: "silo-system".into(),
            secret: "acme-kubeconfig".into(),
        };
        assert!(e.to_string().contains("key `value`"));
        assert_eq!(e.reason(), "SecretHasNoValue");
    }
}
