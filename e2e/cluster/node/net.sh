# Host network of the real node (sourced by start.sh and stop.sh; needs ../lib.sh, lib.sh and
# ../procs.sh). What it sets up, and stop.sh removes again:
#   bridge   $NODE_BRIDGE with $NODE_IP: the pods' gateway, the node's InternalIP and the API
#            server's advertised address (the CNI bridge plugin attaches pods to it)
#   svc link $NODE_SERVICE_LINK, a bridge without ports (this kernel has no dummy interfaces)
#            holding the route of the Service range: a host-side connect() to a Service IP needs
#            a route before kube-proxy's DNAT (OUTPUT hook) rewrites it, and a packet to an unused
#            Service IP ends there instead of leaving the machine
#   routes   blackholes for kwok's fake pod and node ranges (shared with kwok-only clusters)
#   nftables table inet silo_real_node (node/nftables.nft): the API server and kubelet answer
#            loopback and the bridge only, kube-router's health port loopback only; nothing is
#            forwarded between the bridge and any other interface, so pods reach each other and
#            this machine, never the outside
#   sysctls  ip_forward and bridge-nf-call-iptables on; the previous values of these and of the
#            ones kubelet and kube-proxy may change are saved in node/sysctl.saved
# shellcheck shell=bash

NODE_NFT_TABLE=silo_real_node
# Sysctls restored on teardown: the two set here, and those kubelet sets at start
# (setupKernelTunables) and kube-proxy may touch (conntrack, route_localnet).
NODE_SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
    vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes
    net.netfilter.nf_conntrack_max net.ipv4.conf.all.route_localnet)

sysctl_file() { printf '/proc/sys/%s' "${1//.//}"; }

# Owner tag written into the bridge's alias: which cluster state has the real node.
node_owner_tag() { printf 'silo-real-node %s' "$CDIR"; }

# node_owner: the cluster directory whose real node this machine runs ("" when none; "?" when
# a $NODE_BRIDGE exists that this project did not create).
node_owner() {
    local alias
    [[ -e "/sys/class/net/$NODE_BRIDGE" ]] || return 0
    alias="$(cat "/sys/class/net/$NODE_BRIDGE/ifalias" 2>/dev/null || true)"
    if [[ "$alias" == "silo-real-node "* ]]; then printf '%s' "${alias#silo-real-node }"; else printf '?'; fi
}

# ip_to_int A.B.C.D and cidr_bounds CIDR ("first last" as integers), for overlap checks.
ip_to_int() {
    local a b c d
    IFS=. read -r a b c d <<<"$1"
    printf '%s' $(((a << 24) | (b << 16) | (c << 8) | d))
}
cidr_bounds() {
    local base size
    base="$(ip_to_int "${1%/*}")"
    size=$((1 << (32 - ${1#*/})))
    base=$((base & ~(size - 1) & 0xffffffff))
    printf '%s %s' "$base" $((base + size - 1))
}
cidrs_overlap() {
    local a1 a2 b1 b2
    read -r a1 a2 <<<"$(cidr_bounds "$1")"
    read -r b1 b2 <<<"$(cidr_bounds "$2")"
    [[ $a1 -le $b2 && $b1 -le $a2 ]]
}

# net_check_free CIDR: fail when an existing IPv4 route overlaps CIDR (other than our own).
net_check_free() {
    local cidr="$1" dst
    while read -r dst; do
        [[ -n "$dst" && "$dst" != default ]] || continue
        [[ "$dst" == */* ]] || dst="$dst/32"
        if cidrs_overlap "$cidr" "$dst"; then
            die_component node-network "$cidr overlaps the existing route to $dst ($(ip -4 route show exact "$dst" | head -n 1)); the real node needs it free"
        fi
    done < <(ip -4 route show | awk '{ if ($1 ~ /^(blackhole|unreachable|prohibit|throw|unicast)$/) print $2; else print $1 }')
}

# node_kernel_check: the kernel features the node needs, each named when missing.
node_kernel_check() {
    local logf
    logf="$(log_of node-network)"
    [[ -d /sys/fs/cgroup/memory || -f /sys/fs/cgroup/cgroup.controllers ]] ||
        die_component node-network "no cgroup hierarchy with the memory controller under /sys/fs/cgroup"
    grep -qw overlay /proc/filesystems || modprobe overlay >>"$logf" 2>&1 ||
        die_component node-network "the kernel has no overlay filesystem (containerd's overlayfs snapshotter needs it)"
    [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter >>"$logf" 2>&1 ||
        die_component node-network "the kernel has no br_netfilter (kube-proxy's rules must see bridged pod traffic)"
    [[ -e /proc/sys/net/netfilter/nf_conntrack_max ]] || modprobe nf_conntrack >>"$logf" 2>&1 ||
        die_component node-network "the kernel has no connection tracking (nf_conntrack)"
    nft list tables >>"$logf" 2>&1 ||
        die_component node-network "nftables does not work here (kernel without nf_tables?)"
    if ! ip link add silo-probe0 type veth peer name silo-probe1 >>"$logf" 2>&1; then
        die_component node-network "the kernel cannot create veth pairs (pods are attached with them)"
    fi
    ip link del silo-probe0 >>"$logf" 2>&1 || true
}

# render TEMPLATE OUT VAR...: copy TEMPLATE to OUT with every @VAR@ replaced by $VAR.
render() {
    local tpl="$1" out="$2" content var
    shift 2
    content="$(<"$tpl")"
    shopt -u patsub_replacement 2>/dev/null || true
    for var in "$@"; do
        content="${content//@$var@/${!var}}"
    done
    if grep -qo '@[A-Z_][A-Z_]*@' <<<"$content"; then
        die "render: $tpl has placeholders left: $(grep -o '@[A-Z_][A-Z_]*@' <<<"$content" | sort -u | tr '\n' ' ')"
    fi
    printf '%s\n' "$content" >"$out"
}

# node_net_up APISERVER_PORT: everything listed at the top of this file.
node_net_up() {
    local nd="$CDIR/node" logf name f
    logf="$(log_of node-network)"
    mkdir -p "$nd"
    node_record_host_dirs
    net_check_free "$NODE_POD_CIDR"
    net_check_free "$SERVICE_CIDR"
    # Host state the teardown compares against (which iptables-nft tables existed before).
    nft list tables 2>/dev/null | awk '{ print $2, $3 }' >"$nd/nft-tables.before"
    if [[ ! -f "$nd/sysctl.saved" ]]; then
        for name in "${NODE_SYSCTLS[@]}"; do
            f="$(sysctl_file "$name")"
            if [[ -e "$f" ]]; then printf '%s %s\n' "$name" "$(<"$f")"; fi
        done >"$nd/sysctl.saved.tmp"
        mv "$nd/sysctl.saved.tmp" "$nd/sysctl.saved"
    fi

    {
        ip link add "$NODE_BRIDGE" type bridge &&
            ip link set "$NODE_BRIDGE" alias "$(node_owner_tag)" &&
            ip addr add "$NODE_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE" &&
            ip link set "$NODE_BRIDGE" up
    } >>"$logf" 2>&1 || die_component node-network "could not create the bridge $NODE_BRIDGE (kernel bridge support?)"
    {
        ip link add "$NODE_SERVICE_LINK" type bridge &&
            ip link set "$NODE_SERVICE_LINK" alias "$(node_owner_tag)" &&
            ip link set "$NODE_SERVICE_LINK" up &&
            ip route add "$SERVICE_CIDR" dev "$NODE_SERVICE_LINK"
    } >>"$logf" 2>&1 || die_component node-network "could not create the interface $NODE_SERVICE_LINK for the route of $SERVICE_CIDR"
    blackholes_add

    # shellcheck disable=SC2034 # used by render
    local APISERVER_PORT="$1"
    render "$NODE_SCRIPT_DIR/nftables.nft" "$nd/nftables.nft" \
        NODE_NFT_TABLE NODE_BRIDGE NODE_IP NODE_POD_CIDR APISERVER_PORT KUBE_ROUTER_HEALTH_PORT
    nft -f "$nd/nftables.nft" >>"$logf" 2>&1 ||
        die_component node-network "loading the node's nftables rules ($nd/nftables.nft) failed"

    { sysctl -w net.ipv4.ip_forward=1 && sysctl -w net.bridge.bridge-nf-call-iptables=1; } >>"$logf" 2>&1 ||
        die_component node-network "could not enable net.ipv4.ip_forward / net.bridge.bridge-nf-call-iptables"
}

# node_net_down: undo node_net_up (each step tolerates what is already gone).
node_net_down() {
    local nd="$CDIR/node" logf name value f link
    [[ $EUID -eq 0 ]] || return 0
    logf="$(log_of node-network)"
    [[ -d "$CDIR/logs" ]] || logf=/dev/null
    if nft list table inet "$NODE_NFT_TABLE" >/dev/null 2>&1; then
        nft delete table inet "$NODE_NFT_TABLE" >>"$logf" 2>&1 || log "warning: could not delete nftables table inet $NODE_NFT_TABLE"
    fi
    for link in "$NODE_SERVICE_LINK" "$NODE_BRIDGE"; do
        [[ -e "/sys/class/net/$link" ]] || continue
        [[ "$(cat "/sys/class/net/$link/ifalias" 2>/dev/null)" == "$(node_owner_tag)" ]] || continue
        ip link del "$link" >>"$logf" 2>&1 || log "warning: could not delete interface $link"
    done
    # veth ends of pods that were still attached go with their network namespaces (stop.sh).
    if [[ -f "$nd/sysctl.saved" ]]; then
        while read -r name value; do
            f="$(sysctl_file "$name")"
            [[ -w "$f" && "$(<"$f")" != "$value" ]] || continue
            printf '%s\n' "$value" >"$f" 2>>"$logf" || log "warning: could not restore $name=$value"
        done <"$nd/sysctl.saved"
    fi
    node_empty_iptables_tables_remove
    blackholes_remove
}

# iptables-nft keeps iptables rules in nftables tables (ip filter, ip6 nat, ...). Those that
# kubelet, kube-proxy or the CNI portmap plugin created while the node ran are removed once
# empty; tables that existed before the node started are left alone.
node_empty_iptables_tables_remove() {
    local nd="$CDIR/node" family table
    [[ -f "$nd/nft-tables.before" ]] || return 0
    while read -r family table; do
        [[ "$family" == ip || "$family" == ip6 ]] || continue
        [[ "$table" =~ ^(filter|nat|mangle|raw|security)$ ]] || continue
        grep -qx "$family $table" "$nd/nft-tables.before" && continue
        # Empty: only base chains without rules or a non-accept policy.
        if nft list table "$family" "$table" 2>/dev/null |
            grep -vE '^\s*(table .*\{|chain [A-Z]+ \{|type .* hook .* policy accept;|\}|)\s*$' | grep -q .; then
            continue
        fi
        nft delete table "$family" "$table" 2>/dev/null || true
    done < <(nft list tables 2>/dev/null | awk '{ print $2, $3 }')
}

# Blackhole routes for kwok's fake pod and node addresses. Any cluster started as root adds them
# (a marker file in its state directory); the last one to stop removes them.
blackholes_add() {
    local cidr
    if [[ $EUID -ne 0 ]] || ! command -v ip >/dev/null 2>&1; then
        log "note: not root, so no blackhole routes for kwok's fake ranges ${KWOK_CIDRS[*]}: never connect to a fake pod's IP"
        return 0
    fi
    exec 6>"$CLUSTERS_DIR/.net.lock"
    flock -w 60 6 || die "could not lock $CLUSTERS_DIR/.net.lock"
    touch "$CDIR/blackholes"
    for cidr in "${KWOK_CIDRS[@]}"; do
        if ip -4 route show exact "$cidr" | grep -q '^blackhole '; then continue; fi
        if ip -4 route show exact "$cidr" | grep -q .; then
            log "warning: $cidr is routed ($(ip -4 route show exact "$cidr")); kwok's fake addresses in it are not blackholed"
            continue
        fi
        ip route add blackhole "$cidr" || die "could not add the blackhole route for $cidr"
    done
    exec 6>&-
}

blackholes_remove() {
    local cidr others
    [[ -f "$CDIR/blackholes" ]] || return 0
    exec 6>"$CLUSTERS_DIR/.net.lock"
    flock -w 60 6 || { log "warning: could not lock $CLUSTERS_DIR/.net.lock; blackhole routes left"; return 0; }
    rm -f "$CDIR/blackholes"
    others="$(find "$CLUSTERS_DIR" -mindepth 2 -maxdepth 2 -name blackholes -print -quit)"
    if [[ -z "$others" ]]; then
        for cidr in "${KWOK_CIDRS[@]}"; do
            ip -4 route show exact "$cidr" | grep -q '^blackhole ' && { ip route del blackhole "$cidr" 2>/dev/null || true; }
        done
    fi
    exec 6>&-
    return 0
}
