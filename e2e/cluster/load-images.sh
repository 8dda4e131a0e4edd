#!/usr/bin/env bash
# Import OCI image archives (e2e/images/oci-image.py) into the containerd of a cluster's real
# node, so that pods on it can use them (no registry is ever contacted). An image already present
# with the same manifest digest is skipped.
# Usage: load-images.sh [--cluster NAME] ARCHIVE...   (cluster default: silo)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$CLUSTER_SCRIPT_DIR/node/lib.sh"

NAME=silo
archives=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cluster) [[ $# -ge 2 ]] || die "--cluster needs a cluster name"; NAME="$2"; shift 2 ;;
        --cluster=*) NAME="${1#--cluster=}"; shift ;;
        -h | --help) sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option '$1' (usage: load-images.sh [--cluster NAME] ARCHIVE...)" ;;
        *) archives+=("$1"); shift ;;
    esac
done
[[ ${#archives[@]} -gt 0 ]] || die "no image archive given (usage: load-images.sh [--cluster NAME] ARCHIVE...)"

[[ "$NAME" =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] || die "cluster name '$NAME' is invalid"
# Read-only use of the cluster: no cluster lock (up.sh may hold it while importing its own).
CDIR="$SILO_STATE/clusters/$NAME"
SOCK="$CDIR/node/containerd/containerd.sock"
if [[ ! -f "$CDIR/node/ready" || ! -S "$SOCK" ]]; then
    if [[ -f "$CDIR/ready" ]]; then
        die "cluster '$NAME' has no real node (it was started without --real-node); start it with: e2e/cluster/up.sh --real-node $NAME"
    fi
    die "cluster '$NAME' is not running; start it with: e2e/cluster/up.sh --real-node $NAME"
fi
"$CONTAINERD_DIR/bin/ctr" --address "$SOCK" version >/dev/null 2>&1 ||
    die "the containerd of cluster '$NAME' does not answer on $SOCK; restart the cluster (e2e/cluster/up.sh --real-node $NAME)"
for archive in "${archives[@]}"; do
    [[ -f "$archive" ]] || die "no such image archive: $archive"
    import_image "$SOCK" "$archive" >&2 || die "importing $archive into cluster '$NAME' failed"
done
