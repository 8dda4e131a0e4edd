# Shared definitions for the real node of the local cluster (sourced after ../lib.sh).
# shellcheck shell=bash disable=SC2034

NODE_SCRIPT_DIR="$CLUSTER_SCRIPT_DIR/node"
# shellcheck source=versions.env
. "$NODE_SCRIPT_DIR/versions.env"
for _v in CONTAINERD_VERSION COREDNS_VERSION KUBE_ROUTER_VERSION; do
    [[ -n "${!_v:-}" ]] || die "$_v is not set in node/versions.env"
done
unset _v

# Cache directories, one per component and version (a ".complete" marker each).
KUBELET_DIR="$SILO_CACHE/kubelet/$KUBERNETES_VERSION"      # kubelet, kube-proxy
CONTAINERD_DIR="$SILO_CACHE/containerd/$CONTAINERD_VERSION" # containerd, shim, ctr
COREDNS_DIR="$SILO_CACHE/coredns/$COREDNS_VERSION"
KUBE_ROUTER_DIR="$SILO_CACHE/kube-router/$KUBE_ROUTER_VERSION"
PAUSE_DIR="$SILO_CACHE/pause/$KUBERNETES_VERSION"
IMAGES_DIR="$SILO_CACHE/images"                             # images/<name>/<version>/image.tar

# Pause image version: the TAG of build/pause/Makefile in the Kubernetes release.
PAUSE_TAG=3.10.2

# Images never come from a registry: they are built here and imported into containerd. The
# "silo.local" names make clear that no registry serves them.
PAUSE_IMAGE="silo.local/node/pause:$PAUSE_TAG"
COREDNS_IMAGE="silo.local/node/coredns:${COREDNS_VERSION#v}"

# The node as the cluster sees it.
REAL_NODE_NAME=real-node-0
REAL_NODE_LABEL_KEY=silo.dev/node
REAL_NODE_LABEL_VALUE=real

# Addresses. Pods live on the bridge NODE_BRIDGE in NODE_POD_CIDR; its first address is the
# node's InternalIP and the API server's advertised address. kwok fakes pods in 10.244.0.0/16 and
# its node IP is 10.240.0.1; Services are 10.96.0.0/12 (see ../up.sh).
NODE_POD_CIDR=10.89.0.0/24
NODE_IP=10.89.0.1
NODE_BRIDGE=silo0
NODE_SERVICE_LINK=silo-svc0   # holds the Service range route (see net.sh)
SERVICE_CIDR=10.96.0.0/12
CLUSTER_DNS_IP=10.96.0.10
KWOK_CIDRS=(10.244.0.0/16 10.240.0.0/16)
# kube-router's health endpoint. It listens on every address (kube-router 2.1 has no bind-address
# flag for it); the node's nftables table drops it from anything but loopback. Its metrics are off.
KUBE_ROUTER_HEALTH_PORT=10260
# Host-wide ports of the node's processes (only one real node per machine).
NODE_PORTS=(10250 10248 10249 10256 "$KUBE_ROUTER_HEALTH_PORT")
# Short directory for the containerd shims' sockets (their paths must stay under 42 characters).
NODE_SOCKET_DIR=/run/silo-real-node

# Debian packages the node needs (installed by build.sh when missing) and the commands that
# must then be on PATH.
NODE_PACKAGES=(runc containernetworking-plugins iptables nftables conntrack socat ipset
    busybox-static gcc libc6-dev iproute2 util-linux python3)
NODE_COMMANDS=(runc iptables ip6tables nft conntrack socat ipset gcc ip findmnt python3)
CNI_BIN_DIR=/usr/lib/cni

# Test image (busybox-static), tagged with the Debian package version.
busybox_version() {
    dpkg-query -W -f '${Version}' busybox-static 2>/dev/null | tr -c 'A-Za-z0-9_.\n-' '_'
}
busybox_image() { printf 'silo.local/e2e/busybox:%s' "$(busybox_version)"; }

# image_archive NAME VERSION: path of a built image archive in the cache.
image_archive() { printf '%s' "$IMAGES_DIR/$1/$2/image.tar"; }

node_bin_path() { printf '%s' "$CONTAINERD_DIR/bin:$KUBELET_DIR/bin"; }

# archive_image ARCHIVE: "REF DIGEST" of the image in an OCI archive (from its index.json).
archive_image() {
    tar -xOf "$1" index.json 2>/dev/null | python3 -c '
import json, sys
m = json.load(sys.stdin)["manifests"][0]
print(m["annotations"]["io.containerd.image.name"], m["digest"])' 2>/dev/null
}

# import_image SOCKET ARCHIVE: import an OCI archive into containerd's k8s.io namespace (the one
# the kubelet uses) unless that image is there with the same manifest digest, and pin it
# (label io.cri-containerd.pinned): the kubelet never removes a pinned image, neither by image
# garbage collection nor to reclaim disk space under pressure, and an image pods use with
# `imagePullPolicy: Never` cannot come back once removed.
import_image() {
    local sock="$1" archive="$2" ref digest current ctr out
    ctr=("$CONTAINERD_DIR/bin/ctr" --address "$sock" --namespace k8s.io)
    [[ -f "$archive" ]] || { printf 'no such archive: %s\n' "$archive" >&2; return 1; }
    read -r ref digest <<<"$(archive_image "$archive")"
    [[ -n "$ref" && "$digest" == sha256:* ]] ||
        { printf '%s is not an OCI archive with an io.containerd.image.name annotation\n' "$archive" >&2; return 1; }
    # (ctr warns on every call that cgroup v1 is deprecated; only failures are shown.)
    current="$("${ctr[@]}" images ls "name==$ref" 2>/dev/null | awk 'NR > 1 { print $3 }')"
    if [[ "$current" == "$digest" ]]; then
        pin_image "$sock" "$ref" || return 1
        printf '%s: already imported (%s)\n' "$ref" "$digest"
        return 0
    fi
    if ! out="$("${ctr[@]}" images import "$archive" 2>&1)"; then
        printf '%s\n' "$out" >&2
        return 1
    fi
    current="$("${ctr[@]}" images ls "name==$ref" 2>/dev/null | awk 'NR > 1 { print $3 }')"
    [[ "$current" == "$digest" ]] ||
        { printf '%s: imported, but containerd reports digest %s instead of %s\n' "$ref" "$current" "$digest" >&2; return 1; }
    pin_image "$sock" "$ref" || return 1
    printf '%s: imported (%s)\n' "$ref" "$digest"
}

# pin_image SOCKET REF: label image REF pinned for the CRI (and so for the kubelet).
pin_image() {
    local out
    if ! out="$("$CONTAINERD_DIR/bin/ctr" --address "$1" --namespace k8s.io images label "$2" \
        io.cri-containerd.pinned=pinned 2>&1)"; then
        printf 'pinning %s failed: %s\n' "$2" "$out" >&2
        return 1
    fi
}
