#!/usr/bin/env bash
# Figures of one full region on the real node, measured after e2e/demo.sh (its cluster,
# operator, ControlPlane `silo` and gateway port-forward), images cached:
#   - Region apply -> first event accepted by relay: total seconds, split into stores ready,
#     migrations done and workloads ready (the conditions' transition times);
#   - memory of the region (Postgres, Redis, Kafka, four workloads: sum of container working
#     sets from the kubelet's stats) and how many such regions the real node holds;
#   - directory propagation: a Region added -> listed in a running pod's mounted file, and
#     the restarts that caused (target 0).
# Usage: e2e/bench-region.sh [REGION_NAME]   (default bench-<epoch seconds>: a name no pod's
#        directory can still list from an earlier run; deleted again at the end)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"
API_PORT="${SILO_DEMO_API_PORT:-18000}"
NAME="${1:-bench-$(date +%s)}"
NS="region-$NAME"
SNOWFLAKE_ID=4000
CONTROL_NS=silo-control
# shellcheck disable=SC1091
. "$STATE/clusters/silo/env"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
kubectl get controlplane silo >/dev/null 2>&1 || die "no ControlPlane silo: run e2e/demo.sh first"
curl -fsS "http://127.0.0.1:$API_PORT/api/0/" >/dev/null 2>&1 || die "no gateway on 127.0.0.1:$API_PORT: run e2e/demo.sh first"
TOKEN="$(kubectl -n "$CONTROL_NS" get secret silo-bootstrap-token -o jsonpath='{.data.token}' | base64 -d)"
api() { curl -fsS -X "$1" "http://127.0.0.1:$API_PORT$2" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' ${3:+-d "$3"}; }

restarts() { # namespace -> "pod uid restarts" lines
    kubectl -n "$1" get pods --field-selector=status.phase=Running \
        -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.status.containerStatuses[*].restartCount}{"\n"}{end}' | sort
}
before_us="$(restarts region-us)"
before_control="$(restarts "$CONTROL_NS")"

kubectl delete region "$NAME" --ignore-not-found --wait >/dev/null
# Deleting the bench Region retires its snowflake id; the ids it generated do not matter, so
# the id is released for the next run.
released="$(kubectl get controlplane silo -o json |
    json "json.dumps(sorted(set(d['spec'].get('releasedSnowflakeIds', [])) | {$SNOWFLAKE_ID}))")"
kubectl patch controlplane silo --type=merge -p "{\"spec\":{\"releasedSnowflakeIds\":$released}}" >/dev/null
log "applying Region $NAME"
start="$(now)"
kubectl apply -f - >/dev/null <<EOF
apiVersion: silo.dev/v1alpha1
kind: Region
metadata:
  name: $NAME
spec:
  snowflakeId: $SNOWFLAKE_ID
EOF
kubectl -n region-us exec deploy/web -- web regions 2>/dev/null | grep -q "\"$NAME\"" &&
    die "region-us's directory still lists a Region $NAME (an earlier run's): pick another name"
# From the apply on, a poller notes when region-us's running web pod first reads the new
# Region in its mounted directory file (every 2 s: an exec costs the node CPU the region
# being measured needs).
listed_at="$(mktemp)"
(
    for _ in $(seq 1 300); do
        if kubectl -n region-us exec deploy/web -- web regions 2>/dev/null | grep -q "\"$NAME\""; then
            now >"$listed_at"
            exit 0
        fi
        sleep 2
    done
) &
poller=$!
kubectl wait --for=condition=Ready --timeout=600s "region/$NAME" >/dev/null
ready="$(now)"
since() { # condition type -> seconds after start
    local t
    t="$(kubectl get region "$NAME" -o jsonpath="{.status.conditions[?(@.type==\"$1\")].lastTransitionTime}")"
    python3 -c "import datetime,sys; t=datetime.datetime.fromisoformat(sys.argv[1].replace('Z','+00:00')).timestamp(); print(f'{t-float(sys.argv[2]):.0f}')" "$t" "$start"
}

slug="bench-$(date +%s)"
# The control silo accepts organizations in the new region once its mounted directory lists it
# (the kubelet's ConfigMap sync): that wait is part of the time to a first event.
for _ in $(seq 1 360); do
    api POST /api/0/organizations/ "{\"name\": \"$slug\", \"slug\": \"$slug\", \"region\": \"$NAME\"}" >/dev/null 2>&1 && break
    sleep 0.5
done
known="$(now)"
api GET "/api/0/organizations/$slug/" >/dev/null || die "the control silo never accepted an organization in $NAME"
api POST "/api/0/organizations/$slug/projects/" '{"name": "p", "slug": "p"}' >/dev/null
key="$(api POST "/api/0/projects/$slug/p/keys/" '{"name": "bench"}')"
public="$(json 'd["public"]' <<<"$key")"
project="$(json 'd["dsn"]["public"].rsplit("/", 1)[1]' <<<"$key")"
kubectl port-forward --address 127.0.0.1 -n "$NS" svc/relay 0:3000 >"$STATE/bench-relay.log" 2>&1 &
pf=$!
trap 'kill $pf 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q "Forwarding from" "$STATE/bench-relay.log" && break; sleep 0.1; done
port="$(sed -n 's/^Forwarding from 127.0.0.1:\([0-9]*\).*/\1/p' "$STATE/bench-relay.log" | head -n1)"
[[ -n "$port" ]] || die "relay port-forward failed: $(cat "$STATE/bench-relay.log")"
for _ in $(seq 1 600); do
    code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/api/$project/store/" \
        -H "X-Sentry-Auth: Sentry sentry_version=7, sentry_key=$public, sentry_client=bench/1.0" \
        -H 'Content-Type: application/json' -d '{"message": "bench"}')"
    [[ "$code" == 200 ]] && break
    sleep 0.1
done
[[ "$code" == 200 ]] || die "relay never accepted the event (last answer $code)"
accepted="$(now)"

printf 'figure: Region apply -> stores ready %s s, migrations done %s s, workloads ready (Ready) %.0f s, control silo accepts organizations there %.0f s, first event accepted by relay %.0f s\n' \
    "$(since InfrastructureReady)" "$(since MigrationsComplete)" \
    "$(python3 -c "print($ready-$start)")" "$(python3 -c "print($known-$start)")" \
    "$(python3 -c "print($accepted-$start)")"

node="$(kubectl get pods -n "$NS" -o jsonpath='{.items[0].spec.nodeName}')"
kubectl get --raw "/api/v1/nodes/$node/proxy/stats/summary" | python3 -c '
import json, sys
ns, node_name = sys.argv[1], sys.argv[2]
d = json.load(sys.stdin)
pods = [p for p in d["pods"] if p["podRef"]["namespace"] == ns]
total = 0
rows = []
for p in pods:
    for c in p.get("containers", []):
        ws = c.get("memory", {}).get("workingSetBytes", 0)
        total += ws
        rows.append((p["podRef"]["name"], c["name"], ws))
for pod, c, ws in sorted(rows, key=lambda r: -r[2]):
    print(f"  {pod:40} {c:12} {ws/2**20:7.1f} MiB")
node = d["node"]
avail = node["memory"].get("availableBytes", 0) + node["memory"].get("workingSetBytes", 0)
print(f"figure: one full region uses {total/2**20:.0f} MiB (sum of container working sets, {len(rows)} containers); node {node_name} has {avail/2**30:.1f} GiB: about {int(avail // total) if total else 0} full regions by memory")
' "$NS" "$node"

# What the scheduler sees: the region's CPU and memory requests against the node's allocatable.
kubectl get pods -n "$NS" -o json | python3 -c '
import json, subprocess, sys
def cpu(q):
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)
def mem(q):
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for u, f in units.items():
        if q.endswith(u):
            return float(q[:-2]) * f
    return float(q)
pods = [p for p in json.load(sys.stdin)["items"] if p["status"].get("phase") == "Running"]
c = m = 0.0
for p in pods:
    for ctr in p["spec"]["containers"]:
        r = ctr.get("resources", {}).get("requests", {})
        c += cpu(r.get("cpu", "0"))
        m += mem(r.get("memory", "0"))
node = json.loads(subprocess.check_output(["kubectl", "get", "node", sys.argv[1], "-o", "json"]))
a = node["status"]["allocatable"]
cores = cpu(a["cpu"])
fit = min(cores / c if c else 0, mem(a["memory"]) / m if m else 0)
print(f"figure: one full region requests {c:.2f} CPU and {m/2**20:.0f} MiB; node {sys.argv[1]} allocates {cores:g} CPU: the scheduler places about {int(fit)} full regions on it (the control silo and CoreDNS request some of that too)")
' "$node"

log "directory propagation into region-us's running web pod"
wait "$poller" || true
[[ -s "$listed_at" ]] || die "region-us's web pod never listed $NAME in its mounted directory (600 s)"
listed="$(cat "$listed_at")"
rm -f "$listed_at"
printf 'figure: Region %s listed in region-us'"'"'s mounted directory %.1f s after its apply (Ready after %.1f s)\n' \
    "$NAME" "$(python3 -c "print($listed-$start)")" "$(python3 -c "print($ready-$start)")"
changed=0
[[ "$(restarts region-us)" == "$before_us" ]] || changed=1
[[ "$(restarts "$CONTROL_NS")" == "$before_control" ]] || changed=1
echo "figure: pods restarted or replaced in region-us and $CONTROL_NS by the new Region: $([[ $changed == 0 ]] && echo 0 || echo 'some (see kubectl get pods)')"

kubectl delete region "$NAME" --wait=false >/dev/null
log "Region $NAME deleted (its namespace and data go with it)"
