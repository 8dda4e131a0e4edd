#!/usr/bin/env bash
# Build (or reuse) the pieces of the real node (up.sh --real-node) in the cache directory:
#   packages    Debian packages: runc, CNI plugins, iptables, nftables, ... (apt-get, only if missing)
#   kubelet     kubelet, kube-proxy            (k8s.io/kubernetes, the go.mod written by ../build.sh)
#   containerd  containerd, containerd-shim-runc-v2, ctr  (Go module github.com/containerd/containerd/v2)
#   coredns     coredns with the cluster-DNS plugins only (Go module github.com/coredns/coredns)
#   netpol      kube-router, run as the NetworkPolicy engine only (Go module
#               github.com/cloudnativelabs/kube-router/v2)
#   pause       the pod sandbox's pause binary (build/pause/linux/pause.c of k8s.io/kubernetes)
#   images      OCI archives of pause, coredns and the busybox test image (e2e/images/oci-image.py)
# Each component lives under $SILO_CACHE/<component>/<version>/ and is rebuilt only when its
# directory lacks the ".complete" marker. Usage: node/build.sh [COMPONENT...]  (default: all)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$CLUSTER_SCRIPT_DIR/node/lib.sh"

OCI_IMAGE_TOOL="$CLUSTER_SCRIPT_DIR/../images/oci-image.py"

build_packages() {
    local missing=() pkg cmd
    if command -v dpkg-query >/dev/null 2>&1; then
        for pkg in "${NODE_PACKAGES[@]}"; do
            [[ "$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null)" == installed ]] || missing+=("$pkg")
        done
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        [[ $EUID -eq 0 ]] ||
            die "packages: the real node needs Debian packages ${missing[*]}; as root run: apt-get install -y ${missing[*]}"
        log "installing Debian packages: ${missing[*]}"
        mkdir -p "$SILO_CACHE"
        quiet "$SILO_CACHE/apt.log" apt-get update ||
            die "packages: apt-get update failed, see $SILO_CACHE/apt.log"
        DEBIAN_FRONTEND=noninteractive quiet "$SILO_CACHE/apt.log" apt-get install -y "${missing[@]}" ||
            die "packages: apt-get install ${missing[*]} failed, see $SILO_CACHE/apt.log"
    fi
    for cmd in "${NODE_COMMANDS[@]}"; do
        command -v "$cmd" >/dev/null 2>&1 ||
            die "packages: command '$cmd' not found (on Debian: apt-get install -y ${NODE_PACKAGES[*]})"
    done
    for cmd in bridge host-local loopback portmap; do
        [[ -x "$CNI_BIN_DIR/$cmd" ]] || die "packages: CNI plugin $CNI_BIN_DIR/$cmd missing (apt-get install -y containernetworking-plugins)"
    done
}

# -ldflags stamping the release into the binaries, as ../build.sh does for the control plane.
kubernetes_ldflags() {
    local major minor flags="-s -w" pkg key
    major="${KUBERNETES_VERSION#v}"
    major="${major%%.*}"
    minor="${KUBERNETES_VERSION#v*.}"
    minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        for key in gitVersion:"$KUBERNETES_VERSION" gitMajor:"$major" gitMinor:"$minor" gitTreeState:clean \
            buildDate:"$(date -u +%Y-%m-%dT%H:%M:%SZ)"; do
            flags+=" -X $pkg.${key%%:*}=${key#*:}"
        done
    done
    printf '%s' "$flags"
}

build_kubelet() {
    if [[ -f "$KUBELET_DIR/.complete" ]]; then return 0; fi
    local start src pkgs
    start="$(now_s)"
    src="$K8S_DIR/src"
    [[ -f "$K8S_DIR/.complete" && -f "$src/go.mod" ]] ||
        die "kubelet: $src/go.mod is missing; run e2e/cluster/build.sh kubernetes first"
    log "building kubelet and kube-proxy $KUBERNETES_VERSION"
    mkdir -p "$KUBELET_DIR"
    pkgs=(k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
    # The go.mod maps the staging modules (see build_kubernetes in ../build.sh); add what these
    # two commands need on top of the control plane.
    quiet "$KUBELET_DIR/go-get.log" go -C "$src" get "${pkgs[@]/%/@$KUBERNETES_VERSION}" ||
        die "kubelet: resolving modules for ${pkgs[*]} failed, see $KUBELET_DIR/go-get.log"
    rm -rf "${KUBELET_DIR:?}/bin"
    mkdir -p "$KUBELET_DIR/bin"
    (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags="$(kubernetes_ldflags)" -o "$KUBELET_DIR/bin/" "${pkgs[@]}") ||
        die "kubelet: go build of ${pkgs[*]} failed (see above)"
    touch "$KUBELET_DIR/.complete"
    log "kubelet: built in $(elapsed "$start")s"
}

build_containerd() {
    if [[ -f "$CONTAINERD_DIR/.complete" ]]; then return 0; fi
    local start m=github.com/containerd/containerd/v2 pkgs
    start="$(now_s)"
    log "building containerd $CONTAINERD_VERSION"
    go_workdir "$CONTAINERD_DIR/src" containerd
    pkgs=("$m/cmd/containerd" "$m/cmd/containerd-shim-runc-v2" "$m/cmd/ctr")
    quiet "$CONTAINERD_DIR/go-get.log" go -C "$CONTAINERD_DIR/src" get "${pkgs[@]/%/@$CONTAINERD_VERSION}" ||
        die "containerd: resolving $m@$CONTAINERD_VERSION failed, see $CONTAINERD_DIR/go-get.log"
    rm -rf "${CONTAINERD_DIR:?}/bin"
    mkdir -p "$CONTAINERD_DIR/bin"
    # Static binaries without the btrfs and devmapper snapshotters (they need C headers); the
    # node uses overlayfs.
    (cd "$CONTAINERD_DIR/src" && CGO_ENABLED=0 go build -trimpath -tags no_btrfs,no_devmapper \
        -ldflags="-s -w -X $m/version.Version=$CONTAINERD_VERSION -X $m/version.Package=$m" \
        -o "$CONTAINERD_DIR/bin/" "${pkgs[@]}") ||
        die "containerd: go build of ${pkgs[*]} failed (see above)"
    touch "$CONTAINERD_DIR/.complete"
    log "containerd: built in $(elapsed "$start")s"
}

# CoreDNS plugins compiled in. The upstream binary registers every plugin of plugin.cfg; this
# one has only what a cluster-local resolver needs and no forwarding plugin (forward, grpc, ...),
# so no Corefile can make it send a query off this machine.
COREDNS_PLUGINS=(errors log health ready kubernetes cache reload loadbalance)

build_coredns() {
    if [[ -f "$COREDNS_DIR/.complete" ]]; then return 0; fi
    local start m=github.com/coredns/coredns p pkgs=()
    start="$(now_s)"
    log "building CoreDNS $COREDNS_VERSION (plugins: ${COREDNS_PLUGINS[*]})"
    go_workdir "$COREDNS_DIR/src" coredns
    {
        echo '// Generated by e2e/cluster/node/build.sh: CoreDNS with a fixed, small plugin set.'
        echo 'package main'
        echo
        echo 'import ('
        echo "	\"$m/coremain\""
        for p in "${COREDNS_PLUGINS[@]}"; do
            echo "	_ \"$m/plugin/$p\""
            pkgs+=("$m/plugin/$p@$COREDNS_VERSION")
        done
        echo ')'
        echo
        echo 'func main() { coremain.Run() }'
    } >"$COREDNS_DIR/src/main.go"
    quiet "$COREDNS_DIR/go-get.log" go -C "$COREDNS_DIR/src" get "$m/coremain@$COREDNS_VERSION" "${pkgs[@]}" ||
        die "coredns: resolving $m@$COREDNS_VERSION failed, see $COREDNS_DIR/go-get.log"
    rm -rf "${COREDNS_DIR:?}/bin"
    mkdir -p "$COREDNS_DIR/bin"
    (cd "$COREDNS_DIR/src" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$COREDNS_DIR/bin/coredns" .) ||
        die "coredns: go build failed (see above)"
    if "$COREDNS_DIR/bin/coredns" -plugins | grep -qE '^ *dns\.(forward|grpc)$'; then
        die "coredns: the built binary registers a forwarding plugin"
    fi
    touch "$COREDNS_DIR/.complete"
    log "coredns: built in $(elapsed "$start")s"
}

# kube-router enforces NetworkPolicies (its firewall controller: iptables and ipset); start.sh
# runs it without its router and service proxy.
build_netpol() {
    if [[ -f "$KUBE_ROUTER_DIR/.complete" ]]; then return 0; fi
    local start m=github.com/cloudnativelabs/kube-router/v2 pkg reported
    start="$(now_s)"
    pkg="$m/cmd/kube-router"
    log "building kube-router $KUBE_ROUTER_VERSION (NetworkPolicy enforcement)"
    go_workdir "$KUBE_ROUTER_DIR/src" kube-router
    quiet "$KUBE_ROUTER_DIR/go-get.log" go -C "$KUBE_ROUTER_DIR/src" get "$pkg@$KUBE_ROUTER_VERSION" ||
        die "netpol: resolving $m@$KUBE_ROUTER_VERSION failed, see $KUBE_ROUTER_DIR/go-get.log"
    rm -rf "${KUBE_ROUTER_DIR:?}/bin"
    mkdir -p "$KUBE_ROUTER_DIR/bin"
    (cd "$KUBE_ROUTER_DIR/src" && CGO_ENABLED=0 go build -trimpath \
        -ldflags="-s -w -X $m/pkg/version.Version=$KUBE_ROUTER_VERSION -X $m/pkg/version.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        -o "$KUBE_ROUTER_DIR/bin/kube-router" "$pkg") ||
        die "netpol: go build of $pkg failed (see above)"
    reported="$("$KUBE_ROUTER_DIR/bin/kube-router" --version 2>&1 || true)"
    [[ "$reported" == *"version $KUBE_ROUTER_VERSION,"* ]] ||
        die "netpol: the built $KUBE_ROUTER_DIR/bin/kube-router does not report version $KUBE_ROUTER_VERSION"
    touch "$KUBE_ROUTER_DIR/.complete"
    log "netpol: kube-router built in $(elapsed "$start")s"
}

build_pause() {
    if [[ -f "$PAUSE_DIR/.complete" ]]; then return 0; fi
    local start moddir
    start="$(now_s)"
    moddir="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "$moddir/build/pause/linux/pause.c" ]] ||
        die "pause: build/pause/linux/pause.c not found in k8s.io/kubernetes@$KUBERNETES_VERSION ($moddir)"
    grep -q "^TAG ?= $PAUSE_TAG\$" "$moddir/build/pause/Makefile" ||
        die "pause: build/pause/Makefile of $KUBERNETES_VERSION has another TAG than PAUSE_TAG=$PAUSE_TAG (node/lib.sh)"
    rm -rf "$PAUSE_DIR"
    mkdir -p "$PAUSE_DIR/bin"
    # The flags of the upstream Makefile: a small static binary.
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_TAG-$KUBERNETES_VERSION" \
        -o "$PAUSE_DIR/bin/pause" "$moddir/build/pause/linux/pause.c" ||
        die "pause: gcc failed (on Debian: apt-get install -y gcc libc6-dev)"
    touch "$PAUSE_DIR/.complete"
    log "pause: built in $(elapsed "$start")s"
}

# --- images ------------------------------------------------------------------------------------
rootfs_pause() { install -m 0755 "$PAUSE_DIR/bin/pause" "$1/pause"; }

rootfs_coredns() { install -m 0755 "$COREDNS_DIR/bin/coredns" "$1/coredns"; }

# busybox with its applets as symlinks, a passwd file and a resolver configuration.
rootfs_busybox() {
    local root="$1" applet
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root"
    chmod 1777 "$root/tmp"
    install -m 0755 /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ "$applet" == busybox ]] || ln -s busybox "$root/bin/$applet"
    done
    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/:/bin/false' >"$root/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$root/etc/group"
    printf '%s\n' 'hosts: files dns' >"$root/etc/nsswitch.conf"
}

# build_image NAME VERSION REF ROOTFS_FUNCTION [oci-image.py options...]: image archive in
# images/NAME/VERSION/, rebuilt when the reference or oci-image.py changed.
build_image() {
    local name="$1" version="$2" ref="$3" populate="$4" dir stamp
    shift 4
    dir="$IMAGES_DIR/$name/$version"
    stamp="$ref $(sha256sum "$OCI_IMAGE_TOOL" | cut -d' ' -f1)"
    if [[ -f "$dir/.complete" && "$(cat "$dir/.complete")" == "$stamp" ]]; then return 0; fi
    rm -rf "$dir"
    mkdir -p "$dir/rootfs"
    "$populate" "$dir/rootfs"
    python3 "$OCI_IMAGE_TOOL" --name "$ref" --out "$dir/image.tar" --layer "$dir/rootfs" "$@" \
        >"$dir/build.json" 2>"$dir/build.log" ||
        { cat "$dir/build.log" >&2; die "images: oci-image.py failed for $ref"; }
    rm -rf "$dir/rootfs"
    printf '%s\n' "$stamp" >"$dir/.complete"
    log "images: $ref -> $dir/image.tar"
}

build_images() {
    [[ -f "$OCI_IMAGE_TOOL" ]] || die "images: $OCI_IMAGE_TOOL is missing"
    require_tool python3 "install Python 3 (Debian: apt-get install -y python3)"
    build_pause
    build_coredns
    build_image pause "$PAUSE_TAG" "$PAUSE_IMAGE" rootfs_pause \
        --entrypoint '["/pause"]' --user 65535:65535
    build_image coredns "${COREDNS_VERSION#v}" "$COREDNS_IMAGE" rootfs_coredns \
        --entrypoint '["/coredns"]' --user 65532:65532 --expose 1053/udp --expose 1053/tcp
    [[ -x /bin/busybox ]] || die "images: /bin/busybox missing (apt-get install -y busybox-static)"
    build_image busybox "$(busybox_version)" "$(busybox_image)" rootfs_busybox --cmd '["sh"]'
}

main() {
    local what=("$@") c
    [[ ${#what[@]} -gt 0 ]] || what=(packages kubelet containerd coredns netpol pause images)
    for c in "${what[@]}"; do
        declare -F "build_$c" >/dev/null || die "unknown component '$c' (packages kubelet containerd coredns netpol pause images)"
    done
    require_tool go "install the Go toolchain (1.26 or newer)"
    # kubelet builds in the Kubernetes module directory that ../build.sh prepares (under the same
    # lock, so before taking it here).
    if [[ " ${what[*]} " == *" kubelet "* && ! -f "$KUBELET_DIR/.complete" ]]; then
        "$CLUSTER_SCRIPT_DIR/build.sh" kubernetes
    fi
    mkdir -p "$SILO_CACHE"
    require_tool flock "install util-linux"
    exec 7>"$SILO_CACHE/.build.lock"
    flock 7
    for c in "${what[@]}"; do
        "build_$c"
    done
}

main "$@"
