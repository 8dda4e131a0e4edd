#!/usr/bin/env bash
# End-to-end pod tests on a kind cluster, for machines with a container engine (Docker or Podman):
#
#   e2e/kind.sh [--keep] [CARGO TEST ARGS...]
#
# 1. asks the engine whether it runs (`docker info`, else `podman info`); without one, or
#    without kind (on PATH, or built from its Go module when Go is installed), prints one line
#    "kind: skipped: ..." and exits 0;
# 2. creates the kind cluster silo-e2e from kind-config.yaml (reused when it exists);
# 3. builds the images (e2e/images/build.sh all) and loads them (kind load image-archive);
# 4. installs charts/silo-operator with helm (images never pulled, placed on the worker), waits
#    for the operator to be ready, and uninstalls it again: the tests install their own release;
# 5. runs `cargo test -p silo-e2e-pods` with SILO_KUBECONFIG, SILO_IMAGE_PULL_POLICY=Never,
#    SILO_IMAGE_TAG, SILO_POSTGRES_IMAGE, SILO_HELM and SILO_KUBECTL set;
# 6. deletes the cluster, unless --keep (then it prints how to use it).
# Logs: $SILO_STATE/kind/logs (cluster logs are exported there when a step fails).
# Environment: SILO_KIND_NODE_IMAGE (kindest/node image; default: kind's), KIND (kind binary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

KIND_VERSION=v0.33.0
CLUSTER=silo-e2e
NAMESPACE=silo-system
SILO_CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"
SILO_STATE="${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}"
STATE="$SILO_STATE/kind"
LOGS="$STATE/logs"
KUBECONFIG_FILE="$STATE/$CLUSTER.kubeconfig"

keep=0
test_args=()
for arg in "$@"; do
    case "$arg" in
    --keep) keep=1 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) test_args+=("$arg") ;;
    esac
done

skip() { echo "kind: skipped: $*"; exit 0; }
log() { printf '[kind] %s\n' "$*" >&2; }
die() { printf '[kind] error: %s\n' "$*" >&2; exit 1; }

# step NAME LOGFILE COMMAND...: COMMAND's output goes to LOGFILE; a failure names the step.
step() {
    local name="$1" logfile="$2" status=0
    shift 2
    log "$name (log: $logfile)"
    "$@" >"$logfile" 2>&1 || status=$?
    if ((status != 0)); then
        tail -n 30 "$logfile" | sed 's/^/    /' >&2
        die "$name failed (exit $status); log: $logfile"
    fi
}

# 1. Engine and kind.
engine=""
if command -v docker >/dev/null 2>&1 && timeout 30 docker info >/dev/null 2>&1; then
    engine=docker
elif command -v podman >/dev/null 2>&1 && timeout 30 podman info >/dev/null 2>&1; then
    engine=podman
    export KIND_EXPERIMENTAL_PROVIDER=podman
fi
[[ -n "$engine" ]] || skip "no container engine answers ('docker info' and 'podman info' fail or are not installed)"

mkdir -p "$LOGS"
kind="${KIND:-}"
if [[ -z "$kind" ]]; then
    if command -v kind >/dev/null 2>&1; then
        kind="$(command -v kind)"
    elif [[ -x "$SILO_CACHE/kind/$KIND_VERSION/bin/kind" ]]; then
        kind="$SILO_CACHE/kind/$KIND_VERSION/bin/kind"
    elif command -v go >/dev/null 2>&1; then
        mkdir -p "$SILO_CACHE/kind/$KIND_VERSION/bin"
        step "building kind $KIND_VERSION from its Go module" "$LOGS/kind-build.log" \
            env GOBIN="$SILO_CACHE/kind/$KIND_VERSION/bin" CGO_ENABLED=0 \
            go install -trimpath "sigs.k8s.io/kind@$KIND_VERSION"
        kind="$SILO_CACHE/kind/$KIND_VERSION/bin/kind"
    else
        skip "$engine runs, but kind is not installed and Go (to build it) is not either"
    fi
fi

helm="$(command -v helm 2>/dev/null || true)"
if [[ -z "$helm" ]]; then
    # The helm the local cluster scripts build from its Go module (e2e/cluster/build.sh helm).
    helm_version="$(sed -n 's/^HELM_VERSION=//p' e2e/cluster/versions.env)"
    helm="$SILO_CACHE/helm/$helm_version/bin/helm"
    if [[ ! -x "$helm" ]]; then
        step "building helm $helm_version (e2e/cluster/build.sh helm)" "$LOGS/helm-build.log" \
            e2e/cluster/build.sh helm
    fi
    [[ -x "$helm" ]] || die "no helm on PATH and e2e/cluster/build.sh helm left none at $helm"
fi
kubectl="$(command -v kubectl 2>/dev/null || true)"
if [[ -z "$kubectl" ]]; then
    # The tests run kubectl (logs, exec, port-forward): the one the local cluster scripts build.
    k8s_version="$(sed -n 's/^KUBERNETES_VERSION=//p' e2e/cluster/versions.env)"
    kubectl="$SILO_CACHE/kubernetes/$k8s_version/bin/kubectl"
    if [[ ! -x "$kubectl" ]]; then
        step "building kubectl $k8s_version (e2e/cluster/build.sh kubernetes)" "$LOGS/kubectl-build.log" \
            e2e/cluster/build.sh kubernetes
    fi
    [[ -x "$kubectl" ]] || die "no kubectl on PATH and e2e/cluster/build.sh kubernetes left none at $kubectl"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is required to run the tests"
[[ -f e2e/pods-tests/Cargo.toml ]] || die "the test crate e2e/pods-tests (silo-e2e-pods) is missing"

cleanup() {
    local status=$?
    if ((status != 0)) && "$kind" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        "$kind" export logs "$LOGS/cluster" --name "$CLUSTER" >/dev/null 2>&1 &&
            log "cluster logs exported to $LOGS/cluster"
    fi
    if ((keep)); then
        log "kept cluster $CLUSTER: export KUBECONFIG=$KUBECONFIG_FILE (delete: $kind delete cluster --name $CLUSTER)"
    elif "$kind" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        log "deleting cluster $CLUSTER"
        "$kind" delete cluster --name "$CLUSTER" >"$LOGS/delete.log" 2>&1 ||
            log "deleting cluster $CLUSTER failed; log: $LOGS/delete.log"
    fi
    exit "$status"
}
trap cleanup EXIT

# 2. Cluster. NetworkPolicies are enforced there by kind's own CNI (kindnet, since kind v0.24).
if "$kind" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    log "reusing kind cluster $CLUSTER ($engine)"
else
    create=(create cluster --name "$CLUSTER" --config kind-config.yaml --kubeconfig "$KUBECONFIG_FILE" --wait 180s)
    [[ -z "${SILO_KIND_NODE_IMAGE:-}" ]] || create+=(--image "$SILO_KIND_NODE_IMAGE")
    step "creating kind cluster $CLUSTER ($engine)" "$LOGS/create.log" "$kind" "${create[@]}"
fi
"$kind" get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE.tmp"
mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"

# 3. Images.
log "building images (e2e/images/build.sh all)"
e2e/images/build.sh all >"$STATE/images.tsv" || die "e2e/images/build.sh all failed (logs in $SILO_CACHE/images/logs)"
operator_tag="" postgres_ref=""
while IFS=$'\t' read -r what kind_name ref archive _; do
    [[ "$what" == image ]] || continue
    step "loading $ref" "$LOGS/load-$kind_name.log" "$kind" load image-archive "$archive" --name "$CLUSTER"
    case "$kind_name" in
    operator) operator_tag="${ref##*:}" ;;
    postgres) postgres_ref="$ref" ;;
    esac
done <"$STATE/images.tsv"
[[ -n "$operator_tag" && -n "$postgres_ref" ]] || die "e2e/images/build.sh all did not report the operator and postgres images ($STATE/images.tsv)"

# 4. Operator, on the worker like every test pod when the chart can place it there.
values=charts/silo-operator/values.yaml
install=(upgrade --install silo charts/silo-operator --namespace "$NAMESPACE" --create-namespace
    --kubeconfig "$KUBECONFIG_FILE" --set image.pullPolicy=Never --set image.tag="$operator_tag"
    --wait --timeout 5m)
if grep -q '^nodeSelector:' "$values"; then
    install+=(--set-json 'nodeSelector={"silo.dev/node":"real"}')
fi
if grep -q '^tolerations:' "$values"; then
    install+=(--set-json 'tolerations=[{"key":"silo.dev/node","operator":"Equal","value":"real","effect":"NoSchedule"}]')
fi
step "helm upgrade --install silo (the operator starts on kind's worker)" "$LOGS/helm.log" \
    "$helm" "${install[@]}"
# The tests install (and remove) their own release; two operators would fight over the objects.
step "helm uninstall silo (the tests install their own release)" "$LOGS/helm-uninstall.log" \
    "$helm" uninstall silo --namespace "$NAMESPACE" --kubeconfig "$KUBECONFIG_FILE" --wait

# 5. Tests.
export SILO_KUBECONFIG="$KUBECONFIG_FILE"
export SILO_IMAGE_PULL_POLICY=Never
export SILO_IMAGE_TAG="$operator_tag"
export SILO_POSTGRES_IMAGE="$postgres_ref"
export SILO_HELM="$helm" SILO_KUBECTL="$kubectl"
log "cargo test -p silo-e2e-pods${test_args[*]:+ ${test_args[*]}} (SILO_KUBECONFIG=$SILO_KUBECONFIG)"
(cd "$ROOT" && cargo test -p silo-e2e-pods "${test_args[@]}")
