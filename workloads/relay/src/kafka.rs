//! The Kafka producer: idempotent, `acks=all`, short delivery timeout so a broker outage turns
//! into a 503 instead of a hanging request. A producer that hit a fatal error is replaced.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

use crate::metrics::RelayMetrics;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create the Kafka producer for {brokers}: {source}")]
    Create {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error("Kafka did not acknowledge the event within {timeout:?}: {source}")]
    Delivery {
        timeout: Duration,
        #[source]
        source: KafkaError,
    },
}

#[derive(Clone, Debug)]
pub struct KafkaSettings {
    pub brokers: String,
    /// How long one event may wait for acknowledgement (librdkafka `message.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Batching delay (librdkafka `linger.ms`).
    pub linger: Duration,
    /// Topic prefix for regions sharing a broker.
    pub topic_prefix: String,
    /// TLS and SASL settings (`silo_runtime::KafkaSecurityArgs::client_settings`).
    pub security: Vec<(&'static str, String)>,
}

impl KafkaSettings {
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        let timeout_ms = self.delivery_timeout.as_millis().max(1).to_string();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "silo-relay")
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", &timeout_ms)
            .set("request.timeout.ms", &timeout_ms)
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            .set("queue.buffering.max.messages", "200000")
            .set("compression.type", "lz4");
        for (key, value) in &self.security {
            config.set(*key, value);
        }
        config
    }
}

pub struct EventProducer {
    settings: KafkaSettings,
    producer: RwLock<FutureProducer>,
    pub ingest_topic: String,
    pub outcomes_topic: String,
    metrics: Arc<RelayMetrics>,
}

impl EventProducer {
    pub fn new(settings: KafkaSettings, metrics: Arc<RelayMetrics>) -> Result<Self, ProduceError> {
        let producer = create(&settings)?;
        Ok(Self {
            ingest_topic: silo_protocol::topics::prefixed(
                &settings.topic_prefix,
                silo_protocol::topics::INGEST_EVENTS,
            ),
            outcomes_topic: silo_protocol::topics::prefixed(
                &settings.topic_prefix,
                silo_protocol::topics::OUTCOMES,
            ),
            settings,
            producer: RwLock::new(producer),
            metrics,
        })
    }

    fn current(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Produce one message and wait for the broker's acknowledgement.
    pub async fn send(&self, topic: &str, key: &str, payload: &[u8]) -> Result<(), ProduceError> {
        let producer = self.current();
        let started = Instant::now();
        let record = FutureRecord::to(topic).key(key).payload(payload);
        let timeout = self.settings.delivery_timeout;
        match producer.send(record, Timeout::After(timeout)).await {
            Ok(_) => {
                self.metrics
                    .produce_latency
                    .observe(started.elapsed().as_secs_f64());
                Ok(())
            }
            Err((source, _)) => {
                self.metrics.kafka_errors.inc();
                self.replace_if_fatal(&producer);
                Err(ProduceError::Delivery { timeout, source })
            }
        }
    }

    /// A producer with a fatal error (e.g. an idempotence sequence it cannot repair) never
    /// recovers; swap in a fresh one so the next request can succeed.
    fn replace_if_fatal(&self, failed: &FutureProducer) {
        let Some((code, reason)) = failed.client().fatal_error() else {
            return;
        };
        tracing::error!(?code, %reason, "Kafka producer hit a fatal error; recreating it");
        match create(&self.settings) {
            Ok(fresh) => *self.producer.write().unwrap_or_else(|p| p.into_inner()) = fresh,
            Err(error) => tracing::error!(%error, "cannot recreate the Kafka producer"),
        }
    }

    /// Whether the broker answers a metadata request for the ingest topic (blocking).
    pub fn probe(&self, timeout: Duration) -> bool {
        self.current()
            .client()
            .fetch_metadata(Some(&self.ingest_topic), Timeout::After(timeout))
            .is_ok()
    }

    /// Wait for every queued message to be delivered (blocking).
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.current().flush(Timeout::After(timeout)) {
            tracing::warn!(%error, "Kafka producer flush incomplete at shutdown");
        }
    }
}

fn create(settings: &KafkaSettings) -> Result<FutureProducer, ProduceError> {
    settings
        .client_config()
        .create()
        .map_err(|source| ProduceError::Create {
            brokers: settings.brokers.clone(),
            source,
        })
}
