# shellcheck shell=bash
# Shared definitions for the loopback data services (PostgreSQL, Redis, Kafka).
# Sourced by up.sh, down.sh and ctl.sh; defines functions only, starts nothing.

set -euo pipefail

SILO_STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"
SILO_CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"
SVC="$SILO_STATE/services"
LOGS="$SVC/logs"
ENV_FILE="$SVC/env"

PG_PORT="${SILO_PG_PORT:-15432}"
REDIS_PORT="${SILO_REDIS_PORT:-16379}"
KAFKA_PORT="${SILO_KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${SILO_KAFKA_CONTROLLER_PORT:-19093}"
# A second listener, SASL_SSL (PLAIN and SCRAM users, a certificate from a CA of its own), for
# the clients' TLS and SASL tests.
KAFKA_SASL_PORT="${SILO_KAFKA_SASL_PORT:-19094}"
KAFKA_SASL_USER=silo
KAFKA_VERSION="${SILO_KAFKA_VERSION:-4.1.1}"
KAFKA_HEAP="${SILO_KAFKA_HEAP:--Xms256m -Xmx1g}"
# Extra JVM options of the broker (e.g. Kafka's own "-XX:+UseG1GC -XX:MaxGCPauseMillis=20");
# none by default: at the pipeline benchmark's load they did not change its latency. GC
# pauses are logged beside the broker's log (kafka-gc.log) either way.
KAFKA_JVM_OPTS="${SILO_KAFKA_JVM_OPTS:-}"
KAFKA_TOPICS="${SILO_KAFKA_TOPICS:-ingest-events outcomes events}"
KAFKA_PARTITIONS="${SILO_KAFKA_PARTITIONS:-4}"
START_TIMEOUT="${SILO_SERVICES_START_TIMEOUT:-120}"

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/$PG_MAJOR/bin"
KAFKA_LIBS="$SILO_CACHE/kafka/$KAFKA_VERSION/libs"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# PostgreSQL refuses to run as root and the postgres system user cannot read under /root, so as
# root the cluster lives in a directory of its own under /var/tmp, keyed by uid and state dir.
pg_run_dir() {
  if is_root; then
    local key
    key="$(printf '%s' "$SVC" | sha256sum | cut -c1-10)"
    printf '/var/tmp/silo-pg-%s-%s' "$(id -u)" "$key"
  else
    printf '%s/postgres' "$SVC"
  fi
}
PG_RUN="$(pg_run_dir)"
PG_DATA="$PG_RUN/data"
PG_LOG="$PG_RUN/postgres.log"

as_pg() {
  if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_free <component> <port> <variable>: fails with a hint when something else listens there.
port_free() {
  if port_open "$2"; then
    log "$1: 127.0.0.1:$2 is already in use by another process; stop it or pick another port with $3"
    return 1
  fi
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_until <component> <logfile> <description> <command...>: polls until the command succeeds or
# START_TIMEOUT seconds pass.
wait_until() {
  local component="$1" logfile="$2" what="$3"
  shift 3
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ -n "${WAIT_PIDFILE:-}" ] && ! pid_alive "$WAIT_PIDFILE"; then
      log "$component: process exited before it was $what; last lines of $logfile:"
      tail -n 20 "$logfile" >&2 2>/dev/null || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$component: not $what after ${START_TIMEOUT}s; last lines of $logfile:"
      tail -n 20 "$logfile" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

APT_UPDATED=0
apt_install() {
  is_root || die "missing packages: $*; install them with: sudo apt-get install -y $*"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    apt-get update -qq >"$LOGS/apt.log" 2>&1 || die "apt-get update failed; see $LOGS/apt.log"
    APT_UPDATED=1
  fi
  log "installing Debian packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$LOGS/apt.log" 2>&1 \
    || die "apt-get install $* failed; see $LOGS/apt.log"
}

ensure_packages() {
  local missing=()
  [ -x "$PG_BIN/postgres" ] || missing+=("postgresql-$PG_MAJOR")
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v redis-cli >/dev/null || missing+=(redis-tools)
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  # Building the workloads (librdkafka with TLS/SASL) and the TLS tests' certificates.
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  command -v openssl >/dev/null || missing+=(openssl)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# ---------------------------------------------------------------- PostgreSQL
pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres; }

pg_running() { [ -f "$PG_DATA/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

pg_start() {
  mkdir -p "$PG_RUN"
  if is_root; then chown postgres: "$PG_RUN"; chmod 700 "$PG_RUN"; fi
  if [ ! -f "$PG_DATA/PG_VERSION" ]; then
    log "postgres: initdb in $PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C >"$PG_RUN/initdb.log" 2>&1 \
      || { log "postgres: initdb failed; see $PG_RUN/initdb.log"; return 1; }
  fi
  if pg_running && pg_ready; then return 0; fi
  port_free postgres "$PG_PORT" SILO_PG_PORT || return 1
  log "postgres: starting on 127.0.0.1:$PG_PORT (log $PG_LOG)"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -s \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null 2>&1 9>&- || { log "postgres: pg_ctl start failed; see $PG_LOG"; return 1; }
  wait_until postgres "$PG_LOG" "accepting connections" pg_ready
}

pg_stop() {
  [ -f "$PG_DATA/postmaster.pid" ] || return 0
  log "postgres: stopping"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -s -m fast -w -t 60 stop >/dev/null 2>&1 || true
}

# ---------------------------------------------------------------- Redis
REDIS_DIR="$SVC/redis"
REDIS_PID="$REDIS_DIR/redis.pid"
REDIS_LOG="$LOGS/redis.log"

redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

redis_start() {
  if pid_alive "$REDIS_PID" && redis_ready; then return 0; fi
  mkdir -p "$REDIS_DIR"
  port_free redis "$REDIS_PORT" SILO_REDIS_PORT || return 1
  log "redis: starting on 127.0.0.1:$REDIS_PORT (log $REDIS_LOG)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --pidfile "$REDIS_PID" \
    --logfile "$REDIS_LOG" --dir "$REDIS_DIR" --save "60 1" --appendonly no 9>&- \
    || { log "redis: redis-server failed to start; see $REDIS_LOG"; return 1; }
  wait_until redis "$REDIS_LOG" "answering PING" redis_ready
}

redis_stop() {
  pid_alive "$REDIS_PID" || return 0
  log "redis: stopping"
  local pid
  pid="$(cat "$REDIS_PID")"
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$REDIS_PID"
}

# ---------------------------------------------------------------- Kafka
KAFKA_DIR="$SVC/kafka"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$LOGS/kafka.log"

kafka_resolve_jars() {
  [ -f "$KAFKA_LIBS/.complete" ] && return 0
  local work
  work="$(mktemp -d)"
  log "kafka: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central into $KAFKA_LIBS"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.silo.services</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- log4j2 binding for the slf4j 1.x API the broker uses -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  if ! mvn -B -q -f "$work/pom.xml" -Dmaven.repo.local="$SILO_CACHE/maven-repo" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >"$LOGS/kafka-maven.log" 2>&1; then
    rm -rf "$work"
    log "kafka: resolving jars failed; see $LOGS/kafka-maven.log"
    return 1
  fi
  rm -rf "$work"
  touch "$KAFKA_LIBS/.complete"
}

# Short-lived JVMs for the storage and topic tools.
kafka_java() { java -Xmx256m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2-tools.properties" -cp "$KAFKA_LIBS/*" "$@" 9>&-; }

# The SASL_SSL listener's CA, its certificate for 127.0.0.1 (key in PKCS#8, as Kafka reads
# PEM) and the SASL password, made once per state directory.
kafka_tls() {
  local dir="$KAFKA_DIR/tls"
  [ -s "$dir/server.pem" ] && [ -s "$dir/sasl-password" ] && return 0
  mkdir -p "$dir"
  (
    cd "$dir"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 -days 3650 -subj /CN=silo-services-ca "${ec[@]}" -keyout ca.key -out ca.crt \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
    openssl req -subj /CN=127.0.0.1 "${ec[@]}" -keyout server.key -out server.csr
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out server.crt
    openssl pkcs8 -topk8 -nocrypt -in server.key -out server.p8
    cat server.p8 server.crt >server.pem
    head -c 18 /dev/urandom | base64 | tr -d '/+=' >sasl-password
  ) >"$LOGS/kafka-tls.log" 2>&1 || { log "kafka: making the TLS certificate failed; see $LOGS/kafka-tls.log"; return 1; }
}

kafka_configure() {
  mkdir -p "$KAFKA_DIR/data"
  local password
  password="$(cat "$KAFKA_DIR/tls/sasl-password")"
  cat >"$KAFKA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_DIR/tls/server.pem
log.dirs=$KAFKA_DIR/data
num.partitions=$KAFKA_PARTITIONS
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
EOF
  cat >"$KAFKA_DIR/log4j2.properties" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
EOF
  sed -e 's/^rootLogger.level = info/rootLogger.level = warn/' -e 's/^logger.kafka.level = info/logger.kafka.level = warn/' \
    "$KAFKA_DIR/log4j2.properties" >"$KAFKA_DIR/log4j2-tools.properties"
}

kafka_format() {
  [ -f "$KAFKA_DIR/data/meta.properties" ] && return 0
  local cluster_id
  # A KRaft id is 16 random bytes in base64url; one starting with '-' would read as an option.
  cluster_id=-
  while [ "${cluster_id#-}" != "$cluster_id" ]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  done
  log "kafka: formatting storage (cluster $cluster_id)"
  kafka_java kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$KAFKA_DIR/server.properties" \
    >>"$KAFKA_LOG" 2>&1 || { log "kafka: storage format failed; see $KAFKA_LOG"; return 1; }
}

# The broker logs this line once it serves requests (port binding alone happens earlier).
kafka_started_since() { tail -c +"$1" "$KAFKA_LOG" 2>/dev/null | grep -q 'Kafka Server started'; }

kafka_ready() { pid_alive "$KAFKA_PID" && port_open "$KAFKA_PORT" && port_open "$KAFKA_SASL_PORT"; }

# The SCRAM credentials of the SASL user (stored in the cluster metadata, so once per data dir).
kafka_scram_users() {
  [ -f "$KAFKA_DIR/scram.done" ] && return 0
  local password
  password="$(cat "$KAFKA_DIR/tls/sasl-password")"
  local mechanism
  # One mechanism per request: the broker refuses two changes of one user's credentials at once.
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    kafka_java kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --alter \
      --entity-type users --entity-name "$KAFKA_SASL_USER" --add-config "$mechanism=[password=$password]" \
      >>"$KAFKA_LOG" 2>&1 || { log "kafka: adding the $mechanism user failed; see $KAFKA_LOG"; return 1; }
  done
  touch "$KAFKA_DIR/scram.done"
}

kafka_start() {
  if kafka_ready; then kafka_scram_users; return; fi
  if pid_alive "$KAFKA_PID" && port_open "$KAFKA_PORT"; then
    log "kafka: restarting a broker started without the SASL_SSL listener"
    kafka_stop
  fi
  port_free kafka "$KAFKA_PORT" SILO_KAFKA_PORT || return 1
  port_free kafka "$KAFKA_CONTROLLER_PORT" SILO_KAFKA_CONTROLLER_PORT || return 1
  port_free kafka "$KAFKA_SASL_PORT" SILO_KAFKA_SASL_PORT || return 1
  mkdir -p "$KAFKA_DIR" "$LOGS"
  kafka_resolve_jars || return 1
  kafka_tls || return 1
  kafka_configure
  kafka_format || return 1
  touch "$KAFKA_LOG"
  local offset
  offset=$(($(stat -c %s "$KAFKA_LOG") + 1))
  log "kafka: starting $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (log $KAFKA_LOG)"
  # shellcheck disable=SC2086 # the option lists are split on purpose
  setsid java $KAFKA_HEAP $KAFKA_JVM_OPTS -Xlog:gc:file="${KAFKA_LOG%.log}-gc.log":uptime -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$KAFKA_DIR/server.properties" >>"$KAFKA_LOG" 2>&1 </dev/null 9>&- &
  echo $! >"$KAFKA_PID"
  WAIT_PIDFILE="$KAFKA_PID" wait_until kafka "$KAFKA_LOG" "started" kafka_started_since "$offset" || return 1
  WAIT_PIDFILE="$KAFKA_PID" wait_until kafka "$KAFKA_LOG" "accepting connections" kafka_ready || return 1
  kafka_scram_users
}

kafka_create_topics() {
  local topic pids=() failed=0
  for topic in $KAFKA_TOPICS; do
    kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
      --create --if-not-exists --topic "$topic" --partitions "$KAFKA_PARTITIONS" --replication-factor 1 \
      >>"$LOGS/kafka-topics.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  if [ "$failed" -ne 0 ]; then log "kafka: creating topics failed; see $LOGS/kafka-topics.log"; return 1; fi
  touch "$KAFKA_DIR/topics.done"
}

kafka_stop() {
  pid_alive "$KAFKA_PID" || { rm -f "$KAFKA_PID"; return 0; }
  log "kafka: stopping"
  local pid
  pid="$(cat "$KAFKA_PID")"
  kill "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$KAFKA_PID"
}

write_env() {
  cat >"$ENV_FILE.tmp" <<EOF
# Loopback data services started by e2e/services/up.sh; source this file.
export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export KAFKA_SASL_SSL_BROKERS=127.0.0.1:$KAFKA_SASL_PORT
export KAFKA_SASL_SSL_CA=$KAFKA_DIR/tls/ca.crt
export KAFKA_SASL_SSL_USERNAME=$KAFKA_SASL_USER
export KAFKA_SASL_SSL_PASSWORD=$(cat "$KAFKA_DIR/tls/sasl-password")
export SILO_SERVICES_DIR=$SVC
EOF
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

component_start() {
  case "$1" in
    postgres) pg_start ;;
    redis) redis_start ;;
    kafka) kafka_start ;;
    *) die "unknown component '$1' (expected postgres, redis or kafka)" ;;
  esac
}

component_stop() {
  case "$1" in
    postgres) pg_stop ;;
    redis) redis_stop ;;
    kafka) kafka_stop ;;
    *) die "unknown component '$1' (expected postgres, redis or kafka)" ;;
  esac
}

component_log() {
  case "$1" in
    postgres) printf '%s' "$PG_LOG" ;;
    redis) printf '%s' "$REDIS_LOG" ;;
    kafka) printf '%s' "$KAFKA_LOG" ;;
  esac
}

take_lock() {
  mkdir -p "$SILO_STATE"
  exec 9>"$SILO_STATE/services.lock"
  flock -w 600 9 || die "another services script holds $SILO_STATE/services.lock"
}
