#!/usr/bin/env bash
# The test command. Starts what the tests talk to, then runs every test of the workspace:
#   e2e/services/up.sh                  Postgres, Redis, Kafka (KRaft) on loopback
#   e2e/cluster/up.sh --real-node silo  the local Kubernetes cluster, with one real node (root)
#   e2e/cluster/up.sh silo-2            a second, independent cluster (a "customer-provided"
#                                       one; kwok nodes only)
#   e2e/images/build.sh all             workload and operator images, Postgres, Redis and Kafka
#                                       stand-ins (OCI archives)
#   e2e/cluster/load-images.sh          those and the test images, into the real node's containerd
#   cargo test --workspace              unit, integration and end-to-end tests
# Everything is built or downloaded once into the cache dir and reused; re-running is cheap.
# Arguments replace `--workspace` (e.g. `e2e/test.sh -p silo-e2e-pods -- --nocapture`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "services (Postgres, Redis, Kafka)"
e2e/services/up.sh
step "local clusters"
e2e/cluster/up.sh --real-node silo
e2e/cluster/up.sh silo-2

set -a
# shellcheck disable=SC1091
. "$STATE/services/env"
set +a
# shellcheck disable=SC1091
. "$STATE/clusters/silo/env"
export SILO_KUBECONFIG="$STATE/clusters/silo/kubeconfig"
export SILO_KUBECONFIG_2="$STATE/clusters/silo-2/kubeconfig"
SILO_KUBECTL="$(command -v kubectl)"
export SILO_KUBECTL

step "images (workload, workload-next, operator, Postgres, Redis, Kafka)"
e2e/images/build.sh all >/dev/null
IMAGES="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}/images"

step "images on the real node"
e2e/cluster/load-images.sh --cluster silo "$SILO_BUSYBOX_IMAGE_ARCHIVE" \
    "$(cat "$IMAGES/workload.path")" "$(cat "$IMAGES/workload-next.path")" \
    "$(cat "$IMAGES/operator.path")" "$(cat "$IMAGES/postgres.path")" \
    "$(cat "$IMAGES/redis.path")" "$(cat "$IMAGES/kafka.path")"

if [[ $# -gt 0 ]]; then
    step "cargo test $*"
    args=("$@")
else
    step "cargo test --workspace"
    args=(--workspace)
fi
rc=0
cargo test --no-fail-fast "${args[@]}" || rc=$?
if [[ $rc -ne 0 ]]; then
    # What a failure on another machine needs to be understood: the clusters' state as the
    # tests left it (components, node conditions and taints, the scheduler's reasons).
    step "tests failed (exit $rc): the clusters as the tests left them"
    e2e/cluster/diagnose.sh silo >&2
    e2e/cluster/diagnose.sh silo-2 >&2
fi
exit "$rc"
