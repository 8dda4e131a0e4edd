#!/usr/bin/env bash
# Runs the redis test image without a container runtime (root only): unpacks the archive's
# layers, then starts the image's entrypoint under chroot in its own PID, mount and network
# namespaces (only a loopback interface: the server listens on 6379 as in a pod, nothing leaves
# the machine), as the image's USER (root) with its Env and WorkingDir, on a root-owned 0750 data
# directory (what the test cluster's hostPath volumes look like), with the operator's arguments
#     redis-server --port 6379 --dir /data --appendonly yes --requirepass PW --protected-mode no
# and checks that
#   - the entrypoint gives /data to the redis user (999:999) and exec's redis-server as it (PID 1),
#   - `redis-cli ping` with REDISCLI_AUTH answers PONG; SET/GET work with the password, and
#     commands without it or with a wrong one are refused,
#   - SIGTERM stops redis-server cleanly (exit 0) within 10 s,
#   - a second start (options only: redis-server is prepended) finds the data (append-only file),
#     and a start as the redis user itself runs redis-server directly,
#   - any other command runs as it is (redis-cli --version).
#
#   e2e/images/test-redis.sh [ARCHIVE]   (default: the one e2e/images/build.sh redis wrote)
set -euo pipefail

PORT=6379
TEST_TAG=redis-test
# shellcheck source=e2e/images/test-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"

require_root
require_tools unshare nsenter ip pgrep python3
find_archive redis "${1:-}"
# SILO_REDIS_TEST_LOGS=DIR keeps the server logs there.
make_workdir silo-redis-test SILO_REDIS_TEST_LOGS

log "unpacking $archive"
unpack_image "$archive" "$work"
log "image user $user, workdir $workdir, ports $ports, entrypoint ${entrypoint[*]} ${cmd[*]}"
[[ "$user" == 0:0 ]] || die "image USER is $user, expected none (root), as in the official image"
[[ "$workdir" == /data && "$ports" == "$PORT/tcp" && "${cmd[*]}" == redis-server ]] ||
    die "unexpected image config: workdir $workdir, ports $ports, cmd ${cmd[*]}"

setup_dev
# A hostPath volume of the test cluster: root's, mode 0750.
mount_volume "$work/hostpath" 0750 "$root/data"

password="test-$(date +%s%N)"
env_args=(env -i "${image_env[@]}" HOME=/root)

# start LOG USER ARGS...: the entrypoint with ARGS as PID 1 of new PID, mount and network
# namespaces; waits (deadline 30 s) until `redis-cli ping` answers PONG.
pid1=""
start() {
    local logfile="$1" as="$2" started
    shift 2
    started="$(now_s)"
    # shellcheck disable=SC2016 # expanded by the namespace's shell
    unshare --pid --net --fork --mount-proc="$root/proc" --kill-child \
        sh -c 'ip link set lo up && exec "$@"' sh \
        chroot --userspec="$as" "$root" "${env_args[@]}" --chdir="$workdir" "${entrypoint[@]}" "$@" \
        >"$logfile" 2>&1 &
    server_pid=$!
    local deadline=$((SECONDS + 30))
    pid1=""
    while ((SECONDS < deadline)); do
        kill -0 "$server_pid" 2>/dev/null || { cat "$logfile" >&2; die "server exited during start (log above)"; }
        [[ -n "$pid1" ]] || pid1="$(pgrep -P "$server_pid" || true)"
        if [[ -n "$pid1" && "$(cli "$password" ping 2>/dev/null)" == PONG ]]; then
            log "ready in $(since "$started") s"
            return 0
        fi
        sleep 0.1
    done
    cat "$logfile" >&2
    die "no PONG on 127.0.0.1:$PORT after 30 s"
}

# in_ns CMD...: CMD in the server's namespaces, under the image's root, as the image's user.
in_ns() { nsenter -t "$pid1" -n -m -p -- chroot --userspec="$user" "$root" "${env_args[@]}" "$@"; }
# cli PASSWORD ARGS...: redis-cli with REDISCLI_AUTH=PASSWORD (none when empty).
cli() {
    local pw="$1"
    shift
    if [[ -n "$pw" ]]; then
        in_ns env REDISCLI_AUTH="$pw" redis-cli -h 127.0.0.1 -p "$PORT" "$@"
    else
        in_ns redis-cli -h 127.0.0.1 -p "$PORT" "$@"
    fi
}

# stop LOG: SIGTERM to the namespace's PID 1, as the kubelet sends it; fails after 10 s.
stop() {
    local logfile="$1" started status=0
    started="$(now_s)"
    kill -TERM "$pid1"
    local deadline=$((SECONDS + 10))
    while kill -0 "$server_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
    kill -0 "$server_pid" 2>/dev/null && { cat "$logfile" >&2; die "redis-server still running 10 s after SIGTERM"; }
    wait "$server_pid" || status=$?
    server_pid=""
    log "stopped in $(since "$started") s after SIGTERM (exit $status)"
    ((status == 0)) || { cat "$logfile" >&2; die "exit status $status after SIGTERM"; }
    grep -q 'ready to exit' "$logfile" || { cat "$logfile" >&2; die "no clean shutdown in the log"; }
}

server_args=(redis-server --port "$PORT" --dir /data --appendonly yes --requirepass "$password" --protected-mode no)

log "first start as root on a root-owned 0750 directory: ${server_args[*]/$password/PASSWORD}"
start "$work/first.log" 0:0 "${server_args[@]}"
status="$(cat "/proc/$pid1/status")"
uid="$(awk '/^Uid:/ { print $2 }' <<<"$status")" gid="$(awk '/^Gid:/ { print $2 }' <<<"$status")"
comm="$(cat "/proc/$pid1/comm")"
[[ "$uid:$gid" == 999:999 && "$comm" == redis-server ]] || die "PID 1 is $comm as $uid:$gid, expected redis-server as 999:999"
[[ "$(stat -c %u:%g "$work/hostpath")" == 999:999 ]] || die "data directory not given to 999:999"
log "PID 1 is redis-server as 999:999, /data is 999:999"

[[ "$(cli "$password" set silo:test "value with spaces")" == OK ]] || die "SET failed"
[[ "$(cli "$password" get silo:test)" == "value with spaces" ]] || die "GET returned something else"
[[ "$(cli "$password" config get appendonly | tail -n 1)" == yes ]] || die "appendonly is not on"
[[ "$(cli "$password" config get dir | tail -n 1)" == /data ]] || die "dir is not /data"
out="$(cli "" get silo:test 2>&1 || true)"
[[ "$out" == *NOAUTH* ]] || die "a command without password was not refused: $out"
out="$(cli wrong-password get silo:test 2>&1 || true)"
[[ "$out" == *WRONGPASS* && "$out" != *"value with spaces"* ]] || die "a wrong password was not refused: $out"
log "SET/GET with the password; without it: NOAUTH; wrong one: WRONGPASS"
stop "$work/first.log"
ls "$work/hostpath/appendonlydir"/*.aof >/dev/null 2>&1 || die "no append-only file in the data directory"

log "second start, options only (redis-server prepended), same directory"
start "$work/second.log" 0:0 "${server_args[@]:1}"
[[ "$(cli "$password" get silo:test)" == "value with spaces" ]] || die "the key did not survive the restart"
log "key kept across the restart"
stop "$work/second.log"

log "third start as the redis user (999:999) itself"
start "$work/third.log" 999:999 "${server_args[@]}"
[[ "$(cli "$password" get silo:test)" == "value with spaces" ]] || die "no key when started as redis"
stop "$work/third.log"

version="$(chroot "$root" "${env_args[@]}" --chdir="$workdir" "${entrypoint[@]}" redis-cli --version)"
[[ "$version" == "redis-cli 7."* ]] || die "redis-cli --version through the entrypoint: $version"
log "other commands run as they are: $version"
log "ok: root start owns /data and drops to redis 999:999, password required, SIGTERM exits 0, data kept, redis-cli on PATH"
