#!/usr/bin/env bash
# Operator benchmark on a dedicated, empty local cluster ("silo-bench"), stopped afterwards:
#   e2e/bench-operator.sh                 # 100 Regions, 3 runs
#   e2e/bench-operator.sh --regions 1000  # any silo-operator-bench flag (see --help)
#   e2e/bench-operator.sh --runs 5 --resync 5m
# Builds silo-operator and silo-operator-bench in release mode; prints each run's figures, then
# the median of the runs (a single run's ratio swings with the machine).
# --runs N (SILO_BENCH_RUNS, default 3): runs one after the other, each on fresh clusters: the
#   baseline (a plain client creating the same objects) on one, the operator on the next. --resync D (SILO_BENCH_RESYNC, default 2m): the operator's resync period
#   (SILO_OPERATOR_RESYNC) and the idle window (--steady, unless given), so the steady-state
#   figure is the writes per resync period: every object is reconciled once in that window.
# Set SILO_BENCH_KEEP_CLUSTER=1 to leave the cluster running, SILO_BENCH_CLUSTER to name it.
# The cluster gets one fake node (64 CPUs) per 100 Regions plus two, at least four: a full
# region requests 0.45 CPU (stores and workloads) and a rollout surges new pods beside the old
# ones; SILO_CLUSTER_NODES overrides.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CLUSTER="${SILO_BENCH_CLUSTER:-silo-bench}"
regions="${SILO_BENCH_REGIONS:-100}"
runs="${SILO_BENCH_RUNS:-3}"
resync="${SILO_BENCH_RESYNC:-2m}"
steady_given=0
bench_args=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="${2:-}"; shift 2 || { echo "bench-operator: --runs needs a number" >&2; exit 2; }; continue ;;
        --runs=*) runs="${1#--runs=}" ;;
        --resync) resync="${2:-}"; shift 2 || { echo "bench-operator: --resync needs a duration" >&2; exit 2; }; continue ;;
        --resync=*) resync="${1#--resync=}" ;;
        --regions) regions="${2:-$regions}"; bench_args+=("$1" "${2:-}"); shift 2 || true; continue ;;
        --regions=*) regions="${1#--regions=}"; bench_args+=("$1") ;;
        --steady | --steady=*) steady_given=1; bench_args+=("$1") ;;
        *) bench_args+=("$1") ;;
    esac
    shift
done
[[ "$regions" =~ ^[0-9]+$ ]] || { echo "bench-operator: --regions must be a number, got '$regions'" >&2; exit 2; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "bench-operator: --runs must be a positive number, got '$runs'" >&2; exit 2; }
[[ "$resync" =~ ^[0-9]+(ms|s|m|h)?$ ]] || { echo "bench-operator: --resync must be a duration such as 90s or 2m, got '$resync'" >&2; exit 2; }
export SILO_OPERATOR_RESYNC="$resync"
[[ "$steady_given" == 1 ]] || bench_args+=(--steady "$resync")
nodes=$((regions / 100 + 2))
export SILO_CLUSTER_NODES="${SILO_CLUSTER_NODES:-$((nodes > 4 ? nodes : 4))}"
cargo build --release --quiet -p silo-operator --bins
TARGET="${CARGO_TARGET_DIR:-$PWD/target}/release"

STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"
# Stop the cluster afterwards only when this run started it: a cluster that is already up
# belongs to another run (or to someone who kept it), and stopping it would pull the API server
# from under that run.
# A cluster this script starts is thrown away after each run and started afresh for the next:
# that takes seconds, where deleting a thousand Regions' namespaces takes many minutes. A
# cluster that was already up is reused, and each run deletes its fleet.
own_cluster=1
teardown=0
if [[ -e "$STATE/clusters/$CLUSTER" ]]; then
    echo "bench-operator: cluster '$CLUSTER' is already running; using it and leaving it up" >&2
    own_cluster=0
elif [[ "${SILO_BENCH_KEEP_CLUSTER:-0}" != 1 ]]; then
    trap 'e2e/cluster/down.sh "$CLUSTER" >/dev/null 2>&1 || true' EXIT
    teardown=1
fi
KUBECONFIG_PATH="$(e2e/cluster/up.sh "$CLUSTER")"

OUT="$(mktemp -d)"
for run in $(seq 1 "$runs"); do
    echo "bench-operator: run $run of $runs ($regions Regions, resync $resync)" >&2
    keep=()
    # The last run's fleet goes with the cluster when the cluster is stopped at exit.
    if [[ "$own_cluster" == 1 && ("$run" -lt "$runs" || "$teardown" == 1) ]]; then keep=(--keep-fleet); fi
    baseline=()
    if [[ "$own_cluster" == 1 && ! " ${bench_args[*]} " =~ " --no-baseline " ]]; then
        # The baseline on a cluster of its own, thrown away instead of emptied.
        SILO_KUBECONFIG="$KUBECONFIG_PATH" "$TARGET/silo-operator-bench" --only-baseline \
            "${bench_args[@]}" | tee "$OUT/baseline-$run.txt"
        seconds="$(awk '/baseline \(plain client\)/ { print $4 }' "$OUT/baseline-$run.txt")"
        [[ -n "$seconds" ]] || { echo "bench-operator: the baseline printed no figure" >&2; exit 1; }
        baseline=(--baseline-seconds "$seconds")
        e2e/cluster/down.sh "$CLUSTER" >/dev/null
        KUBECONFIG_PATH="$(e2e/cluster/up.sh "$CLUSTER")"
    fi
    SILO_KUBECONFIG="$KUBECONFIG_PATH" "$TARGET/silo-operator-bench" --operator "$TARGET/silo-operator" \
        "${bench_args[@]}" "${baseline[@]}" "${keep[@]}" | tee "$OUT/run-$run.txt"
    if [[ "${#keep[@]}" -gt 0 && "$run" -lt "$runs" ]]; then
        e2e/cluster/down.sh "$CLUSTER" >/dev/null
        KUBECONFIG_PATH="$(e2e/cluster/up.sh "$CLUSTER")"
    fi
done

# The median of one figure over the runs: $1 = a pattern naming the line, $2 = the field.
median() {
    cat "$OUT"/run-*.txt | awk -v pat="$1" -v f="$2" '$0 ~ pat { print $f }' | sort -g |
        awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "n/a"; exit }
            if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "bench-operator: median of $runs runs, $regions Regions (resync $resync)"
echo "  operator convergence      $(median 'operator convergence' 3) s"
echo "  baseline (plain client)   $(median 'baseline \\(plain client\\)' 4) s"
echo "  ratio operator/baseline   $(median 'ratio operator/baseline' 3) x   (target <= 1.5)"
echo "  operator writes           $(median 'operator writes' 3)"
echo "  writes per resync period  $(median 'steady state' 5)   (idle fleet, one resync of $resync; target 0)"
echo "  steady requests/min       $(median 'steady state' 3)"
echo "  operator peak RSS         $(median 'operator peak RSS' 4) MiB"
if grep -q "ratio rollout/theoretical" "$OUT"/run-*.txt; then
    echo "  rollout                   $(median '^  rollout ' 2) s"
    echo "  ratio rollout/theoretical $(median 'ratio rollout/theoretical' 3) x   (target <= 1.2)"
    echo "  upgrade under load (p50)  $(median 'upgrade under load' 4) s"
    echo "  ratio rollout/ideal       $(median 'ratio rollout/ideal' 3) x"
    echo "  writes per Region upgrade $(median 'writes per Region upgrade' 5)"
    echo "  SIGKILL to progress       $(median 'SIGKILL to progress' 4) s"
    echo "  peak RSS during rollout   $(median 'peak RSS during rollout' 5) MiB   (target < 100)"
fi
rm -rf "$OUT"
