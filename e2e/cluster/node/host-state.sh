#!/usr/bin/env bash
# Print the host state a real node touches, to compare before `up.sh --real-node` and after
# `down.sh`: routes, links, addresses, nftables and iptables rules, ipsets, mounts, cgroups,
# sysctls, network namespaces, the node's processes and the host directories kubelet/containerd/CNI
# use.
# Usage: node/host-state.sh >before.txt; up.sh --real-node; down.sh; node/host-state.sh | diff before.txt -
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
. "$CLUSTER_SCRIPT_DIR/node/lib.sh"
. "$CLUSTER_SCRIPT_DIR/node/net.sh"

section() { printf '== %s\n' "$1"; }
section 'ip route (all tables)'
ip route show table all | sort
section 'ip link'
ip -br link show | awk '{ print $1, $2 }' | sort
section 'ip addr'
ip -br addr show | sort
section 'ip netns'
ip netns list 2>/dev/null
section 'nft list ruleset'
nft list ruleset 2>/dev/null
section 'iptables-save / ip6tables-save (no counters)'
for cmd in iptables-save ip6tables-save; do
    command -v "$cmd" >/dev/null && "$cmd" 2>/dev/null | grep -v '^#' | sed 's/\[[0-9]*:[0-9]*\]//'
done
section 'ipset list -n'
command -v ipset >/dev/null && ipset list -n 2>/dev/null | sort
section 'mounts'
findmnt -rn -o TARGET,FSTYPE | sort
section 'cgroups (first level of each hierarchy)'
for h in /sys/fs/cgroup/*/; do
    printf '%s: %s\n' "$h" "$(find "$h" -mindepth 1 -maxdepth 1 -type d -printf '%f ' | tr ' ' '\n' | sort | tr '\n' ' ')"
done
section 'sysctls'
for name in "${NODE_SYSCTLS[@]}"; do
    f="$(sysctl_file "$name")"
    [[ -r "$f" ]] && printf '%s = %s\n' "$name" "$(<"$f")"
done
grep -H . /proc/sys/net/ipv4/conf/*/forwarding | sort
section 'node processes'
# shellcheck disable=SC2009 # the full command lines are the point
ps -eo args= | grep -E '^[^ ]*(containerd|containerd-shim-runc-v2|kubelet|kube-proxy|kube-router|coredns|/pause|nc -ll)( |$)' | grep -v grep | sort
section 'host directories'
for d in /var/lib/kubelet /var/log/pods /var/log/containers /var/lib/cni /etc/cni /opt/cni \
    /var/lib/containerd /run/containerd /etc/containerd /opt/containerd /var/run/nri /run/netns \
    /usr/libexec/kubernetes "$NODE_SOCKET_DIR"; do
    [[ -e "$d" ]] && printf '%s %s\n' "$d" "$(find "$d" -mindepth 1 2>/dev/null | wc -l)"
done
exit 0
