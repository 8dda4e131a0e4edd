#!/bin/bash
# Kafka's command-line tools in silo.local/kafka:4.1.1 (build.sh installs this as
# /opt/kafka/bin/kafka-run-class.sh, the other names are links to it):
#
#   kafka-run-class.sh CLASS [ARGS...]
#   kafka-topics.sh | kafka-storage.sh | kafka-console-producer.sh | kafka-console-consumer.sh |
#   kafka-consumer-groups.sh | kafka-metadata-quorum.sh  [ARGS...]   (as Kafka's own scripts)
#
# Short-lived JVMs that start quickly for any user: C1 only, serial GC, no perf data file,
# KAFKA_HEAP_OPTS (default -Xmx128m), KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_LOG4J_OPTS and KAFKA_OPTS
# as in Kafka's scripts; log messages at KAFKA_TOOLS_LOG4J_LOGLEVEL (default WARN) go to stderr.
set -euo pipefail

KAFKA_HOME=/opt/kafka

case "$(basename "$0")" in
kafka-topics.sh) class=org.apache.kafka.tools.TopicCommand ;;
kafka-storage.sh) class=kafka.tools.StorageTool ;;
kafka-console-producer.sh) class=org.apache.kafka.tools.ConsoleProducer ;;
kafka-console-consumer.sh) class=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
kafka-consumer-groups.sh) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
kafka-metadata-quorum.sh) class=org.apache.kafka.tools.MetadataQuorumCommand ;;
*)
    [[ $# -gt 0 ]] || { echo "usage: kafka-run-class.sh CLASS [ARGS...]" >&2; exit 2; }
    class="$1"
    shift
    ;;
esac

set -f # the *_OPTS are lists of words
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx128m} \
    ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:-UsePerfData -Djava.awt.headless=true} \
    ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$KAFKA_HOME/config/log4j2.properties} \
    -Dkafka.log.level="${KAFKA_TOOLS_LOG4J_LOGLEVEL:-WARN}" -Dkafka.log.target=SYSTEM_ERR \
    ${KAFKA_OPTS:-} -cp "$KAFKA_HOME/libs/*" "$class" "$@"
