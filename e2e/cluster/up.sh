#!/usr/bin/env bash
# Start a local Kubernetes cluster NAME (default "silo") on loopback:
#   etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler, kwok -> fake Nodes (Ready)
# and write $SILO_STATE/clusters/NAME/{kubeconfig,env}; the kubeconfig path is the only line on
# stdout (SILO_KUBECONFIG="$(up.sh)"). Safe to re-run: a healthy cluster is left
# as is. A component that exits during the start is started once more, with how it ended
# (exit status or signal) reported; on any other failure everything started so far is stopped
# again and the failing component, how it ended and its log file are named.
#
# With --real-node the cluster also gets one real node, real-node-0 (kubelet, containerd, runc,
# kube-proxy, kube-router enforcing NetworkPolicies, CoreDNS; see node/start.sh), where pods with
# nodeSelector silo.dev/node=real and a toleration of the taint silo.dev/node=real:NoSchedule
# really run. Only one cluster per machine can have it; it needs root.
#
# Usage: up.sh [--real-node] [NAME]
# Environment: SILO_CLUSTER_NODES (fake nodes, default 4), SILO_NODE_CPU (64), SILO_NODE_MEMORY
# (256Gi), SILO_NODE_PODS (2000), SILO_CLUSTER_TIMEOUT (seconds per readiness wait, default 120),
# SILO_CLUSTER_APISERVER_PORT (fixed API server port; other ports are always picked free).
set -Eeuo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
. "$CLUSTER_SCRIPT_DIR/procs.sh"

REAL_NODE=0
NAME=
for arg in "$@"; do
    case "$arg" in
        --real-node) REAL_NODE=1 ;;
        -h | --help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option '$arg' (usage: up.sh [--real-node] [NAME])" ;;
        *) [[ -z "$NAME" ]] || die "more than one cluster name given: '$NAME' and '$arg'"; NAME="$arg" ;;
    esac
done
NAME="${NAME:-silo}"
cluster_init "$NAME"

NODES="${SILO_CLUSTER_NODES:-4}"
NODE_CPU="${SILO_NODE_CPU:-64}"
NODE_MEMORY="${SILO_NODE_MEMORY:-256Gi}"
NODE_PODS="${SILO_NODE_PODS:-2000}"
TIMEOUT="${SILO_CLUSTER_TIMEOUT:-120}"
[[ "$NODES" =~ ^[0-9]+$ && "$NODES" -ge 1 ]] || die "SILO_CLUSTER_NODES must be a positive number, got '$NODES'"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "SILO_CLUSTER_TIMEOUT must be a number of seconds, got '$TIMEOUT'"

START="$(now_s)"

# Refuse a real node that cannot be had before touching a running cluster (node_preflight
# checks again under its lock).
if [[ "$REAL_NODE" == 1 ]]; then
    [[ $EUID -eq 0 ]] || die "--real-node needs root (kubelet, containerd, a bridge, routes, nftables and cgroups are host-wide)"
    _owner="$(node_owner)"
    if [[ -n "$_owner" && "$_owner" != "$CDIR" ]]; then
        die "real node: $([[ "$_owner" == "?" ]] && echo "an interface $NODE_BRIDGE exists that this project did not create" ||
            echo "cluster '${_owner##*/}' already has the real node of this machine (only one cluster can); stop it with e2e/cluster/down.sh ${_owner##*/}, or start '$NAME' without --real-node")"
    fi
fi

if [[ -f "$CDIR/ready" ]]; then
    if cluster_healthy; then
        # A cluster with a real node keeps it when started again without --real-node.
        if [[ "$REAL_NODE" == 0 || -f "$CDIR/node/ready" ]]; then
            log "cluster '$NAME' is already running (API server https://127.0.0.1:$(port_of apiserver)$([[ -f "$CDIR/node/ready" ]] && echo ", real node $REAL_NODE_NAME")); source $CDIR/env"
            printf '%s\n' "$CDIR/kubeconfig"
            exit 0
        fi
        log "cluster '$NAME' runs without a real node; restarting it with --real-node"
    else
        log "cluster '$NAME' has state but is not healthy; restarting it"
    fi
    cluster_stop
elif [[ -d "$CDIR" ]]; then
    # Left over from an interrupted start.
    cluster_stop
fi

for tool in openssl curl setsid base64; do
    require_tool "$tool" "install it with your package manager (Debian: apt-get install openssl curl util-linux coreutils)"
done
"$CLUSTER_SCRIPT_DIR/build.sh"
if [[ "$REAL_NODE" == 1 ]]; then
    "$CLUSTER_SCRIPT_DIR/node/build.sh"
    # shellcheck source=node/start.sh
    . "$CLUSTER_SCRIPT_DIR/node/start.sh"
fi

mkdir -p "$CDIR/pki" "$CDIR/logs" "$CDIR/pids" "$CDIR/etcd" "$CDIR/config"
chmod 700 "$CDIR"

# Anything that fails from here on tears the partial cluster down.
UP_OK=0
on_exit() {
    if [[ "$UP_OK" != 1 ]]; then
        log "start of cluster '$NAME' failed; stopping what was started (logs kept in $CDIR/logs)"
        cluster_stop keep-logs
    fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM
trap 'log "unexpected failure (exit $?) at ${BASH_SOURCE[0]##*/}:$LINENO: $BASH_COMMAND"' ERR

[[ "$REAL_NODE" == 1 ]] && node_preflight
allocate_ports

# --- certificates and kubeconfigs -------------------------------------------------------------
PKI="$CDIR/pki"
openssl_quiet() { openssl "$@" 2>>"$CDIR/logs/pki.log" || die "pki: openssl $1 failed, see $CDIR/logs/pki.log"; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=silo-local-ca-$NAME" \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt"
# sign_cert NAME SUBJECT [EXTENSIONS]: key + certificate signed by the cluster CA.
sign_cert() {
    local name="$1" subject="$2" ext="${3:-extendedKeyUsage=clientAuth}"
    openssl_quiet req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$PKI/$name.key" -out "$PKI/$name.csr"
    printf '%s\n' "$ext" >"$PKI/$name.ext"
    openssl_quiet x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt"
    rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}
# With a real node, pods reach the API server at the node's bridge address too.
APISERVER_SANS='IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local'
[[ "$REAL_NODE" == 1 ]] && APISERVER_SANS+=",IP:$NODE_IP"
sign_cert apiserver "/CN=kube-apiserver" \
    "$(printf '%s\n' 'extendedKeyUsage=serverAuth' "subjectAltName=$APISERVER_SANS")"
# Control-plane components and the admin act as cluster administrators (group system:masters).
for who in admin kube-controller-manager kube-scheduler kwok; do
    sign_cert "$who" "/O=system:masters/CN=silo-$who"
done
openssl_quiet genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key"
openssl_quiet pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"

APISERVER_URL="https://127.0.0.1:$(port_of apiserver)"
b64() { base64 <"$1" | tr -d '\n'; }
# write_kubeconfig FILE WHO: kubeconfig with embedded credentials of WHO.
write_kubeconfig() {
    local file="$1" who="$2"
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NAME
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $NAME-$who
  user:
    client-certificate-data: $(b64 "$PKI/$who.crt")
    client-key-data: $(b64 "$PKI/$who.key")
contexts:
- name: $NAME
  context:
    cluster: $NAME
    user: $NAME-$who
current-context: $NAME
EOF
    chmod 600 "$file"
}
for who in kube-controller-manager kube-scheduler kwok; do
    write_kubeconfig "$CDIR/config/$who.kubeconfig" "$who"
done
write_kubeconfig "$CDIR/kubeconfig.tmp" admin
[[ "$REAL_NODE" == 1 ]] && node_pki

KUBECTL=("$K8S_DIR/bin/kubectl" --kubeconfig "$CDIR/kubeconfig.tmp")

# --- host network ------------------------------------------------------------------------------
# kwok's fake pod and node addresses are blackholed (when root) so nothing sent to them leaves the
# machine; a real node adds its bridge, Service route and firewall (node/net.sh) before the API
# server starts listening on every address.
if [[ "$REAL_NODE" == 1 ]]; then
    node_net_up "$(port_of apiserver)"
else
    blackholes_add
fi
# Only loopback without a real node; with one the API server also serves pods on the bridge.
APISERVER_NET_FLAGS=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --endpoint-reconciler-type none)
[[ "$REAL_NODE" == 1 ]] && mapfile -t APISERVER_NET_FLAGS < <(node_apiserver_flags)

# --- etcd --------------------------------------------------------------------------------------
start_component etcd "$ETCD_DIR/bin/etcd" \
    --name "$NAME" \
    --data-dir "$CDIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$(port_of etcd)" \
    --advertise-client-urls "http://127.0.0.1:$(port_of etcd)" \
    --listen-peer-urls "http://127.0.0.1:$(port_of etcd-peer)" \
    --initial-advertise-peer-urls "http://127.0.0.1:$(port_of etcd-peer)" \
    --initial-cluster "$NAME=http://127.0.0.1:$(port_of etcd-peer)" \
    --unsafe-no-fsync=true \
    --quota-backend-bytes=$((4 * 1024 * 1024 * 1024))
wait_for etcd "etcd to report healthy" \
    curl -fsS "http://127.0.0.1:$(port_of etcd)/health"

# --- kube-apiserver ----------------------------------------------------------------------------
start_component kube-apiserver "$K8S_DIR/bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$(port_of etcd)" \
    "${APISERVER_NET_FLAGS[@]}" \
    --secure-port "$(port_of apiserver)" \
    --cert-dir "$CDIR/pki/apiserver-generated" \
    --tls-cert-file "$PKI/apiserver.crt" \
    --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-cluster-ip-range 10.96.0.0/12 \
    --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
    --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --authorization-mode Node,RBAC \
    --allow-privileged=true \
    --max-requests-inflight 2000 \
    --max-mutating-requests-inflight 1000 \
    --profiling=false
wait_for kube-apiserver "the API server to answer /readyz" \
    "${KUBECTL[@]}" get --raw /readyz

# --- kube-controller-manager, kube-scheduler, kwok --------------------------------------------
# On a kwok-only cluster the node controller waits 5 min (default 50 s) before it calls a node
# unknown: tests stop and start the API server of such a cluster (a customer cluster going
# away), kwok renews its nodes' leases only some time after it is back, and a node called
# unknown meanwhile gets every pod marked NotReady, which kwok never marks Ready again. With a
# real node the default stays, so a kubelet that stops is noticed as usual.
NODE_GRACE=50s
[[ "$REAL_NODE" == 1 ]] || NODE_GRACE=5m
start_component kube-controller-manager "$K8S_DIR/bin/kube-controller-manager" \
    --kubeconfig "$CDIR/config/kube-controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 \
    --secure-port "$(port_of controller-manager)" \
    --leader-elect=false \
    --service-account-private-key-file "$PKI/sa.key" \
    --root-ca-file "$PKI/ca.crt" \
    --flex-volume-plugin-dir "$CDIR/flexvolume" \
    --cluster-signing-cert-file "$PKI/ca.crt" \
    --cluster-signing-key-file "$PKI/ca.key" \
    --kube-api-qps 1000 \
    --kube-api-burst 2000 \
    --concurrent-deployment-syncs 20 \
    --concurrent-replicaset-syncs 20 \
    --concurrent-namespace-syncs 50 \
    --enable-hostpath-provisioner="$([[ "$REAL_NODE" == 1 ]] && echo true || echo false)" \
    --node-monitor-grace-period "$NODE_GRACE" \
    --profiling=false

cat >"$CDIR/config/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $CDIR/config/kube-scheduler.kubeconfig
  qps: 1000
  burst: 2000
leaderElection:
  leaderElect: false
EOF
start_component kube-scheduler "$K8S_DIR/bin/kube-scheduler" \
    --config "$CDIR/config/kube-scheduler.yaml" \
    --bind-address 127.0.0.1 \
    --secure-port "$(port_of scheduler)"

start_component kwok "$KWOK_DIR/bin/kwok" \
    --config "$KWOK_DIR/stages.yaml" \
    --config "$CLUSTER_SCRIPT_DIR/kwok/unpullable-version.yaml" \
    --kubeconfig "$CDIR/config/kwok.kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 \
    --node-ip 10.240.0.1 \
    --node-lease-duration-seconds 40

wait_for kube-controller-manager "the controller manager to answer /healthz" \
    curl -fsSk "https://127.0.0.1:$(port_of controller-manager)/healthz"
wait_for kube-scheduler "the scheduler to answer /healthz" \
    curl -fsSk "https://127.0.0.1:$(port_of scheduler)/healthz"
# The service-account and root-CA publishers of the controller manager are what pods need.
wait_for kube-controller-manager "the default ServiceAccount and kube-root-ca.crt to exist" \
    "${KUBECTL[@]}" -n default get serviceaccount/default configmap/kube-root-ca.crt

# --- fake nodes --------------------------------------------------------------------------------
{
    for i in $(seq 0 $((NODES - 1))); do
        cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: kwok-node-$i
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
status:
  allocatable:
    cpu: "$NODE_CPU"
    memory: $NODE_MEMORY
    pods: "$NODE_PODS"
  capacity:
    cpu: "$NODE_CPU"
    memory: $NODE_MEMORY
    pods: "$NODE_PODS"
EOF
    done
} >"$CDIR/config/nodes.yaml"
"${KUBECTL[@]}" apply -f "$CDIR/config/nodes.yaml" >>"$CDIR/logs/kubectl.log" 2>&1 ||
    die_component kwok "creating the fake nodes failed (kubectl output in $CDIR/logs/kubectl.log)"
wait_for kwok "$NODES fake nodes to become Ready" nodes_ready "$NODES"

# --- real node ---------------------------------------------------------------------------------
[[ "$REAL_NODE" == 1 ]] && node_start

# --- results -----------------------------------------------------------------------------------
mv "$CDIR/kubeconfig.tmp" "$CDIR/kubeconfig"
cat >"$CDIR/env" <<EOF
# Source this file to use cluster '$NAME' with the kubectl and helm it was built with.
export KUBECONFIG="$CDIR/kubeconfig"
export PATH="$(cluster_bin_path):\$PATH"
EOF
[[ "$REAL_NODE" == 1 ]] && node_env >>"$CDIR/env"
printf '%s\n' "$NODES" >"$CDIR/ready"
UP_OK=1
log "cluster '$NAME' is up in $(elapsed "$START")s: API server $APISERVER_URL, $NODES fake nodes$([[ "$REAL_NODE" == 1 ]] && echo ", real node $REAL_NODE_NAME")"
log "kubeconfig: $CDIR/kubeconfig   environment: source $CDIR/env"
printf '%s\n' "$CDIR/kubeconfig"
