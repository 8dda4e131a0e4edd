#!/usr/bin/env bash
# Free disk space for the build caches and the real node. Reports the free space of the
# filesystems holding the cache and state directories; when the cache's filesystem has less
# than SILO_MIN_FREE_GB (default 20) free, removes stale build outputs, cheapest to rebuild
# first, until it has enough:
#   1. cargo's incremental-compilation data (debug/incremental, release/incremental)
#   2. the whole cargo target directory (CARGO_TARGET_DIR)
#   3. the Go build cache (go clean -cache)
# Cargo never removes outdated artifacts itself, so a long-lived cache only grows; a real node
# whose disk runs low reports DiskPressure and the scheduler stops placing pods on it.
# Usage: e2e/disk.sh
set -euo pipefail

CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"
STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"
TARGET="${CARGO_TARGET_DIR:-$CACHE/cargo-target}"
MIN_GB="${SILO_MIN_FREE_GB:-20}"
[[ "$MIN_GB" =~ ^[0-9]+$ ]] || { echo "[disk] error: SILO_MIN_FREE_GB must be a whole number of GB, got '$MIN_GB'" >&2; exit 1; }

mkdir -p "$CACHE" "$STATE"
free_gb() { df -Pk "$1" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
size_of() { du -sh "$1" 2>/dev/null | cut -f1; }
report() {
    printf '[disk] %s: %s GB free (cache %s, cargo target %s, state %s)\n' "$1" "$(free_gb "$CACHE")" \
        "$(size_of "$CACHE")" "$(size_of "$TARGET")" "$(size_of "$STATE")" >&2
}

report "before"
[[ "$(free_gb "$CACHE")" -lt "$MIN_GB" ]] || exit 0
for step in incremental target go; do
    case "$step" in
        incremental) rm -rf "$TARGET"/*/incremental "$TARGET"/*/*/incremental ;;
        target) rm -rf "$TARGET" ;;
        go) command -v go >/dev/null && go clean -cache ;;
    esac
    report "under ${MIN_GB} GB free: removed $step"
    [[ "$(free_gb "$CACHE")" -lt "$MIN_GB" ]] || exit 0
done
echo "[disk] warning: still under ${MIN_GB} GB free after pruning the build caches; the real node may report DiskPressure" >&2
