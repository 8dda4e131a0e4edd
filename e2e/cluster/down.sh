#!/usr/bin/env bash
# Stop local cluster NAME (default "silo") started by up.sh and remove its state directory.
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
cluster_stop
log "cluster '$NAME' stopped and its state removed"
