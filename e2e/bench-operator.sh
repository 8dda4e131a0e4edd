#!/usr/bin/env bash
# Operator benchmark on a dedicated, empty local cluster ("silo-bench"), stopped afterwards:
#   e2e/bench-operator.sh                 # 100 Regions
#   e2e/bench-operator.sh --regions 1000  # any silo-operator-bench flag (see --help)
# Builds silo-operator and silo-operator-bench in release mode; prints the figures on stdout.
# Set SILO_BENCH_KEEP_CLUSTER=1 to leave the cluster running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER=silo-bench
cargo build --release --quiet -p silo-operator --bins
TARGET="${CARGO_TARGET_DIR:-$PWD/target}/release"

if [[ "${SILO_BENCH_KEEP_CLUSTER:-0}" != 1 ]]; then
    trap 'e2e/cluster/down.sh "$CLUSTER" >/dev/null 2>&1 || true' EXIT
fi
KUBECONFIG_PATH="$(e2e/cluster/up.sh "$CLUSTER")"
SILO_KUBECONFIG="$KUBECONFIG_PATH" "$TARGET/silo-operator-bench" --operator "$TARGET/silo-operator" "$@"
