# Stop the real node of a cluster and undo what start.sh changed on the host (sourced by
# ../procs.sh; cluster_stop calls node_stop first, then stops the control plane, then
# node_net_down from net.sh). Every step tolerates pieces that are already gone, so a half-started
# node and one whose processes died are cleaned up the same way.
# shellcheck shell=bash

# stop_node_component NAME: SIGTERM, then SIGKILL after 15 s.
stop_node_component() {
    local pid deadline
    pid="$(pid_of "$1")"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null; do
        if [[ $SECONDS -ge $deadline ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.1
    done
}

# kubepods_dirs: the pods' cgroup trees in every hierarchy (cgroup v1 mounts each controller
# separately, e.g. cpu and cpuacct), deepest first.
kubepods_dirs() {
    local top
    for top in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
        if [[ -d "$top" ]]; then find "$top" -depth -type d; fi
    done
    return 0
}

# kill_pod_processes: SIGKILL every process left in the pods' cgroups.
kill_pod_processes() {
    local dir pid
    while read -r dir; do
        [[ -r "$dir/cgroup.procs" ]] || continue
        while read -r pid; do
            kill -KILL "$pid" 2>/dev/null || true
        done <"$dir/cgroup.procs"
    done < <(kubepods_dirs)
    return 0
}

# node_cgroups_remove: remove the kubepods cgroups; fails when processes keep one busy.
node_cgroups_remove() {
    local deadline=$((SECONDS + 15)) left dir
    while :; do
        kill_pod_processes
        left=0
        while read -r dir; do
            rmdir "$dir" 2>/dev/null || left=$((left + 1))
        done < <(kubepods_dirs)
        [[ $left -eq 0 ]] && return 0
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.2
    done
}

# node_unmount: unmount everything under the node's directories, deepest first.
node_unmount() {
    local m
    for m in $(findmnt -rn -o TARGET | awk -v a="$CDIR/node/" -v b="$NODE_SOCKET_DIR/" \
        'index($0, a) == 1 || index($0, b) == 1' | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
    done
}

# node_iptables_cleanup: kubelet's own chains (KUBE-FIREWALL, KUBE-KUBELET-CANARY, ...), anything
# kube-proxy --cleanup left, kube-router's chains (KUBE-ROUTER-INPUT/FORWARD/OUTPUT, KUBE-POD-FW-*,
# KUBE-NWPLCY-*, and the jumps to them from INPUT, FORWARD and OUTPUT) and the CNI portmap
# plugin's CNI-* chains, in IPv4 and IPv6.
node_iptables_cleanup() {
    local cmd table chain num target
    for cmd in iptables ip6tables; do
        command -v "$cmd" >/dev/null 2>&1 || continue
        for table in filter nat mangle raw; do
            "$cmd" -t "$table" -S >/dev/null 2>&1 || continue
            # Rules jumping to those chains, from any chain (highest rule number first).
            for chain in $("$cmd" -t "$table" -S | awk '$1 == "-P" || $1 == "-N" { print $2 }'); do
                "$cmd" -w -t "$table" -n -L "$chain" --line-numbers 2>/dev/null |
                    awk 'NR > 2 && $2 ~ /^(KUBE|CNI)-/ { print $1 }' | sort -rn |
                    while read -r num; do "$cmd" -w -t "$table" -D "$chain" "$num" 2>/dev/null || true; done
            done
            for target in F X; do
                for chain in $("$cmd" -t "$table" -S | awk '$1 == "-N" && $2 ~ /^(KUBE|CNI)-/ { print $2 }'); do
                    "$cmd" -w -t "$table" "-$target" "$chain" 2>/dev/null || true
                done
            done
        done
    done
}

# KUBE_ROUTER_IPSETS: the ipsets kube-router's NetworkPolicy controller creates: KUBE-SRC-* and
# KUBE-DST-* per policy, TMP-<16 base32 characters> while it swaps a set's contents, an "inet6:"
# prefix for IPv6 ones; kube-router-* are its router's (not run here, removed all the same).
KUBE_ROUTER_IPSETS='^(inet6:)?(KUBE-(SRC|DST)-|kube-router-|TMP-[A-Z2-7]{16}$)'

# node_ipsets_cleanup: destroy kube-router's ipsets (after node_iptables_cleanup: a set that a
# rule still references cannot be destroyed; the kernel may release it a moment after the rule).
node_ipsets_cleanup() {
    local deadline=$((SECONDS + 15)) set left
    command -v ipset >/dev/null 2>&1 || return 0
    while :; do
        left=()
        for set in $(ipset list -n 2>/dev/null | grep -E "$KUBE_ROUTER_IPSETS"); do
            ipset destroy "$set" 2>/dev/null || left+=("$set")
        done
        [[ ${#left[@]} -eq 0 ]] && return 0
        if [[ $SECONDS -ge $deadline ]]; then
            log "warning: ipsets still in use, not destroyed: ${left[*]}"
            return 0
        fi
        sleep 0.2
    done
}

# node_host_files_cleanup: files kubelet and the CNI plugins keep in fixed host paths.
node_host_files_cleanup() {
    local f d
    # /var/log/containers/*.log link into the pods' log directory.
    for f in /var/log/containers/*; do
        if [[ -L "$f" && "$(readlink "$f")" == "$CDIR/node/"* ]]; then rm -f "$f"; fi
    done
    # libcni's result cache of this node's network.
    rm -f /var/lib/cni/results/silo-real-node-* 2>/dev/null || true
    # The kubelet's device-plugin socket has a fixed path, whatever its root directory.
    if grep -qx /var/lib/kubelet/device-plugins "$CDIR/node/host-dirs.created" 2>/dev/null; then
        rm -f /var/lib/kubelet/device-plugins/kubelet.sock
    fi
    # Directories created while the node ran (listed by node_record_host_dirs), once empty.
    if [[ -f "$CDIR/node/host-dirs.created" ]]; then
        while read -r d; do
            rmdir "$d" 2>/dev/null || true
        done < <(sort -r "$CDIR/node/host-dirs.created")
    fi
    rm -rf "$NODE_SOCKET_DIR"
    return 0
}

# Host directories kubelet, containerd or the CNI plugins create on first use.
NODE_HOST_DIRS=(/var/log/containers /var/lib/cni/results /var/lib/cni /var/lib/kubelet/device-plugins
    /var/lib/kubelet /run/containerd/s /run/containerd)

node_record_host_dirs() {
    local d
    mkdir -p "$CDIR/node"
    for d in "${NODE_HOST_DIRS[@]}"; do
        [[ -e "$d" ]] || printf '%s\n' "$d"
    done >"$CDIR/node/host-dirs.created"
}

# node_stop: everything of the node except its network (node_net_down).
node_stop() {
    local nd="$CDIR/node" sock id pid ctr logf
    [[ -d "$nd" ]] || return 0
    if [[ $EUID -ne 0 ]]; then
        log "error: cluster '${CDIR##*/}' has a real node; stopping it needs root"
        return 1
    fi
    logf=/dev/null
    [[ -d "$CDIR/logs" ]] && logf="$CDIR/logs/node-stop.log"
    sock="$nd/containerd/containerd.sock"
    # The kubelet first, so that it restarts nothing, kube-proxy and kube-router (which would
    # otherwise put its rules back while they are removed below).
    stop_node_component kubelet
    stop_node_component kube-proxy
    stop_node_component kube-router
    # Pods: their containers through containerd, then whatever is left in their cgroups.
    if [[ -n "$(pid_of containerd)" && -x "$CONTAINERD_DIR/bin/ctr" ]]; then
        ctr=("$CONTAINERD_DIR/bin/ctr" --address "$sock" --namespace k8s.io --timeout 20s)
        for id in $("${ctr[@]}" tasks ls -q 2>>"$logf"); do
            "${ctr[@]}" tasks kill --signal SIGKILL "$id" >>"$logf" 2>&1 || true
        done
        for id in $("${ctr[@]}" tasks ls -q 2>>"$logf"); do
            "${ctr[@]}" tasks delete --force "$id" >>"$logf" 2>&1 || true
        done
    fi
    kill_pod_processes
    stop_node_component containerd
    # Shims of this node's containerd that outlived it (their command line names its socket).
    # shellcheck disable=SC2013 # pids are words
    for pid in $(grep -lsF -- "$sock" /proc/[0-9]*/cmdline | cut -d/ -f3); do
        if { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q '^[^ ]*containerd-shim'; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    # kube-proxy's nftables tables (and iptables chains, were there any).
    if [[ -x "$KUBELET_DIR/bin/kube-proxy" ]]; then
        "$KUBELET_DIR/bin/kube-proxy" --cleanup >>"$logf" 2>&1 || log "warning: kube-proxy --cleanup failed (see $logf)"
    fi
    node_iptables_cleanup
    node_ipsets_cleanup
    node_unmount
    node_cgroups_remove || log "warning: some kubepods cgroups are still busy (see /sys/fs/cgroup/*/kubepods)"
    node_host_files_cleanup
    # The hostPath volumes of the default StorageClass (node/storage.yaml): the cluster's
    # claims go with its state.
    rm -rf /tmp/hostpath_pv
    if findmnt -rn -o TARGET | grep -qF "$nd/"; then
        log "error: mounts under $nd remain: $(findmnt -rn -o TARGET | grep -F "$nd/" | head -n 3 | tr '\n' ' ')"
        return 1
    fi
    return 0
}
