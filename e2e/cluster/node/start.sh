# Start the real node of a cluster (sourced by ../up.sh for --real-node; uses its sign_cert,
# write_kubeconfig and KUBECTL). Order inside up.sh:
#   node_preflight   root, kernel features, host-wide ports, no other cluster owns the node
#   node_pki         kubelet (client + serving), kube-proxy, kube-router, API server -> kubelet
#                    certificates
#   node_net_up      bridge, Service route, blackholes, nftables, sysctls (net.sh); before the
#                    API server, which listens on every address once the firewall is in place
#   node_start       containerd (+ pause/CoreDNS images) -> kubelet (node Ready) -> kube-proxy
#                    -> kube-router (NetworkPolicies, first sync done) -> CoreDNS (Ready)
# shellcheck shell=bash disable=SC2153 # names from lib.sh and up.sh

# node_preflight: fail before anything is started when the real node cannot run here.
node_preflight() {
    local owner port
    [[ $EUID -eq 0 ]] ||
        die "--real-node needs root (kubelet, containerd, a bridge, routes, nftables and cgroups are host-wide)"
    [[ "$(uname -s)" == Linux ]] || die "--real-node needs Linux"
    # One real node per machine: pods' cgroups, port 10250 and the iptables chains are shared.
    # The lock stays held until up.sh exits; start_component closes it for the children.
    exec 5>"$CLUSTERS_DIR/.real-node.lock"
    flock -w 900 5 || die "another up.sh --real-node holds $CLUSTERS_DIR/.real-node.lock"
    owner="$(node_owner)"
    if [[ "$owner" == "?" ]]; then
        die "real node: a network interface '$NODE_BRIDGE' exists that this project did not create; remove it or stop what uses it"
    elif [[ -n "$owner" && "$owner" != "$CDIR" ]]; then
        die "real node: cluster '${owner##*/}' ($owner) already has the real node of this machine (only one cluster can); stop it with e2e/cluster/down.sh ${owner##*/}, or start '$NAME' without --real-node"
    fi
    for port in "${NODE_PORTS[@]}"; do
        if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
            die_component kubelet "port $port is already in use on this machine (another kubelet or kube-proxy?): $(ss -Hltnp "sport = :$port" | head -n 1)"
        fi
    done
    if [[ -n "$(find /sys/fs/cgroup -maxdepth 2 -name kubepods -type d -print -quit 2>/dev/null)" ]]; then
        # Left over from a node that was not stopped; empty ones are removed, busy ones refused.
        node_cgroups_remove ||
            die_component kubelet "kubepods cgroups with running processes exist under /sys/fs/cgroup (another kubelet on this machine?)"
    fi
    node_kernel_check
}

# node_pki: certificates and kubeconfigs of the node's processes (signed by the cluster CA).
node_pki() {
    # The kubelet is node real-node-0 to the Node authorizer.
    sign_cert kubelet-client "/O=system:nodes/CN=system:node:$REAL_NODE_NAME"
    sign_cert kubelet-serving "/CN=$REAL_NODE_NAME" \
        "$(printf '%s\n' 'extendedKeyUsage=serverAuth' "subjectAltName=IP:$NODE_IP,DNS:$REAL_NODE_NAME")"
    # The API server calls the kubelet (logs, exec, port-forward) as a cluster administrator,
    # which the kubelet's webhook authorizer allows.
    sign_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    # Bound to the system:node-proxier ClusterRole by the API server's default RBAC.
    sign_cert kube-proxy "/CN=system:kube-proxy"
    # Bound to the read-only ClusterRole silo:kube-router (node/kube-router-rbac.yaml).
    sign_cert kube-router "/CN=silo:kube-router"
    write_kubeconfig "$CDIR/config/kubelet.kubeconfig" kubelet-client
    write_kubeconfig "$CDIR/config/kube-proxy.kubeconfig" kube-proxy
    write_kubeconfig "$CDIR/config/kube-router.kubeconfig" kube-router
}

# node_apiserver_flags: the API server flags a real node needs (printed one per line).
node_apiserver_flags() {
    printf '%s\n' \
        --bind-address 0.0.0.0 \
        --advertise-address "$NODE_IP" \
        --endpoint-reconciler-type lease \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" \
        --kubelet-preferred-address-types InternalIP
}

real_node_ready() {
    [[ "$("${KUBECTL[@]}" get node "$REAL_NODE_NAME" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

# coredns_ready: the CoreDNS Deployment has its replica Ready; otherwise its pods are described
# into logs/coredns.log for the failure message.
coredns_ready() {
    local ready
    ready="$("${KUBECTL[@]}" -n kube-system get deployment coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null)"
    [[ "$ready" == 1 ]] && return 0
    "${KUBECTL[@]}" -n kube-system describe pods -l k8s-app=kube-dns >"$(log_of coredns)" 2>&1 || true
    return 1
}

# kube_router_synced: kube-router's first full NetworkPolicy sync is in the filter table. The sync
# writes the whole table with one iptables-restore, and only its rules end KUBE-ROUTER-FORWARD
# with the ACCEPT of traffic marked as allowed (its /healthz answers before the first sync).
kube_router_synced() {
    iptables -w 5 -t filter -S KUBE-ROUTER-FORWARD 2>/dev/null |
        grep -qF 'rule to explicitly ACCEPT traffic that comply to network policies'
}

# shellcheck disable=SC2034 # NODE_DIR, RUNC, ... are used by render
node_start() {
    local start archive
    start="$(now_s)"
    # Names the templates use.
    NODE_DIR="$CDIR/node"
    CONTAINERD_SOCK="$NODE_DIR/containerd/containerd.sock"
    RUNC="$(command -v runc)"
    mkdir -p "$NODE_DIR/containerd/certs.d/_default" "$NODE_DIR/cni/net.d" "$NODE_DIR/kubelet" \
        "$NODE_DIR/pod-logs" "$NODE_SOCKET_DIR"
    chmod 700 "$NODE_SOCKET_DIR"

    # --- containerd and the images the node needs ---
    render "$NODE_SCRIPT_DIR/containerd.toml" "$NODE_DIR/containerd.toml" \
        NODE_DIR CONTAINERD_SOCK NODE_SOCKET_DIR PAUSE_IMAGE RUNC CNI_BIN_DIR
    cp "$NODE_SCRIPT_DIR/hosts.toml" "$NODE_DIR/containerd/certs.d/_default/hosts.toml"
    render "$NODE_SCRIPT_DIR/cni.conflist" "$NODE_DIR/cni/net.d/10-silo.conflist" \
        NODE_BRIDGE NODE_POD_CIDR NODE_IP NODE_DIR SERVICE_CIDR
    start_component containerd "$CONTAINERD_DIR/bin/containerd" --config "$NODE_DIR/containerd.toml"
    wait_for containerd "containerd to answer on $CONTAINERD_SOCK" \
        "$CONTAINERD_DIR/bin/ctr" --address "$CONTAINERD_SOCK" version
    for archive in "$(image_archive pause "$PAUSE_TAG")" "$(image_archive coredns "${COREDNS_VERSION#v}")"; do
        import_image "$CONTAINERD_SOCK" "$archive" >>"$(log_of images)" 2>&1 ||
            die_component images "importing $archive into containerd failed"
    done

    # --- kubelet ---
    printf '%s\n' '# No nameservers: pods resolve cluster names through CoreDNS and nothing else.' \
        >"$NODE_DIR/resolv.conf"
    render "$NODE_SCRIPT_DIR/kubelet.yaml" "$NODE_DIR/kubelet.yaml" \
        CONTAINERD_SOCK NODE_IP PKI REAL_NODE_LABEL_KEY REAL_NODE_LABEL_VALUE CLUSTER_DNS_IP NODE_DIR
    start_component kubelet "$KUBELET_DIR/bin/kubelet" \
        --config "$NODE_DIR/kubelet.yaml" \
        --kubeconfig "$CDIR/config/kubelet.kubeconfig" \
        --root-dir "$NODE_DIR/kubelet" \
        --cert-dir "$NODE_DIR/kubelet/pki" \
        --hostname-override "$REAL_NODE_NAME" \
        --node-ip "$NODE_IP" \
        --node-labels "$REAL_NODE_LABEL_KEY=$REAL_NODE_LABEL_VALUE"
    wait_for kubelet "node $REAL_NODE_NAME to register and become Ready" real_node_ready

    # --- kube-proxy ---
    render "$NODE_SCRIPT_DIR/kube-proxy.yaml" "$NODE_DIR/kube-proxy.yaml" CDIR REAL_NODE_NAME NODE_POD_CIDR NODE_IP
    start_component kube-proxy "$KUBELET_DIR/bin/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml"
    wait_for kube-proxy "kube-proxy to report healthy on 127.0.0.1:10256" \
        curl -fsS http://127.0.0.1:10256/healthz

    # --- kube-router: NetworkPolicy enforcement only (iptables filter rules and ipsets) ---
    # No router, service proxy, load balancer or CNI of its own; IPv4 only like the node;
    # metrics off. It accepts anything a local address of the node sends to a pod (kubelet
    # probes, connections from this machine), whatever the policies say.
    "${KUBECTL[@]}" apply -f "$NODE_SCRIPT_DIR/kube-router-rbac.yaml" >>"$CDIR/logs/kubectl.log" 2>&1 ||
        die_component kube-router "applying $NODE_SCRIPT_DIR/kube-router-rbac.yaml failed (kubectl output in $CDIR/logs/kubectl.log)"
    start_component kube-router "$KUBE_ROUTER_DIR/bin/kube-router" \
        --kubeconfig "$CDIR/config/kube-router.kubeconfig" \
        --hostname-override "$REAL_NODE_NAME" \
        --run-firewall=true \
        --run-router=false \
        --run-service-proxy=false \
        --run-loadbalancer=false \
        --enable-cni=false \
        --enable-ipv4=true \
        --enable-ipv6=false \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --health-port "$KUBE_ROUTER_HEALTH_PORT" \
        --metrics-port 0 \
        --v 1
    wait_for kube-router "kube-router to answer /healthz on 127.0.0.1:$KUBE_ROUTER_HEALTH_PORT" \
        curl -fsS "http://127.0.0.1:$KUBE_ROUTER_HEALTH_PORT/healthz"
    wait_for kube-router "kube-router's first NetworkPolicy sync (KUBE-ROUTER-FORWARD in the iptables filter table)" \
        kube_router_synced

    # --- CoreDNS ---
    render "$NODE_SCRIPT_DIR/coredns.yaml" "$NODE_DIR/coredns.yaml" \
        REAL_NODE_LABEL_KEY REAL_NODE_LABEL_VALUE COREDNS_IMAGE CLUSTER_DNS_IP
    "${KUBECTL[@]}" apply -f "$NODE_DIR/coredns.yaml" >>"$(log_of coredns)" 2>&1 ||
        die_component coredns "applying $NODE_DIR/coredns.yaml failed"
    wait_for coredns "CoreDNS to become Ready on $REAL_NODE_NAME" coredns_ready

    # --- storage: the default StorageClass (hostPath volumes on this machine) ---
    "${KUBECTL[@]}" apply -f "$NODE_SCRIPT_DIR/storage.yaml" >>"$(log_of kubelet)" 2>&1 ||
        die_component kubelet "applying $NODE_SCRIPT_DIR/storage.yaml failed"

    touch "$NODE_DIR/ready"
    log "real node $REAL_NODE_NAME is Ready with kube-router and CoreDNS in $(elapsed "$start")s (pods in $NODE_POD_CIDR on $NODE_BRIDGE)"
}

# node_env: lines for the cluster's env file.
node_env() {
    cat <<EOF
# The real node: pods with nodeSelector $REAL_NODE_LABEL_KEY=$REAL_NODE_LABEL_VALUE and a toleration of
# the taint $REAL_NODE_LABEL_KEY=$REAL_NODE_LABEL_VALUE:NoSchedule run there; ctr talks to its containerd.
export SILO_REAL_NODE="$REAL_NODE_NAME"
export SILO_CONTAINERD_ADDRESS="$CDIR/node/containerd/containerd.sock"
export CONTAINERD_ADDRESS="$CDIR/node/containerd/containerd.sock"
export CONTAINERD_NAMESPACE=k8s.io
export SILO_BUSYBOX_IMAGE="$(busybox_image)"
export SILO_BUSYBOX_IMAGE_ARCHIVE="$(image_archive busybox "$(busybox_version)")"
export PATH="$(node_bin_path):\$PATH"
EOF
}
