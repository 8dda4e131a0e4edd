#!/usr/bin/env bash
# Starts PostgreSQL, Redis and a single-node KRaft Kafka broker on loopback and writes
# $SILO_STATE_DIR/services/env (DATABASE_URL, REDIS_URL, KAFKA_BROKERS). Idempotent: components
# already running are left alone. On failure, the components started by this run are stopped.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

take_lock
mkdir -p "$SVC" "$LOGS"

STARTED=()
FAILED=""
cleanup_on_error() {
  local rc=$?
  [ "$rc" -eq 0 ] && return 0
  if [ -n "$FAILED" ]; then
    log "FAILED: $FAILED did not start (log: $(component_log "$FAILED"))"
  fi
  local c
  for c in "${STARTED[@]}"; do component_stop "$c" || true; done
  rm -f "$ENV_FILE"
  exit "$rc"
}
trap cleanup_on_error EXIT

start() {
  local c="$1" was_up=0
  case "$c" in
    postgres) pg_running && pg_ready && was_up=1 ;;
    redis) pid_alive "$REDIS_PID" && redis_ready && was_up=1 ;;
    kafka) kafka_ready && was_up=1 ;;
  esac
  [ "$was_up" -eq 1 ] && return 0
  FAILED="$c"
  STARTED+=("$c")
  component_start "$c"
  FAILED=""
}

ensure_packages
start postgres
start redis
start kafka
if [ ! -f "$KAFKA_DIR/topics.done" ]; then
  FAILED=kafka
  log "kafka: creating topics $KAFKA_TOPICS ($KAFKA_PARTITIONS partitions each)"
  kafka_create_topics
  FAILED=""
fi
write_env
trap - EXIT
log "ready: source $ENV_FILE"
