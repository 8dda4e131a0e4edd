#!/usr/bin/env bash
# Operator benchmark on a dedicated, empty local cluster ("silo-bench"), stopped afterwards:
#   e2e/bench-operator.sh                 # 100 Regions
#   e2e/bench-operator.sh --regions 1000  # any silo-operator-bench flag (see --help)
# Builds silo-operator and silo-operator-bench in release mode; prints the figures on stdout.
# Set SILO_BENCH_KEEP_CLUSTER=1 to leave the cluster running. The cluster gets one fake node
# (64 CPUs) per 100 Regions plus two, at least four: a full region requests 0.45 CPU (stores
# and workloads) and a rollout surges new pods beside the old ones; SILO_CLUSTER_NODES overrides.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=silo-bench
regions="${SILO_BENCH_REGIONS:-100}"
args=("$@")
for i in "${!args[@]}"; do
    case "${args[$i]}" in
        --regions) regions="${args[$((i + 1))]:-$regions}" ;;
        --regions=*) regions="${args[$i]#--regions=}" ;;
    esac
done
[[ "$regions" =~ ^[0-9]+$ ]] || { echo "bench-operator: --regions must be a number, got '$regions'" >&2; exit 2; }
nodes=$((regions / 100 + 2))
export SILO_CLUSTER_NODES="${SILO_CLUSTER_NODES:-$((nodes > 4 ? nodes : 4))}"
cargo build --release --quiet -p silo-operator --bins
TARGET="${CARGO_TARGET_DIR:-$PWD/target}/release"

STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"
# Stop the cluster afterwards only when this run started it: a cluster that is already up
# belongs to another run (or to someone who kept it), and stopping it would pull the API server
# from under that run.
if [[ -e "$STATE/clusters/$CLUSTER" ]]; then
    echo "bench-operator: cluster '$CLUSTER' is already running; using it and leaving it up" >&2
elif [[ "${SILO_BENCH_KEEP_CLUSTER:-0}" != 1 ]]; then
    trap 'e2e/cluster/down.sh "$CLUSTER" >/dev/null 2>&1 || true' EXIT
fi
KUBECONFIG_PATH="$(e2e/cluster/up.sh "$CLUSTER")"
SILO_KUBECONFIG="$KUBECONFIG_PATH" "$TARGET/silo-operator-bench" --operator "$TARGET/silo-operator" "$@"
