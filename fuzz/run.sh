#!/usr/bin/env bash
# Run every fuzz target, one after the other.
#
#   fuzz/run.sh                 60 seconds per target
#   fuzz/run.sh 600             600 seconds per target
#   fuzz/run.sh --runs 10000000 ten million inputs per target
#   fuzz/run.sh --runs 10000000 900   ten million inputs, or 900 seconds if that comes first
#
# Environment: TARGETS (space-separated subset), FUZZ_WORK (scratch corpus, artifacts and logs;
# default: a silo-fuzz directory under $TMPDIR), FUZZ_BUILD (flags for `cargo fuzz build` and
# `run`; default: AddressSanitizer with debug assertions; `--sanitizer none --debug-assertions`
# runs several times faster for long runs of this safe-Rust code). The committed seeds (fuzz/seeds/<target>) are
# read, never written. Exits non-zero if any target found a crash, timeout or OOM.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
work="${FUZZ_WORK:-${TMPDIR:-/tmp}/silo-fuzz}"

usage() { echo "usage: $0 [SECONDS | --runs N [SECONDS]]" >&2; exit 2; }
number() { case "$1" in "" | *[!0-9]*) usage ;; esac; }
limit=(-max_total_time=60)
case "${1:-}" in
  "") ;;
  --runs)
    number "${2:-}"
    limit=(-runs="$2")
    if [ -n "${3:-}" ]; then number "$3"; limit+=(-max_total_time="$3"); fi
    ;;
  *) number "$1"; limit=(-max_total_time="$1") ;;
esac

# Longest input per target: bodies up to 64 KiB, header values and directory documents less.
declare -A max_len=(
  [envelope]=65536
  [store_body]=65536
  [sentry_auth]=8192
  [signatures]=8192
  [region_directory]=16384
  [contract_env]=16384
)
# JSON tokens for the targets that read JSON bodies.
declare -A dict=(
  [envelope]=dicts/json.dict
  [store_body]=dicts/json.dict
  [region_directory]=dicts/json.dict
)
targets=(${TARGETS:-envelope store_body sentry_auth signatures region_directory contract_env})

cd "$here"
read -r -a build <<<"${FUZZ_BUILD:-}"
cargo +nightly fuzz build "${build[@]}"

failed=0
printf '%-18s %12s %8s %10s %s\n' target inputs seconds exec/s result
for target in "${targets[@]}"; do
  corpus="$work/corpus/$target"
  artifacts="$work/artifacts/$target"
  log="$work/logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  start=$(date +%s)
  extra=()
  if [ -n "${dict[$target]:-}" ]; then extra=(-dict="${dict[$target]}"); fi
  status=0
  cargo +nightly fuzz run "${build[@]}" "$target" "$corpus" "seeds/$target" -- \
    "${limit[@]}" -max_len="${max_len[$target]:-65536}" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" >"$log" 2>&1 || status=$?
  seconds=$(($(date +%s) - start))
  inputs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  result=ok
  if [ "$status" -ne 0 ]; then
    result="FAILED (exit $status): see $log and $artifacts"
    failed=1
  fi
  printf '%-18s %12s %8s %10s %s\n' "$target" "${inputs:-?}" "$seconds" "${rate:-?}" "$result"
done
exit "$failed"
