#!/usr/bin/env bash
# A working region on this machine, end to end: the local cluster with its real node -> images
# -> the operator installed by Helm -> a ControlPlane and Region `us` on their own Postgres,
# Redis and Kafka -> an organization, a project and a DSN through the control gateway -> one
# event sent to it. Ends by printing the DSN and the command that sends an event to it.
#
# Usage: e2e/demo.sh [--cluster NAME]          (root: the real node runs containers)
# Environment: SILO_DEMO_API_PORT (control gateway on loopback, default 18000),
#              SILO_DEMO_INGEST_PORT (region us's relay on loopback, default 13000),
#              SILO_DEMO_TIMEOUT (seconds to wait for Ready, default 420).
# The two port-forwards keep running in the background; their pids and logs are in
# $STATE/demo/. Stop them with: kill $(cat $STATE/demo/*.pid)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"
CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"
API_PORT="${SILO_DEMO_API_PORT:-18000}"
INGEST_PORT="${SILO_DEMO_INGEST_PORT:-13000}"
TIMEOUT="${SILO_DEMO_TIMEOUT:-420}"
CLUSTER=silo
CONTROL_NS=silo-control
DEMO="$STATE/demo"

log() { printf '[demo] %s\n' "$*" >&2; }
die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --cluster) CLUSTER="${2:?--cluster needs a name}"; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[[ $EUID -eq 0 ]] || die "the real node needs root (kubelet, containerd, network namespaces)"

log "local cluster '$CLUSTER' with its real node (e2e/cluster/up.sh --real-node)"
"$ROOT/e2e/cluster/up.sh" --real-node "$CLUSTER" >/dev/null
# shellcheck disable=SC1090
. "$STATE/clusters/$CLUSTER/env"

log "images (e2e/images/build.sh all; the first run compiles the workspace in release mode)"
"$ROOT/e2e/images/build.sh" all >/dev/null
archives=()
for kind in workload operator postgres redis kafka; do
    archives+=("$(cat "$CACHE/images/$kind.path")")
done
"$ROOT/e2e/cluster/load-images.sh" --cluster "$CLUSTER" "${archives[@]}" >/dev/null

placement='{"silo.dev/node":"real"}'
tolerations='[{"key":"silo.dev/node","operator":"Equal","value":"real","effect":"NoSchedule"}]'
# Its own namespace and ServiceAccount/ClusterRole names: the operator's integration tests apply
# the chart's RBAC under the default names without Helm.
log "operator: helm upgrade --install silo charts/silo-operator (namespace silo-demo)"
helm upgrade --install silo "$ROOT/charts/silo-operator" -n silo-demo --create-namespace \
    --set serviceAccount.name=silo-demo-operator --set image.pullPolicy=Never --set-json "nodeSelector=$placement" \
    --set-json "tolerations=$tolerations" --wait --timeout 180s >/dev/null

log "ControlPlane silo and Region us (stores from the local images; DSNs on 127.0.0.1:$INGEST_PORT)"
kubectl apply -f - >/dev/null <<EOF
apiVersion: silo.dev/v1alpha1
kind: ControlPlane
metadata:
  name: silo
spec:
  version: "$(cat "$CACHE/images/workload.ref" | sed 's/.*://')"
  namespace: $CONTROL_NS
  monolithRegion: us
  pods:
    imagePullPolicy: Never
    nodeSelector: $placement
    tolerations: $tolerations
  infrastructure:
    images:
      postgres: $(cat "$CACHE/images/postgres.ref")
      redis: $(cat "$CACHE/images/redis.ref")
      kafka: $(cat "$CACHE/images/kafka.ref")
  urls:
    ingest: http://127.0.0.1:$INGEST_PORT
    control: http://127.0.0.1:$API_PORT
EOF
kubectl apply -f "$ROOT/examples/region-us.yaml" >/dev/null
log "waiting up to ${TIMEOUT}s for Region us and the ControlPlane to be Ready"
kubectl wait --for=condition=Ready --timeout="${TIMEOUT}s" region/us controlplane/silo >/dev/null ||
    { kubectl get regions,controlplanes -o wide; die "not Ready; see kubectl describe region us"; }
kubectl get controlplanes,regions

mkdir -p "$DEMO"
forward() { # name namespace target local remote
    if [[ -f "$DEMO/$1.pid" ]] && kill -0 "$(cat "$DEMO/$1.pid")" 2>/dev/null; then
        kill "$(cat "$DEMO/$1.pid")"
    fi
    nohup kubectl port-forward --address 127.0.0.1 -n "$2" "$3" "$4:$5" >"$DEMO/$1.log" 2>&1 &
    echo $! >"$DEMO/$1.pid"
    for _ in $(seq 1 100); do
        grep -q "Forwarding from" "$DEMO/$1.log" 2>/dev/null && return 0
        kill -0 "$(cat "$DEMO/$1.pid")" 2>/dev/null || break
        sleep 0.1
    done
    die "port-forward $3 failed: $(cat "$DEMO/$1.log")"
}
forward gateway "$CONTROL_NS" svc/web "$API_PORT" 8000
forward ingest region-us svc/relay "$INGEST_PORT" 3000

TOKEN="$(kubectl -n "$CONTROL_NS" get secret silo-bootstrap-token -o jsonpath='{.data.token}' | base64 -d)"
api() { # method path [json]
    curl -fsS -X "$1" "http://127.0.0.1:$API_PORT$2" -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' ${3:+-d "$3"}
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
log "organization demo (region us), project web and a DSN, through the control gateway"
api GET /api/0/organizations/demo/ >/dev/null 2>&1 ||
    api POST /api/0/organizations/ '{"name": "Demo", "slug": "demo", "region": "us"}' >/dev/null
api GET /api/0/projects/demo/web/ >/dev/null 2>&1 ||
    api POST /api/0/organizations/demo/projects/ '{"name": "web", "slug": "web"}' >/dev/null
if [[ "$(api GET /api/0/projects/demo/web/keys/ | json 'len(d)')" == 0 ]]; then
    api POST /api/0/projects/demo/web/keys/ '{"name": "demo"}' >/dev/null
fi
DSN="$(api GET /api/0/projects/demo/web/keys/ | json 'd[0]["dsn"]["public"]')"
KEY="$(api GET /api/0/projects/demo/web/keys/ | json 'd[0]["public"]')"
PROJECT="${DSN##*/}"

SEND="curl -sS http://127.0.0.1:$INGEST_PORT/api/$PROJECT/store/ -H 'X-Sentry-Auth: Sentry sentry_version=7, sentry_key=$KEY, sentry_client=demo/1.0' -H 'Content-Type: application/json' -d '{\"message\": \"hello from the demo\", \"level\": \"error\"}'"
log "sending one event"
eval "$SEND" >/dev/null
for _ in $(seq 1 60); do
    issues="$(api GET '/api/0/projects/demo/web/issues/?query=' | json 'len(d)')"
    [[ "$issues" -gt 0 ]] && break
    sleep 1
done
[[ "${issues:-0}" -gt 0 ]] || die "the event did not become an issue within 60 s"
log "the event is an issue: $(api GET '/api/0/projects/demo/web/issues/?query=' | json 'd[0]["title"]')"
cat <<EOF

DSN (point an official Sentry SDK at it):
  $DSN
Send an event:
  $SEND
Issues (API token in secret $CONTROL_NS/silo-bootstrap-token):
  curl -sS -H "Authorization: Bearer \$TOKEN" 'http://127.0.0.1:$API_PORT/api/0/projects/demo/web/issues/?query='
Before e2e/test.sh on this cluster, remove the demo's operator (one operator per fleet):
  helm uninstall silo -n silo-demo
EOF
