# Shared definitions for the local cluster scripts (sourced, not executed).
# shellcheck shell=bash

CLUSTER_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$CLUSTER_SCRIPT_DIR/versions.env"

SILO_CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"
# shellcheck disable=SC2034 # used by the scripts that source this file
SILO_STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"

K8S_DIR="$SILO_CACHE/kubernetes/$KUBERNETES_VERSION"
KWOK_DIR="$SILO_CACHE/kwok/$KWOK_VERSION"
HELM_DIR="$SILO_CACHE/helm/$HELM_VERSION"
ETCD_DIR="$SILO_CACHE/etcd/$ETCD_CRATE_VERSION"

# Directories holding the built executables, in PATH order.
cluster_bin_path() {
    printf '%s' "$K8S_DIR/bin:$KWOK_DIR/bin:$HELM_DIR/bin:$ETCD_DIR/bin"
}

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

require_tool() {
    local tool="$1" hint="$2"
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found: $hint"
}

# quiet LOGFILE COMMAND...: run COMMAND with its output in LOGFILE; print the tail when it fails.
quiet() {
    local logfile="$1"
    shift
    if "$@" >"$logfile" 2>&1; then return 0; fi
    tail -n 20 "$logfile" >&2
    return 1
}

# go_workdir DIR MODULE: fresh Go module directory DIR for building dependencies of MODULE.
go_workdir() {
    local dir="$1" module="$2"
    rm -rf "$dir"
    mkdir -p "$dir"
    printf 'module silo.local/build/%s\n' "$module" >"$dir/go.mod"
}

# now_s: seconds since epoch with fractions (for timing reports).
now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

for _v in KUBERNETES_VERSION KWOK_VERSION HELM_VERSION ETCD_CRATE_VERSION; do
    [[ -n "${!_v:-}" ]] || { printf '[cluster] error: %s is not set in versions.env\n' "$_v" >&2; exit 1; }
done
unset _v
