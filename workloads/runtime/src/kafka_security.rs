//! How a workload's Kafka clients reach a Kafka with TLS or SASL (an external Kafka):
//! `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*` and `KAFKA_SSL_CA_LOCATION` ─► checked flags ─►
//! librdkafka settings every producer and consumer of the binary applies.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

/// SASL mechanisms librdkafka is built with here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Settings that cannot work together; each names the variables to fix.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KafkaSecurityError {
    #[error(
        "KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD ({missing} is not set)"
    )]
    SaslIncomplete {
        protocol: &'static str,
        missing: &'static str,
    },
    #[error(
        "{set} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use it; use {wanted} or unset {set}"
    )]
    Unused {
        set: &'static str,
        protocol: &'static str,
        wanted: &'static str,
    },
}

/// Kafka TLS and SASL flags (flatten into a binary's own clap struct).
#[derive(Clone, Debug, Default, Args)]
pub struct KafkaSecurityArgs {
    /// How the Kafka clients talk to the brokers (unset: PLAINTEXT).
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", value_enum)]
    pub kafka_security_protocol: Option<SecurityProtocol>,
    /// SASL mechanism (with SASL_PLAINTEXT or SASL_SSL).
    #[arg(long, env = "KAFKA_SASL_MECHANISM", value_enum)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// SASL username.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// PEM bundle of the CA(s) that sign the brokers' certificates (with SSL or SASL_SSL;
    /// unset: the system's roots).
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,
}

impl KafkaSecurityArgs {
    /// The librdkafka settings these flags ask for (empty for a plain connection), or why
    /// they cannot work.
    pub fn client_settings(&self) -> Result<Vec<(&'static str, String)>, KafkaSecurityError> {
        let protocol = self
            .kafka_security_protocol
            .unwrap_or(SecurityProtocol::Plaintext);
        let name = protocol.as_str();
        let mut settings = Vec::new();
        if protocol != SecurityProtocol::Plaintext {
            settings.push(("security.protocol", name.to_owned()));
        }
        if protocol.sasl() {
            let incomplete = |missing| KafkaSecurityError::SaslIncomplete {
                protocol: name,
                missing,
            };
            let mechanism = self
                .kafka_sasl_mechanism
                .ok_or(incomplete("KAFKA_SASL_MECHANISM"))?;
            let username = self
                .kafka_sasl_username
                .clone()
                .ok_or(incomplete("KAFKA_SASL_USERNAME"))?;
            let password = self
                .kafka_sasl_password
                .clone()
                .ok_or(incomplete("KAFKA_SASL_PASSWORD"))?;
            settings.push(("sasl.mechanisms", mechanism.as_str().to_owned()));
            settings.push(("sasl.username", username));
            settings.push(("sasl.password", password));
        } else if self.kafka_sasl_mechanism.is_some() || self.kafka_sasl_username.is_some() {
            return Err(KafkaSecurityError::Unused {
                set: "KAFKA_SASL_MECHANISM/KAFKA_SASL_USERNAME",
                protocol: name,
                wanted: "SASL_PLAINTEXT or SASL_SSL",
            });
        }
        match (&self.kafka_ssl_ca_location, protocol.tls()) {
            (Some(path), true) => {
                settings.push(("ssl.ca.location", path.display().to_string()));
            }
            (Some(_), false) => {
                return Err(KafkaSecurityError::Unused {
                    set: "KAFKA_SSL_CA_LOCATION",
                    protocol: name,
                    wanted: "SSL or SASL_SSL",
                });
            }
            (None, _) => {}
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(protocol: Option<SecurityProtocol>) -> KafkaSecurityArgs {
        KafkaSecurityArgs {
            kafka_security_protocol: protocol,
            ..KafkaSecurityArgs::default()
        }
    }

    #[test]
    fn plaintext_sets_nothing() {
        assert_eq!(args(None).client_settings(), Ok(Vec::new()));
    }

    #[test]
    fn sasl_ssl_sets_protocol_mechanism_credentials_and_ca() {
        let a = KafkaSecurityArgs {
            kafka_sasl_mechanism: Some(SaslMechanism::ScramSha512),
            kafka_sasl_username: Some("u".into()),
            kafka_sasl_password: Some("p".into()),
            kafka_ssl_ca_location: Some("/etc/ca.crt".into()),
            ..args(Some(SecurityProtocol::SaslSsl))
        };
        assert_eq!(
            a.client_settings().unwrap(),
            vec![
                ("security.protocol", "sasl_ssl".to_owned()),
                ("sasl.mechanisms", "SCRAM-SHA-512".to_owned()),
                ("sasl.username", "u".to_owned()),
                ("sasl.password", "p".to_owned()),
                ("ssl.ca.location", "/etc/ca.crt".to_owned()),
            ]
        );
    }

    #[test]
    fn incomplete_or_unused_settings_are_named() {
        let err = args(Some(SecurityProtocol::SaslPlaintext))
            .client_settings()
            .unwrap_err();
        assert!(err.to_string().contains("KAFKA_SASL_MECHANISM"), "{err}");
        let a = KafkaSecurityArgs {
            kafka_ssl_ca_location: Some("/ca".into()),
            ..args(Some(SecurityProtocol::SaslPlaintext))
        };
        assert!(a.client_settings().is_err());
        let a = KafkaSecurityArgs {
            kafka_ssl_ca_location: Some("/ca".into()),
            ..args(None)
        };
        let err = a.client_settings().unwrap_err();
        assert!(err.to_string().contains("SSL or SASL_SSL"), "{err}");
    }

    #[test]
    fn the_names_the_operator_writes_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            security: KafkaSecurityArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--kafka-security-protocol",
            "SASL_SSL",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-256",
        ])
        .unwrap();
        assert_eq!(
            cli.security.kafka_security_protocol,
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(
            cli.security.kafka_sasl_mechanism,
            Some(SaslMechanism::ScramSha256)
        );
    }
}
