//! Topics with a unique prefix per test, and plain producers/consumers to feed and read them.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use silo_protocol::{IngestMessage, topics};

use silo_testkit::{Services, unique_suffix};

/// Partitions of every test topic (the services script uses the same number).
pub const PARTITIONS: i32 = 4;

/// A topic prefix unique to one test, with its three topics created.
pub struct Topics {
    pub prefix: String,
}

impl Topics {
    pub async fn create(services: &Services, tag: &str) -> Self {
        let prefix = format!("t{}-{tag}.", unique_suffix());
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &services.kafka_brokers)
            .create()
            .unwrap_or_else(|e| panic!("cannot create a Kafka admin client: {e}"));
        let names: Vec<String> = [topics::INGEST_EVENTS, topics::OUTCOMES, topics::EVENTS]
            .iter()
            .map(|t| topics::prefixed(&prefix, t))
            .collect();
        let new: Vec<NewTopic<'_>> = names
            .iter()
            .map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let results = admin.create_topics(&new, &opts).await.unwrap_or_else(|e| {
            panic!(
                "cannot create Kafka topics at {}: {e}; start Kafka with e2e/services/up.sh",
                services.kafka_brokers
            )
        });
        for r in results {
            if let Err((topic, code)) = r {
                panic!("creating topic {topic} failed: {code}");
            }
        }
        Topics { prefix }
    }

    pub fn name(&self, topic: &str) -> String {
        topics::prefixed(&self.prefix, topic)
    }
}

pub fn producer(services: &Services) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", &services.kafka_brokers)
        .set("linger.ms", "1")
        .create()
        .unwrap_or_else(|e| panic!("cannot create a Kafka producer: {e}"))
}

/// Produce one message keyed by project, as relay does; panics if Kafka does not acknowledge.
pub async fn send_ingest(producer: &FutureProducer, topic: &str, msg: &IngestMessage) {
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let key = msg.project_id.to_string();
    producer
        .send(
            FutureRecord::to(topic).key(&key).payload(&body),
            Timeout::After(Duration::from_secs(30)),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("producing to {topic} failed: {e}"));
}

/// A consumer of `topic` from the beginning, in its own group.
pub fn reader(services: &Services, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &services.kafka_brokers)
        .set("group.id", format!("reader-{}", unique_suffix()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap_or_else(|e| panic!("cannot create a Kafka consumer: {e}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("cannot subscribe to {topic}: {e}"));
    consumer
}
