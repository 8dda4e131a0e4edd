#!/bin/bash
# Entrypoint of the end-to-end test image silo.local/kafka:4.1.1 (built by e2e/images/build.sh),
# configured from the environment like the official apache/kafka image (a subset of it):
#
#   kafka-entrypoint              format the storage if needed, run the broker in the foreground
#   kafka-entrypoint COMMAND...   run COMMAND as it is (kafka-topics.sh, bash, ...)
#
# Every KAFKA_<NAME> variable becomes the server property <name>: lowercased, `___` -> `-`,
# `__` -> `_`, `_` -> `.` (KAFKA_NODE_ID=1 -> node.id=1), except
#   KAFKA_HEAP_OPTS              JVM heap (default -Xms256m -Xmx256m)
#   KAFKA_JVM_PERFORMANCE_OPTS   JVM options (default G1, as Kafka's scripts)
#   KAFKA_GC_LOG_OPTS, KAFKA_JMX_OPTS, KAFKA_OPTS   more JVM options (default none)
#   KAFKA_LOG4J_OPTS             default -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties
#   KAFKA_LOG4J_ROOT_LOGLEVEL    root log level of the broker (default INFO); logs go to stdout
#   KAFKA_TOOLS_LOG4J_LOGLEVEL, KAFKA_VERSION, KAFKA_HOME
#   KAFKA_PORT, KAFKA_PORT_*, KAFKA_SERVICE_HOST, KAFKA_SERVICE_PORT*   (Kubernetes defines these
#                                for a Service named kafka; they are no Kafka properties)
# CLUSTER_ID (required) formats every directory of log.dirs (default /var/lib/kafka/data) and
# metadata.log.dir that has no meta.properties yet; formatted storage is used as it is.
#
# Runs as appuser (1000:1000); started as root it creates those directories, gives them (and
# whatever in them is not appuser's) to appuser and drops to it. The broker is exec'd: SIGTERM
# makes it shut down cleanly (the JVM's exit status is then 143).
set -euo pipefail

KAFKA_HOME=/opt/kafka

log() { printf 'kafka-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ $# -gt 0 ]]; then
    exec "$@"
fi

[[ -n "${CLUSTER_ID:-}" ]] ||
    die "CLUSTER_ID is not set (the KRaft cluster id, 22 characters of base64url; one from: kafka-storage.sh random-uuid)"

log_dirs="${KAFKA_LOG_DIRS:-/var/lib/kafka/data}"
dirs=()
IFS=, read -r -a dirs <<<"$log_dirs"
[[ -z "${KAFKA_METADATA_LOG_DIR:-}" ]] || dirs+=("$KAFKA_METADATA_LOG_DIR")

if [[ "$(id -u)" == 0 ]]; then
    for dir in "${dirs[@]}"; do
        mkdir -p "$dir"
        find "$dir" \! -user appuser -exec chown appuser:appuser {} +
    done
    exec setpriv --reuid=appuser --regid=appuser --init-groups -- "$0"
fi
for dir in "${dirs[@]}"; do
    if ! mkdir -p "$dir" 2>/dev/null || [[ ! -w "$dir" ]]; then
        die "$dir is not writable by uid $(id -u) (it is $(stat -c %U:%G "$dir" 2>/dev/null || echo missing), mode $(stat -c %a "$dir" 2>/dev/null || echo -)): start the container as root to have it given to appuser, or make the volume writable for uid $(id -u)"
    fi
done

excluded() {
    case "$1" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_GC_LOG_OPTS | KAFKA_JMX_OPTS) ;;
    KAFKA_LOG4J_ROOT_LOGLEVEL | KAFKA_TOOLS_LOG4J_LOGLEVEL | KAFKA_VERSION | KAFKA_HOME) ;;
    KAFKA_PORT | KAFKA_PORT_[0-9]* | KAFKA_SERVICE_HOST | KAFKA_SERVICE_PORT | KAFKA_SERVICE_PORT_*) ;;
    *) return 1 ;;
    esac
}

# KAFKA_A_B__C___D -> a.b_c-d
property_name() {
    local name="${1#KAFKA_}"
    name="${name,,}"
    name="${name//___/-}"
    name="${name//__/$'\x01'}"
    name="${name//_/.}"
    printf '%s' "${name//$'\x01'/_}"
}

# The generated configuration: next to the data when this user may write there (the image's
# /var/lib/kafka is appuser's), else in a temporary directory.
config_dir=/var/lib/kafka
if [[ ! -w "$config_dir" ]]; then
    config_dir="$(mktemp -d "${TMPDIR:-/tmp}/kafka-config.XXXXXX")"
fi
config="$config_dir/server.properties"
{
    echo "# Written by kafka-entrypoint from the KAFKA_* environment variables."
    while read -r var; do
        if [[ "$var" != KAFKA_?* ]] || excluded "$var"; then continue; fi
        value="${!var}"
        value="${value//\\/\\\\}"
        value="${value//$'\n'/\\n}"
        printf '%s=%s\n' "$(property_name "$var")" "$value"
    done <<<"$(compgen -e | LC_ALL=C sort)"
    [[ -n "${KAFKA_LOG_DIRS:-}" ]] || echo "log.dirs=$log_dirs"
} >"$config.tmp"
mv "$config.tmp" "$config"
log "configuration $config from $(grep -c -v '^#' "$config") variables"

unformatted=()
for dir in "${dirs[@]}"; do
    [[ -f "$dir/meta.properties" ]] || unformatted+=("$dir")
done
if ((${#unformatted[@]} > 0)); then
    log "formatting ${unformatted[*]} for cluster $CLUSTER_ID"
    # --opt=value: a base64url id may begin with "-".
    env -u KAFKA_HEAP_OPTS -u KAFKA_JVM_PERFORMANCE_OPTS -u KAFKA_LOG4J_OPTS \
        "$KAFKA_HOME/bin/kafka-storage.sh" format --cluster-id="$CLUSTER_ID" --config="$config" \
        --ignore-formatted
else
    formatted="$(sed -n 's/^cluster\.id=//p' "${dirs[0]}/meta.properties")"
    [[ "$formatted" == "$CLUSTER_ID" ]] ||
        log "warning: ${dirs[0]} belongs to cluster $formatted, not CLUSTER_ID $CLUSTER_ID; the broker keeps $formatted"
fi

set -f # the *_OPTS are lists of words, as in Kafka's scripts
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx256m} \
    ${KAFKA_JVM_PERFORMANCE_OPTS:--server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true} \
    ${KAFKA_GC_LOG_OPTS:-} ${KAFKA_JMX_OPTS:-} \
    ${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=$KAFKA_HOME/config/log4j2.properties} \
    -Dkafka.log.level="${KAFKA_LOG4J_ROOT_LOGLEVEL:-INFO}" ${KAFKA_OPTS:-} \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$config"
