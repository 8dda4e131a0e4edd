#!/usr/bin/env bash
# Bring up a silo fleet end to end: local cluster -> CRDs -> operator -> example ControlPlane and
# Regions -> wait until Ready -> show them.
#
# Usage: e2e/demo.sh [--use-current-context] [--cluster NAME]
#   --use-current-context  use the current kubectl context instead of starting the local cluster
#   --cluster NAME         local cluster name (default: silo)
# Environment: SILO_DEMO_PORT (operator /metrics and /healthz port, default 18080),
#              SILO_DEMO_TIMEOUT (seconds to wait for Ready, default 180).
# The operator keeps running in the background; its log and pid are in $STATE/operator/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"
PORT="${SILO_DEMO_PORT:-18080}"
TIMEOUT="${SILO_DEMO_TIMEOUT:-180}"
CLUSTER=silo
USE_CURRENT=0

log() { printf '[demo] %s\n' "$*" >&2; }
die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --use-current-context) USE_CURRENT=1 ;;
        --cluster) CLUSTER="${2:?--cluster needs a name}"; shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done

if [[ "$USE_CURRENT" == 0 ]]; then
    log "starting local cluster '$CLUSTER' (e2e/cluster/up.sh)"
    "$ROOT/e2e/cluster/up.sh" "$CLUSTER" >/dev/null
    # shellcheck disable=SC1090
    . "$STATE/clusters/$CLUSTER/env"
fi
command -v kubectl >/dev/null || die "kubectl not found; install it or drop --use-current-context"
kubectl version >/dev/null 2>&1 || die "no reachable cluster in the current kubectl context"

log "installing CRDs"
kubectl apply --server-side --force-conflicts -f "$ROOT/crds/" >/dev/null
kubectl wait --for condition=established --timeout=60s crd/regions.silo.dev crd/controlplanes.silo.dev >/dev/null

log "building the operator"
cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p silo-operator --bin silo-operator
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/silo-operator"

mkdir -p "$STATE/operator"
PIDFILE="$STATE/operator/demo.pid"
if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    log "stopping the previous demo operator (pid $(cat "$PIDFILE"))"
    kill "$(cat "$PIDFILE")"
    while kill -0 "$(cat "$PIDFILE")" 2>/dev/null; do sleep 0.2; done
fi
log "starting the operator (log: $STATE/operator/demo.log)"
KUBECONFIG="${KUBECONFIG:-}" nohup "$BIN" --listen "127.0.0.1:$PORT" >"$STATE/operator/demo.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    kill -0 "$(cat "$PIDFILE")" 2>/dev/null || die "operator exited; see $STATE/operator/demo.log"
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null || die "operator not healthy; see $STATE/operator/demo.log"

log "applying examples/ (a ControlPlane and 3 Regions)"
kubectl apply -f "$ROOT/examples/"
log "waiting up to ${TIMEOUT}s for every Region and the ControlPlane to be Ready"
kubectl wait --for=condition=Ready --timeout="${TIMEOUT}s" regions --all
kubectl wait --for=condition=Ready --timeout="${TIMEOUT}s" controlplanes --all
kubectl get controlplanes,regions
log "done. Operator metrics: http://127.0.0.1:$PORT/metrics; stop it with: kill \$(cat $PIDFILE)"
