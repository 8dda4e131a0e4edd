# Process, port and health helpers for up.sh / down.sh (sourced after lib.sh).
# shellcheck shell=bash

# The real node (up.sh --real-node): its definitions, host network and teardown.
# shellcheck source=node/lib.sh
. "$CLUSTER_SCRIPT_DIR/node/lib.sh"
# shellcheck source=node/net.sh
. "$CLUSTER_SCRIPT_DIR/node/net.sh"
# shellcheck source=node/stop.sh
. "$CLUSTER_SCRIPT_DIR/node/stop.sh"

PORT_NAMES=(etcd etcd-peer apiserver controller-manager scheduler)

# cluster_init NAME: set CDIR and take the per-cluster lock (held until the script exits).
cluster_init() {
    local name="$1"
    [[ "$name" =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]] ||
        die "cluster name '$name' is invalid: use 1-32 lowercase letters, digits and '-'"
    CLUSTERS_DIR="$SILO_STATE/clusters"
    CDIR="$CLUSTERS_DIR/$name"
    mkdir -p "$CLUSTERS_DIR"
    require_tool flock "install util-linux"
    exec 9>"$CLUSTERS_DIR/.$name.lock"
    flock -w 900 9 || die "another up/down of cluster '$name' holds $CLUSTERS_DIR/.$name.lock"
}

port_of() {
    local p
    p="$(awk -v n="$1" '$1 == n { print $2 }' "$CDIR/ports" 2>/dev/null)"
    [[ -n "$p" ]] || die "no port recorded for $1 in $CDIR/ports"
    printf '%s' "$p"
}

port_in_use() { (: <>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# allocate_ports: pick free loopback ports not used by other clusters, record them in $CDIR/ports.
allocate_ports() {
    # Listen below the kernel's ephemeral range: a port picked inside it can be taken by an
    # outgoing connection between the check and the component's bind.
    local ephemeral_low
    ephemeral_low="$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
    PORT_LOW=20000
    PORT_SPAN=$((ephemeral_low - PORT_LOW))
    if [[ "$PORT_SPAN" -lt 2000 ]]; then
        PORT_SPAN=10000
    fi
    local taken name p tries
    exec 8>"$CLUSTERS_DIR/.ports.lock"
    flock -w 60 8 || die "could not lock $CLUSTERS_DIR/.ports.lock"
    taken=" $(find "$CLUSTERS_DIR" -mindepth 2 -maxdepth 2 -name ports -exec awk '{ printf "%s ", $2 }' {} +) "
    : >"$CDIR/ports.tmp"
    for name in "${PORT_NAMES[@]}"; do
        if [[ "$name" == apiserver && -n "${SILO_CLUSTER_APISERVER_PORT:-}" ]]; then
            p="$SILO_CLUSTER_APISERVER_PORT"
            [[ "$p" =~ ^[0-9]+$ && "$p" -ge 1 && "$p" -le 65535 ]] ||
                die "kube-apiserver: SILO_CLUSTER_APISERVER_PORT must be a port number, got '$p'"
            if [[ "$taken" == *" $p "* ]] || port_in_use "$p"; then
                die "kube-apiserver: port $p (SILO_CLUSTER_APISERVER_PORT) is already in use; pick another or unset it"
            fi
            taken+="$p "
            printf '%s %s\n' "$name" "$p" >>"$CDIR/ports.tmp"
            continue
        fi
        tries=0
        while :; do
            tries=$((tries + 1))
            [[ $tries -le 200 ]] || die "no free loopback port found for $name"
            p=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
            [[ "$taken" == *" $p "* ]] && continue
            port_in_use "$p" && continue
            break
        done
        taken+="$p "
        printf '%s %s\n' "$name" "$p" >>"$CDIR/ports.tmp"
    done
    mv "$CDIR/ports.tmp" "$CDIR/ports"
    flock -u 8
}

log_of() { printf '%s' "$CDIR/logs/$1.log"; }

# die_component NAME MESSAGE: stop with a message naming the component and its log.
die_component() {
    local name="$1" msg="$2" logf
    logf="$(log_of "$name")"
    printf '[cluster] error: %s: %s\n' "$name" "$msg" >&2
    if [[ -s "$logf" ]]; then
        printf '[cluster] last lines of %s:\n' "$logf" >&2
        tail -n 15 "$logf" | sed 's/^/    /' >&2
    fi
    printf '[cluster] full log: %s\n' "$logf" >&2
    exit 1
}

# start_component NAME EXECUTABLE ARGS...: start in its own session, log to logs/NAME.log.
declare -A COMPONENT_CMD=() COMPONENT_RESTARTS=()
start_component() {
    local name="$1" exe="$2"
    shift 2
    [[ -x "$exe" ]] || die_component "$name" "executable $exe missing (run e2e/cluster/build.sh)"
    COMPONENT_CMD[$name]="$(printf '%q ' "$exe" "$@")"
    printf '%s\n' "$exe $*" >"$(log_of "$name")"
    printf '%s\n' "$name" >>"$CDIR/pids/order"
    spawn_component "$name" "$exe" "$@"
}

# spawn_component NAME EXECUTABLE ARGS...: fork the component and record its pid.
spawn_component() {
    local name="$1" exe="$2"
    shift 2
    # Close the lock descriptors: a long-running child must not keep the cluster locked.
    setsid "$exe" "$@" </dev/null >>"$(log_of "$name")" 2>&1 5>&- 6>&- 8>&- 9>&- &
    local pid=$! i
    printf '%s\n' "$pid" >"$CDIR/pids/$name"
    # Until the forked shell has exec'd the component, its command line is this script's, and
    # pid_of would take a component still starting (on a busy machine, for a while) for one
    # that exited. Wait for the exec (a process that exits instead is reported by check_alive).
    for ((i = 0; i < 200; i++)); do
        [[ -d "/proc/$pid" ]] || break
        { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$CDIR/" && break
        sleep 0.05
    done
}

# pid_of NAME: pid of a running component started for this cluster (empty when not running).
pid_of() {
    local pid
    pid="$(cat "$CDIR/pids/$1" 2>/dev/null || true)"
    [[ -n "$pid" ]] || return 0
    # The pid must still be ours: every component's command line names a path in the cluster
    # directory (with the slash: cluster "silo" must not take a process of "silo-2" for its own).
    if [[ -r "/proc/$pid/cmdline" ]] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF "$CDIR/"; then
        printf '%s' "$pid"
    fi
}

# exit_report NAME: set EXIT_REPORT to how a component that pid_of no longer finds ended: its
# exit status or signal when this shell started it, or what now runs under its pid. (Not called
# in a command substitution: only this shell can wait for its children.)
exit_report() {
    local pid rc=0 cmd
    pid="$(cat "$CDIR/pids/$1" 2>/dev/null || true)"
    if [[ -z "$pid" ]]; then
        EXIT_REPORT='no pid recorded'
    elif [[ -d "/proc/$pid" ]]; then
        cmd="$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null || true)"
        EXIT_REPORT="pid $pid now runs '${cmd:0:200}'"
    else
        wait "$pid" 2>/dev/null || rc=$?
        if [[ $rc -eq 127 ]]; then
            EXIT_REPORT="pid $pid is gone (not started by this shell: exit status unknown)"
        elif [[ $rc -gt 128 ]]; then
            EXIT_REPORT="pid $pid was killed by signal $(kill -l $((rc - 128)) 2>/dev/null || echo $((rc - 128)))"
        else
            EXIT_REPORT="pid $pid exited with status $rc"
        fi
    fi
}

# check_alive: fail naming the first started component that is no longer running, and how it
# ended. During a start (up.sh) a component that ends before the cluster is up is started once
# more, as a supervisor would, with the first exit reported; a second exit fails the start.
check_alive() {
    local name report
    [[ -f "$CDIR/pids/order" ]] || return 0
    while read -r name; do
        [[ -z "$(pid_of "$name")" ]] || continue
        exit_report "$name"
        report="$EXIT_REPORT"
        if [[ -n "${COMPONENT_CMD[$name]:-}" && "${COMPONENT_RESTARTS[$name]:-0}" -lt 1 ]]; then
            COMPONENT_RESTARTS[$name]=1
            log "warning: $name exited during the start ($report; its log: $(log_of "$name").1); starting it once more"
            cp "$(log_of "$name")" "$(log_of "$name").1"
            printf '%s\n' "${COMPONENT_CMD[$name]}" >"$(log_of "$name")"
            eval "spawn_component $(printf '%q' "$name") ${COMPONENT_CMD[$name]}"
            continue
        fi
        die_component "$name" "process exited unexpectedly ($report)"
    done <"$CDIR/pids/order"
}

# wait_for COMPONENT DESCRIPTION COMMAND...: poll COMMAND until it succeeds, within $TIMEOUT s.
wait_for() {
    local name="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + TIMEOUT)) delay=0.1
    while :; do
        if "$@" >/dev/null 2>&1; then return 0; fi
        check_alive
        [[ $SECONDS -lt $deadline ]] || die_component "$name" "timed out after ${TIMEOUT}s waiting for $what"
        sleep "$delay"
        [[ "$delay" == 0.1 ]] && delay=0.25 || delay=0.5
    done
}

# nodes_ready N: true when N kwok nodes report Ready=True.
nodes_ready() {
    local want="$1" ready
    ready="$("$K8S_DIR/bin/kubectl" --kubeconfig "${KUBECONFIG_FOR_CHECKS:-$CDIR/kubeconfig.tmp}" get nodes \
        -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
        grep -c '^True$' || true)"
    [[ "$ready" -ge "$want" ]]
}

# cluster_healthy: every component runs, /readyz answers and the fake nodes are Ready.
cluster_healthy() {
    local name
    [[ -f "$CDIR/pids/order" && -f "$CDIR/kubeconfig" ]] || return 1
    while read -r name; do
        [[ -n "$(pid_of "$name")" ]] || return 1
    done <"$CDIR/pids/order"
    "$K8S_DIR/bin/kubectl" --kubeconfig "$CDIR/kubeconfig" get --raw /readyz >/dev/null 2>&1 || return 1
    KUBECONFIG_FOR_CHECKS="$CDIR/kubeconfig" nodes_ready "$(cat "$CDIR/ready")" || return 1
    # With a real node: it is Ready (its processes are checked above with the others).
    if [[ -d "$CDIR/node" ]]; then
        [[ -f "$CDIR/node/ready" ]] || return 1
        [[ "$("$K8S_DIR/bin/kubectl" --kubeconfig "$CDIR/kubeconfig" get node "$REAL_NODE_NAME" \
            -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]] || return 1
    fi
}

# cluster_stop [keep-logs]: stop every component (newest first) and remove the cluster state.
# A real node goes first (pods, kubelet, containerd, mounts, cgroups) and its host network last,
# once the API server, which listens on every address then, is gone.
cluster_stop() {
    local keep="${1:-}" name pid pids=() deadline node_ok=1
    if [[ -d "$CDIR/node" ]]; then
        node_stop || node_ok=0
    fi
    if [[ -f "$CDIR/pids/order" ]]; then
        while read -r name; do
            pid="$(pid_of "$name")"
            if [[ -n "$pid" ]]; then
                kill -TERM "$pid" 2>/dev/null || true
                pids+=("$pid")
            fi
        done < <(tac "$CDIR/pids/order")
    fi
    deadline=$((SECONDS + 30))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null; do
            if [[ $SECONDS -ge $deadline ]]; then
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    done
    # Reap what was started by this shell so nothing lingers as a zombie.
    wait 2>/dev/null || true
    if [[ -d "$CDIR/node" ]]; then
        node_net_down
    fi
    blackholes_remove
    if [[ "$node_ok" != 1 ]]; then
        log "error: the real node of '${CDIR##*/}' was not removed completely; $CDIR is kept (run down.sh again as root)"
        return 1
    fi
    if [[ "$keep" == keep-logs && -d "$CDIR/logs" ]]; then
        find "${CDIR:?}" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
    else
        rm -rf "${CDIR:?}"
    fi
}
