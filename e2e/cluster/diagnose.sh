#!/usr/bin/env bash
# Print what explains pods that do not start in local cluster NAME (default "silo"): which
# components still run (with the last lines of any that exited), the free disk space, every
# node's conditions and taints, the real node's allocated resources, the scheduler's reason for
# each unscheduled pod, and the last warnings of the scheduler, kubelet, containerd and kube-router
# logs.
# Read-only; it takes no lock, so it also works while up.sh or a test holds the cluster.
# e2e/test.sh runs it when the tests fail.
# Usage: diagnose.sh [NAME]
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$CLUSTER_SCRIPT_DIR/procs.sh"

NAME="${1:-silo}"
CDIR="$SILO_STATE/clusters/$NAME"
[[ -d "$CDIR" ]] || { log "cluster '$NAME' is not running (no $CDIR)"; exit 0; }
KUBECTL=("$K8S_DIR/bin/kubectl" --kubeconfig "$CDIR/kubeconfig" --request-timeout 10s)

section() { printf '\n[diagnose %s] %s\n' "$NAME" "$*"; }

section "components"
if [[ -f "$CDIR/pids/order" ]]; then
    while read -r comp; do
        if [[ -n "$(pid_of "$comp")" ]]; then
            printf '  %-24s running\n' "$comp"
        else
            printf '  %-24s EXITED; last lines of %s:\n' "$comp" "$(log_of "$comp")"
            tail -n 8 "$(log_of "$comp")" 2>/dev/null | sed 's/^/      /'
        fi
    done <"$CDIR/pids/order"
fi

section "disk"
df -h "$SILO_STATE" "$SILO_CACHE" 2>&1 | sed 's/^/  /'

section "nodes: conditions that are not as they should be, and taints"
"${KUBECTL[@]}" get nodes -o jsonpath='{range .items[*]}{.metadata.name}{":"}{range .status.conditions[*]}{" "}{.type}{"="}{.status}{end}{" | taints:"}{range .spec.taints[*]}{" "}{.key}{":"}{.effect}{end}{"\n"}{end}' 2>&1 |
    sed 's/^/  /'

if [[ -d "$CDIR/node" ]]; then
    section "real node $REAL_NODE_NAME: capacity, allocatable and allocated"
    "${KUBECTL[@]}" describe node "$REAL_NODE_NAME" 2>&1 |
        sed -n '/^Capacity:/,/^System Info:/p; /^Allocated resources:/,/^Events:/p; /^Events:/,$p' |
        sed 's/^/  /' | head -n 60
fi

section "pods the scheduler has not placed (its reason)"
"${KUBECTL[@]}" get pods -A --field-selector=status.phase=Pending \
    -o jsonpath='{range .items[?(@.spec.nodeName=="")]}{.metadata.namespace}{"/"}{.metadata.name}{": "}{.status.conditions[?(@.type=="PodScheduled")].message}{"\n"}{end}' 2>&1 |
    head -n 20 | sed 's/^/  /'
"${KUBECTL[@]}" get pods -A -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' 2>/dev/null |
    sort | uniq -c | sed 's/^/  pods per node: /'

for comp in kube-scheduler kubelet containerd kube-router; do
    logf="$(log_of "$comp")"
    [[ -s "$logf" ]] || continue
    section "last warnings and errors of $comp ($logf)"
    grep -E '^[EW][0-9]{4} |level=(error|warning)|evict|pressure' "$logf" | tail -n 12 | cut -c1-300 | sed 's/^/  /'
done
exit 0
