//! The workloads' Kafka clients over TLS and SASL, against the loopback broker's SASL_SSL
//! listener (`e2e/services/up.sh`): settings from `KafkaSecurityArgs` (the `KAFKA_*` variables
//! the operator writes for an external Kafka), a record produced and consumed back with every
//! SASL mechanism, and a wrong password or a foreign CA refused.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext};
use silo_kafka_consumer::KafkaSettings;
use silo_runtime::KafkaSecurityArgs;
use silo_runtime::kafka_security::{SaslMechanism, SecurityProtocol};
use silo_testkit::{KafkaSaslSsl, unique_suffix};

fn security(
    listener: &KafkaSaslSsl,
    mechanism: SaslMechanism,
    password: &str,
) -> Vec<(&'static str, String)> {
    KafkaSecurityArgs {
        kafka_security_protocol: Some(SecurityProtocol::SaslSsl),
        kafka_sasl_mechanism: Some(mechanism),
        kafka_sasl_username: Some(listener.username.clone()),
        kafka_sasl_password: Some(password.to_owned()),
        kafka_ssl_ca_location: Some(listener.ca_file.clone()),
    }
    .client_settings()
    .expect("complete settings")
}

fn producer(brokers: &str, security: &[(&'static str, String)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000");
    for (key, value) in security {
        config.set(*key, value);
    }
    config.create().expect("a producer")
}

#[tokio::test]
async fn every_sasl_mechanism_produces_and_consumes_over_tls() {
    let listener = KafkaSaslSsl::get();
    for mechanism in [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ] {
        let security = security(&listener, mechanism, &listener.password);
        let topic = format!("sasl-{}", unique_suffix());
        let payload = format!("{mechanism:?} over TLS");
        producer(&listener.brokers, &security)
            .send(
                FutureRecord::to(&topic).key("k").payload(&payload),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{mechanism:?}: produce over SASL_SSL: {e}"));
        // The consumer skeleton's own configuration, with the same settings.
        let consumer = KafkaSettings {
            brokers: listener.brokers.clone(),
            group: format!("sasl-test-{}", unique_suffix()),
            topic: topic.clone(),
            session_timeout: Duration::from_secs(6),
            batch_size: 1,
            batch_wait: Duration::from_millis(10),
            security,
        }
        .stream_consumer()
        .expect("a consumer");
        consumer.subscribe(&[&topic]).expect("subscribe");
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{mechanism:?}: no record within 30 s"))
            .unwrap_or_else(|e| panic!("{mechanism:?}: consume over SASL_SSL: {e}"));
        assert_eq!(
            message.payload_view::<str>().and_then(Result::ok),
            Some(payload.as_str())
        );
    }
}

/// Records the client errors librdkafka reports (authentication, TLS handshake).
#[derive(Default)]
struct Errors(Mutex<Vec<String>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .expect("errors")
            .push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Errors {}

/// The client errors of a consumer with these settings (the skeleton's configuration) asking
/// for metadata, which must be refused.
fn refusal(brokers: &str, security: Vec<(&'static str, String)>) -> String {
    let consumer: BaseConsumer<Errors> = KafkaSettings {
        brokers: brokers.to_owned(),
        group: format!("sasl-refused-{}", unique_suffix()),
        topic: "unused".to_owned(),
        session_timeout: Duration::from_secs(6),
        batch_size: 1,
        batch_wait: Duration::from_millis(10),
        security,
    }
    .client_config()
    .create_with_context(Errors::default())
    .expect("a consumer");
    let served = consumer.fetch_metadata(None, Duration::from_secs(10));
    assert!(
        served.is_err(),
        "metadata was served to a client that should be refused"
    );
    // Client errors are delivered while the consumer is polled.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = consumer.poll(Duration::from_millis(200));
        let errors = consumer.context().0.lock().expect("errors").join("; ");
        if !errors.is_empty() || Instant::now() > deadline {
            return errors;
        }
    }
}

#[test]
fn a_wrong_password_or_a_foreign_ca_is_refused() {
    let listener = KafkaSaslSsl::get();
    let wrong = security(&listener, SaslMechanism::ScramSha512, "not-the-password");
    let refused = refusal(&listener.brokers, wrong);
    assert!(refused.contains("Authentication failed"), "{refused}");
    // The system's roots do not know the listener's CA: the TLS handshake fails.
    let mut untrusted = security(&listener, SaslMechanism::Plain, &listener.password);
    untrusted.retain(|(key, _)| *key != "ssl.ca.location");
    let untrusted = refusal(&listener.brokers, untrusted);
    assert!(
        untrusted.contains("certificate verify failed"),
        "{untrusted}"
    );
    println!("refused: wrong password: {refused}\nunknown CA: {untrusted}");
}
