#!/usr/bin/env bash
# Stops every loopback data service started by up.sh and removes its state (data, logs, env file).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

take_lock
kafka_stop
redis_stop
pg_stop
rm -rf "$SVC"
if [ -d "$PG_RUN" ]; then rm -rf "$PG_RUN"; fi
log "stopped and removed $SVC"
