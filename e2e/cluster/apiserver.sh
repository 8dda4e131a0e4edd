#!/usr/bin/env bash
# Stop or start only the API server of local cluster NAME (started by up.sh), leaving etcd,
# the controllers and kwok running: clients see "connection refused" while it is stopped, as
# when a customer's cluster goes away. `start` runs it again with the command line it was
# started with and waits until it answers /readyz.
# Usage: apiserver.sh NAME stop|start
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$CLUSTER_SCRIPT_DIR/procs.sh"

[[ $# -eq 2 ]] || die "usage: apiserver.sh NAME stop|start"
NAME="$1"
ACTION="$2"
cluster_init "$NAME"
[[ -f "$CDIR/ready" ]] || die "cluster '$NAME' is not running; start it with e2e/cluster/up.sh $NAME"
TIMEOUT="${SILO_CLUSTER_TIMEOUT:-120}"
KUBECTL=("$K8S_DIR/bin/kubectl" --kubeconfig "$CDIR/kubeconfig")
LOGF="$(log_of kube-apiserver)"

case "$ACTION" in
    stop)
        pid="$(pid_of kube-apiserver)"
        if [[ -z "$pid" ]]; then
            log "the API server of '$NAME' is not running"
            exit 0
        fi
        # Killed at once: a graceful stop waits up to a minute for open watches to end.
        kill -KILL "$pid"
        for ((i = 0; i < 600; i++)); do
            [[ -d "/proc/$pid" ]] || break
            sleep 0.1
        done
        [[ ! -d "/proc/$pid" ]] || die "the API server of '$NAME' (pid $pid) did not stop within 60s"
        log "API server of '$NAME' stopped"
        ;;
    start)
        if [[ -n "$(pid_of kube-apiserver)" ]]; then
            log "the API server of '$NAME' is already running"
            exit 0
        fi
        # The log's first line is the command it was started with (no argument has a space).
        read -ra CMD <"$LOGF"
        [[ ${#CMD[@]} -gt 0 && -x "${CMD[0]}" ]] || die "no start command in $LOGF; restart the cluster with e2e/cluster/down.sh $NAME && e2e/cluster/up.sh $NAME"
        printf '%s\n' "${CMD[*]}" >>"$LOGF"
        spawn_component kube-apiserver "${CMD[@]}"
        wait_for kube-apiserver "the API server to answer /readyz" "${KUBECTL[@]}" get --raw /readyz
        log "API server of '$NAME' started again"
        ;;
    *) die "unknown action '$ACTION' (usage: apiserver.sh NAME stop|start)" ;;
esac
