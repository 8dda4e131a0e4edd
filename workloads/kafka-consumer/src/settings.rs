//! How a workload's consumer connects: brokers, group, topic, session timeout, batch limits.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;

/// The consumer's Kafka settings.
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// Bootstrap servers (`host:port,...`).
    pub brokers: String,
    pub group: String,
    /// The full (prefixed) topic name.
    pub topic: String,
    /// How soon a crashed instance's partitions move to another one.
    pub session_timeout: Duration,
    /// Most messages handed to the handler at once (at least 1).
    pub batch_size: usize,
    /// Longest wait for more messages after the first of a batch.
    pub batch_wait: Duration,
    /// TLS and SASL settings (`silo_runtime::KafkaSecurityArgs::client_settings`).
    pub security: Vec<(&'static str, String)>,
}

impl KafkaSettings {
    /// The librdkafka configuration: offsets committed only by the skeleton, a new group
    /// starts at the beginning, partition EOF is not an event.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("allow.auto.create.topics", "true")
            .set(
                "session.timeout.ms",
                self.session_timeout.as_millis().to_string(),
            );
        for (key, value) in &self.security {
            config.set(*key, value);
        }
        config
    }

    pub fn stream_consumer(&self) -> Result<StreamConsumer, KafkaError> {
        self.client_config().create()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_never_committed_automatically() {
        let settings = KafkaSettings {
            brokers: "127.0.0.1:9092".into(),
            group: "g".into(),
            topic: "t".into(),
            session_timeout: Duration::from_secs(6),
            batch_size: 1,
            security: Vec::new(),
            batch_wait: Duration::ZERO,
        };
        let config = settings.client_config();
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        assert_eq!(config.get("auto.offset.reset"), Some("earliest"));
        assert_eq!(config.get("session.timeout.ms"), Some("6000"));
        assert_eq!(config.get("group.id"), Some("g"));
    }
}
