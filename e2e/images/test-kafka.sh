#!/usr/bin/env bash
# Runs the kafka test image without a container runtime (root only): unpacks the archive's
# layers, then starts the image's entrypoint under chroot in its own PID, mount, UTS (hostname
# kafka-0) and network namespaces (only a loopback interface, so the broker listens on 9092/9093
# as in a pod and nothing leaves the machine), with the image's Env and WorkingDir, the environment the operator
# sets, an /etc/hosts naming the pod as the kubelet's does, and a root-owned 0750 data directory
# (what the test cluster's hostPath volumes look like) at /var/lib/kafka/data. It checks that
#   - started as root, the entrypoint gives the directory to appuser (1000:1000), formats it with
#     CLUSTER_ID and exec's the broker as appuser (PID 1), configured from the KAFKA_* variables
#     (the broker's own dump of its configuration), with KAFKA_HEAP_OPTS as JVM options;
#   - /opt/kafka/bin/kafka-topics.sh creates topics (--create --if-not-exists, twice), lists and
#     describes them, as appuser and as a user the image does not know (65532);
#   - one record produced with kafka-console-producer.sh comes back from kafka-console-consumer.sh;
#   - SIGTERM gives a clean broker shutdown within 30 s;
#   - a second start, as the image's USER, on the same directory does not format again, keeps
#     the cluster id, the topics and the record, and stops cleanly again;
#   - without CLUSTER_ID, or as appuser on a directory it cannot write, the entrypoint fails at
#     once with a clear message; other commands run as they are.
# Reports the broker's start-to-ready time, its RSS and the topic tool's run time.
#
#   e2e/images/test-kafka.sh [ARCHIVE]   (default: the one e2e/images/build.sh kafka wrote)
set -euo pipefail

NS=silo-image-test
POD_FQDN="kafka-0.kafka-headless.$NS.svc"
READY_TIMEOUT="${SILO_KAFKA_TEST_READY_TIMEOUT:-120}"
TEST_TAG=kafka-test
# shellcheck source=e2e/images/test-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"

require_root
require_tools unshare nsenter ip pgrep python3
find_archive kafka "${1:-}"
# SILO_KAFKA_TEST_LOGS=DIR keeps the broker and tool logs there.
make_workdir silo-kafka-test SILO_KAFKA_TEST_LOGS

log "unpacking $archive"
unpack_image "$archive" "$work"
log "image user $user, workdir $workdir, ports $ports, entrypoint ${entrypoint[*]} ${cmd[*]}"
[[ "$user" == 1000:1000 ]] || die "image USER is $user, expected 1000:1000 (appuser)"
[[ "$ports" == "9092/tcp 9093/tcp" ]] || die "exposed ports $ports, expected 9092/tcp 9093/tcp"
[[ -x "$root/opt/kafka/bin/kafka-topics.sh" ]] || die "no /opt/kafka/bin/kafka-topics.sh"
[[ "$(grep '^appuser:' "$root/etc/passwd" | cut -d: -f3,4)" == 1000:1000 ]] || die "no appuser 1000:1000"

setup_dev fd shm
mount_volume "$work/hostpath" 0750 "$root/var/lib/kafka/data"
# What the kubelet writes for a StatefulSet pod with a headless service (pod IP -> its names).
printf '%s\n' "127.0.0.1 localhost" "::1 localhost ip6-localhost ip6-loopback" \
    "127.0.0.1 $POD_FQDN.cluster.local $POD_FQDN kafka-0" >"$root/etc/hosts"

# 16 random bytes in base64url, the first character "-" (an id that looks like an option).
cluster_id="$(python3 -c 'import base64, os; b = bytearray(os.urandom(16)); b[0] = 0xf8 | (b[0] & 3); print(base64.urlsafe_b64encode(bytes(b)).decode().rstrip("="))')"
# shellcheck disable=SC2054 # commas inside the values
operator_env=(
    KAFKA_NODE_ID=1
    KAFKA_PROCESS_ROLES=broker,controller
    KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093
    "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://$POD_FQDN:9092"
    KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER
    KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
    KAFKA_CONTROLLER_QUORUM_VOTERS=1@localhost:9093
    KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1
    KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1
    KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1
    KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0
    KAFKA_NUM_PARTITIONS=4
    KAFKA_LOG_DIRS=/var/lib/kafka/data
    KAFKA_AUTO_CREATE_TOPICS_ENABLE=false
    "CLUSTER_ID=$cluster_id"
    "KAFKA_HEAP_OPTS=-Xms256m -Xmx256m"
)
# Not from the operator: the name conversion's double and triple underscores, and what
# Kubernetes would define for a Service named kafka (no properties).
extra_env=(KAFKA_SILO___TEST__KEY_NAME=x KAFKA_PORT=tcp://10.96.0.10:9092 KAFKA_SERVICE_HOST=10.96.0.10)
env_args=(env -i "${image_env[@]}" HOME=/home/appuser)

# start LOG USER: the entrypoint as PID 1 of new PID, mount and network namespaces; waits until
# the broker logs that it started and accepts connections on 9092. Sets READY (seconds).
pid1="" READY=""
start() {
    local logfile="$1" as="$2" started
    started="$(now_s)"
    # shellcheck disable=SC2016 # expanded by the namespace's shell
    unshare --pid --net --uts --fork --mount-proc="$root/proc" --kill-child \
        sh -c 'ip link set lo up && hostname kafka-0 && exec "$@"' sh \
        chroot --userspec="$as" "$root" "${env_args[@]}" "${operator_env[@]}" "${extra_env[@]}" \
        --chdir="$workdir" "${entrypoint[@]}" "${cmd[@]}" >"$logfile" 2>&1 &
    server_pid=$!
    local deadline=$((SECONDS + READY_TIMEOUT))
    pid1=""
    while ((SECONDS < deadline)); do
        kill -0 "$server_pid" 2>/dev/null || { tail -n 40 "$logfile" >&2; die "the broker exited during start (log above)"; }
        [[ -n "$pid1" ]] || pid1="$(pgrep -P "$server_pid" || true)"
        if [[ -n "$pid1" ]] && grep -q 'Kafka Server started' "$logfile" &&
            in_ns_as "$user" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9092' 2>/dev/null; then
            READY="$(since "$started" 1)"
            log "broker ready in $READY s (log: 'Kafka Server started', 9092 accepts)"
            return 0
        fi
        sleep 0.2
    done
    tail -n 40 "$logfile" >&2
    die "the broker was not ready after $READY_TIMEOUT s"
}

# in_ns_as USER CMD...: CMD in the broker's namespaces, under the image's root, as USER, with
# the image's Env only (what a Job's container of this image gets).
in_ns_as() {
    local as="$1"
    shift
    nsenter -t "$pid1" -n -m -p -u -- chroot --userspec="$as" "$root" "${env_args[@]}" --chdir="$workdir" "$@"
}
# topics USER ARGS...: kafka-topics.sh against the pod's bootstrap address; prints its run time.
TOOL_SECONDS=""
topics() {
    local as="$1" started
    shift
    started="$(now_s)"
    in_ns_as "$as" /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$POD_FQDN:9092" "$@"
    TOOL_SECONDS="$(since "$started" 1)"
}

# stop LOG: SIGTERM to the namespace's PID 1 (the JVM), as the kubelet sends it; at most 30 s.
stop() {
    local logfile="$1" started status=0
    started="$(now_s)"
    kill -TERM "$pid1"
    local deadline=$((SECONDS + 30))
    while kill -0 "$server_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -0 "$server_pid" 2>/dev/null && { tail -n 40 "$logfile" >&2; die "the broker still runs 30 s after SIGTERM"; }
    wait "$server_pid" || status=$?
    server_pid=""
    log "stopped in $(since "$started" 1) s after SIGTERM (exit $status)"
    # The JVM exits with 128+15 when SIGTERM started its shutdown (Kafka's shutdown hook ran).
    ((status == 143 || status == 0)) || { tail -n 40 "$logfile" >&2; die "exit status $status after SIGTERM"; }
    grep -q 'BrokerServer id=1\] shut down completed' "$logfile" || { tail -n 40 "$logfile" >&2; die "no completed broker shutdown in the log"; }
    # (A controller that is still loading its log refuses the broker's first registration with a
    # logged, retried NotControllerException: errors as such are no failure, fatal faults are.)
    if grep -E ' FATAL |Encountered fatal fault' "$logfile" >&2; then die "fatal faults in the broker log (above)"; fi
    [[ -f "$work/hostpath/.kafka_cleanshutdown" ]] || die "no .kafka_cleanshutdown marker in the data directory"
}

log "first start as root on a root-owned 0750 directory (cluster $cluster_id)"
start "$work/first.log" 0:0
first_ready="$READY"
uid="$(awk '/^Uid:/ { print $2 }' "/proc/$pid1/status")"
[[ "$uid" == 1000 && "$(cat "/proc/$pid1/comm")" == java ]] || die "PID 1 is $(cat "/proc/$pid1/comm") as uid $uid, expected java as 1000"
[[ "$(stat -c %u:%g "$work/hostpath")" == 1000:1000 ]] || die "data directory not given to 1000:1000"
grep -q "cluster.id=$cluster_id" "$work/hostpath/meta.properties" || die "meta.properties does not hold CLUSTER_ID"
grep -q 'formatting /var/lib/kafka/data' "$work/first.log" || die "no storage format on the first start"
tr '\0' '\n' <"/proc/$pid1/cmdline" | grep -qx -- -Xmx256m || die "KAFKA_HEAP_OPTS not on the JVM's command line"
for setting in "node.id = 1" "process.roles = \[broker, controller\]" "num.partitions = 4" \
    "auto.create.topics.enable = false" "log.dirs = /var/lib/kafka/data" \
    "group.initial.rebalance.delay.ms = 0" "controller.quorum.voters = \[1@localhost:9093\]" \
    "advertised.listeners = PLAINTEXT://$POD_FQDN:9092" "transaction.state.log.min.isr = 1"; do
    grep -q "^	$setting\$" "$work/first.log" || die "the broker's configuration has no '$setting'"
done
props="$root/var/lib/kafka/server.properties"
grep -qx 'silo-test_key.name=x' "$props" || die "KAFKA_SILO___TEST__KEY_NAME did not become silo-test_key.name"
if grep -E '^(heap\.opts|port|service\.host)=' "$props"; then die "JVM or service-link variables became properties"; fi
log "PID 1 is java as 1000, data directory 1000:1000 and formatted for CLUSTER_ID, configuration from the environment"

topics "$user" --create --if-not-exists --topic ingest-events --partitions 4 --replication-factor 1 >"$work/topics.log" 2>&1 ||
    { cat "$work/topics.log" >&2; die "kafka-topics.sh --create failed as appuser"; }
create_seconds="$TOOL_SECONDS"
topics 65532:65532 --create --if-not-exists --topic outcomes --partitions 4 --replication-factor 1 >>"$work/topics.log" 2>&1 ||
    { cat "$work/topics.log" >&2; die "kafka-topics.sh --create failed as uid 65532"; }
topics "$user" --create --if-not-exists --topic ingest-events --partitions 4 --replication-factor 1 >>"$work/topics.log" 2>&1 ||
    { cat "$work/topics.log" >&2; die "kafka-topics.sh --create --if-not-exists failed for an existing topic"; }
list="$(topics 65532:65532 --list 2>"$work/list.log")" || { cat "$work/list.log" >&2; die "kafka-topics.sh --list failed"; }
list_seconds="$TOOL_SECONDS"
[[ "$(grep -v '^__' <<<"$list" | sort | tr '\n' ' ')" == "ingest-events outcomes " ]] || die "topics listed: $list"
describe="$(topics "$user" --describe --topic ingest-events 2>&1)" || die "kafka-topics.sh --describe failed: $describe"
grep -q 'PartitionCount: 4' <<<"$describe" || die "ingest-events has not 4 partitions: $describe"
[[ ! -s "$work/list.log" ]] || { cat "$work/list.log" >&2; die "kafka-topics.sh --list wrote to stderr (only warnings should)"; }
log "kafka-topics.sh: created (again with --if-not-exists), listed and described as 1000 and 65532; create ${create_seconds} s, list ${list_seconds} s"

record="silo-record-$(date +%s%N)"
printf '%s\n' "$record" | in_ns_as "$user" /opt/kafka/bin/kafka-console-producer.sh \
    --bootstrap-server "$POD_FQDN:9092" --topic ingest-events >"$work/producer.log" 2>&1 ||
    { cat "$work/producer.log" >&2; die "kafka-console-producer.sh failed"; }
# consume LOG: the first record of ingest-events (at most 60 s).
consume() {
    in_ns_as "$user" /opt/kafka/bin/kafka-console-consumer.sh --bootstrap-server "$POD_FQDN:9092" \
        --topic ingest-events --from-beginning --max-messages 1 --timeout-ms 60000 2>"$1"
}
got="$(consume "$work/consumer.log")" || { cat "$work/consumer.log" >&2; die "kafka-console-consumer.sh failed"; }
[[ "$got" == "$record" ]] || { cat "$work/consumer.log" >&2; die "consumed '$got', produced '$record'"; }
rss_kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid1/status")"
log "produced and consumed $record; broker RSS $((rss_kb / 1024)) MB"
stop "$work/first.log"

log "second start as the image's user on the same directory"
start "$work/second.log" "$user"
second_ready="$READY"
if grep -q 'formatting' "$work/second.log"; then die "formatted again on restart"; fi
grep -q 'since clean shutdown file was found' "$work/second.log" ||
    { grep -E 'LogManager' "$work/second.log" | head -n 5 >&2; die "the restart did not find a clean shutdown (above)"; }
grep -q "cluster.id=$cluster_id" "$work/hostpath/meta.properties" || die "cluster id changed"
list="$(topics "$user" --list 2>&1)" || die "kafka-topics.sh --list failed after the restart: $list"
[[ "$(grep -v '^__' <<<"$list" | sort | tr '\n' ' ')" == "ingest-events outcomes " ]] || die "topics after the restart: $list"
got="$(consume "$work/consumer2.log")" || { cat "$work/consumer2.log" >&2; die "kafka-console-consumer.sh failed after the restart"; }
[[ "$got" == "$record" ]] || die "after the restart consumed '$got', expected '$record'"
log "topics and record kept"
stop "$work/second.log"

# once ARGS...: the entrypoint with ARGS and the image's Env only, in its own PID namespace.
once() {
    unshare --pid --fork --mount-proc="$root/proc" --kill-child \
        chroot --userspec="$user" "$root" env -i "${image_env[@]}" --chdir="$workdir" "${entrypoint[@]}" "$@"
}
status=0
out="$(once 2>&1)" || status=$?
if ((status == 0)) || [[ "$out" != *"CLUSTER_ID is not set"* ]]; then die "without CLUSTER_ID: exit $status, $out"; fi
version="$(once kafka-topics.sh --version 2>&1)" || die "kafka-topics.sh --version through the entrypoint failed: $version"
[[ "$version" == 4.1.1* ]] || die "kafka-topics.sh --version through the entrypoint: $version"
log "without CLUSTER_ID: '$out'; other commands run as they are (kafka-topics.sh --version: $version)"
umount "$root/var/lib/kafka/data"
mount_volume "$work/hostpath2" 0750 "$root/var/lib/kafka/data"
status=0
out="$(once env CLUSTER_ID="$cluster_id" /usr/local/bin/kafka-entrypoint 2>&1)" || status=$?
if ((status == 0)) || [[ "$out" != *"is not writable by uid 1000"* ]]; then
    die "as appuser on a root-owned 0750 directory: exit $status, $out"
fi
log "as appuser on a root-owned 0750 directory: '$out'"
log "ok: ready in $first_ready s (first start, with format) and $second_ready s (restart); RSS $((rss_kb / 1024)) MB; kafka-topics.sh create $create_seconds s"
