#!/usr/bin/env bash
# Stop local cluster NAME (default "silo") started by up.sh and remove its state directory.
# A real node (up.sh --real-node) is removed with everything it added to the host: pods,
# containers and shims, mounts, kubepods cgroups, bridge, routes, nftables/iptables rules and
# sysctls (node/stop.sh, node/net.sh); that needs root.
# Usage: down.sh [NAME]
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$CLUSTER_SCRIPT_DIR/procs.sh"

NAME="${1:-silo}"
cluster_init "$NAME"
if [[ ! -d "$CDIR" ]]; then
    log "cluster '$NAME' is not running (no $CDIR)"
    exit 0
fi
# shellcheck disable=SC2119 # no argument: remove the whole state, logs included
cluster_stop
log "cluster '$NAME' stopped and its state removed"
