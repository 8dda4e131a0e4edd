//! Kafka topic names (a region may prefix them, see [`prefixed`]).

/// Events accepted by relay, consumed by the ingest consumers.
pub const INGEST_EVENTS: &str = "ingest-events";
/// Accepted/rejected counts from relay.
pub const OUTCOMES: &str = "outcomes";
/// The eventstream: stored events, consumed by postprocess.
pub const EVENTS: &str = "events";

/// `topic` with an optional prefix (`"de."` + `"ingest-events"`), for regions sharing a broker.
pub fn prefixed(prefix: &str, topic: &str) -> String {
    format!("{prefix}{topic}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefixing() {
        assert_eq!(super::prefixed("", super::EVENTS), "events");
        assert_eq!(super::prefixed("de.", super::EVENTS), "de.events");
    }
}
