#!/usr/bin/env bash
# Stops or starts one data service while keeping its data, for fault-injection tests.
#   e2e/services/ctl.sh stop|start|restart|status postgres|redis|kafka
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { die "usage: $0 stop|start|restart|status postgres|redis|kafka"; }
[ $# -eq 2 ] || usage
action="$1" component="$2"
case "$component" in postgres | redis | kafka) ;; *) usage ;; esac

status() {
  case "$component" in
    postgres) pg_running && pg_ready ;;
    redis) pid_alive "$REDIS_PID" && redis_ready ;;
    kafka) kafka_ready ;;
  esac
}

take_lock
case "$action" in
  stop) component_stop "$component" ;;
  start)
    [ -d "$SVC" ] || die "services were never started here; run e2e/services/up.sh first"
    component_start "$component" || die "$component did not start (log: $(component_log "$component"))"
    ;;
  restart)
    component_stop "$component"
    component_start "$component" || die "$component did not start (log: $(component_log "$component"))"
    ;;
  status)
    if status; then echo "$component: running"; else echo "$component: stopped"; exit 3; fi
    ;;
  *) usage ;;
esac
