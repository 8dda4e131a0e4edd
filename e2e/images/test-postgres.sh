#!/usr/bin/env bash
# Runs the postgres test image without a container runtime (root only): unpacks the archive's
# layers, then starts the image's entrypoint under chroot, in its own PID and mount namespaces,
# as the image's USER with the image's Env, on a root-owned 0777 data directory (what an
# emptyDir looks like), and checks that
#   - the first start initializes $PGDATA from POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB,
#   - TCP connections need the password (scram-sha-256), Unix-socket ones are trusted,
#   - SIGTERM stops postgres with a fast shutdown even while a client is connected,
#   - a second start reuses the data without initializing again.
#
#   e2e/images/test-postgres.sh [ARCHIVE]   (default: the one e2e/images/build.sh postgres wrote)
set -euo pipefail

TEST_TAG=postgres-test
# shellcheck source=e2e/images/test-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"

require_root
find_archive postgres "${1:-}"
# SILO_POSTGRES_TEST_LOGS=DIR keeps the server logs there.
make_workdir silo-postgres-test SILO_POSTGRES_TEST_LOGS

log "unpacking $archive"
unpack_image "$archive" "$work"
[[ "$user" =~ ^[0-9]+:[0-9]+$ && "$user" != 0:0 ]] || die "image USER is '$user', expected numeric uid:gid, not root"
log "image user $user, entrypoint ${entrypoint[*]} ${cmd[*]}"

# What a runtime provides: /dev (null, zero, urandom, shm) and an emptyDir-like data volume.
setup_dev shm
mount_volume "$work/emptydir" 0777 "$root/var/lib/postgresql/data"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
password="test-$(date +%s%N)"
env_args=(env -i "${image_env[@]}" POSTGRES_USER=silo POSTGRES_PASSWORD="$password" POSTGRES_DB=silo_db HOME=/var/lib/postgresql)

# in_image CMD...: a command inside the image's root as its user.
in_image() { chroot --userspec="$user" "$root" "${env_args[@]}" "$@"; }

start() {
    local logfile="$1" as="${2:-$user}"
    unshare --pid --fork --mount-proc="$root/proc" --kill-child \
        chroot --userspec="$as" "$root" "${env_args[@]}" "${entrypoint[@]}" "${cmd[@]}" \
        -c port="$port" >"$logfile" 2>&1 &
    server_pid=$!
    local i
    for ((i = 0; i < 120; i++)); do
        if in_image pg_isready -q -h 127.0.0.1 -p "$port"; then return 0; fi
        kill -0 "$server_pid" 2>/dev/null || { cat "$logfile" >&2; die "server exited during start (log above)"; }
        sleep 0.5
    done
    cat "$logfile" >&2
    die "server not ready on 127.0.0.1:$port after 60 s"
}

# stop: SIGTERM to the entrypoint (PID 1 of its namespace), as the kubelet sends it.
stop() {
    local logfile="$1" child started
    child="$(pgrep -P "$server_pid" | head -n 1)"
    [[ -n "$child" ]] || die "no entrypoint process under unshare $server_pid"
    started="$(now_s)"
    kill -TERM "$child"
    local status=0
    wait "$server_pid" || status=$?
    server_pid=""
    took="$(since "$started")"
    log "stopped in $took s (exit $status)"
    ((status == 0)) || { cat "$logfile" >&2; die "entrypoint exited with $status after SIGTERM"; }
}

log "first start (initializes on the emptyDir-like volume)"
start "$work/first.log"
grep -q 'initializing' "$work/first.log" || { cat "$work/first.log" >&2; die "no initialization on first start"; }
out="$(in_image env PGPASSWORD="$password" psql -X -At -h 127.0.0.1 -p "$port" -U silo -d silo_db \
    -c "select current_user, current_database(), (select setting from pg_settings where name = 'listen_addresses')")"
[[ "$out" == "silo|silo_db|*" ]] || die "unexpected answer over TCP: $out"
log "TCP with password: $out"
if in_image env PGPASSWORD=wrong psql -X -At -h 127.0.0.1 -p "$port" -U silo -d silo_db -c 'select 1' >/dev/null 2>&1; then
    die "a wrong password was accepted over TCP"
fi
auth="$(in_image psql -X -At -p "$port" -U silo -d silo_db -c "select type || ' ' || auth_method from pg_hba_file_rules order by line_number" | tr '\n' ',')"
log "wrong password rejected; Unix socket trusted; pg_hba: $auth"
[[ "$auth" == *"host scram-sha-256"* ]] || die "no scram-sha-256 host rule: $auth"

# A client holding a connection open: a smart shutdown would wait for it.
in_image env PGPASSWORD="$password" psql -X -h 127.0.0.1 -p "$port" -U silo -d silo_db -c 'select pg_sleep(60)' >/dev/null 2>&1 &
client=$!
sleep 1
stop "$work/first.log"
kill "$client" 2>/dev/null || true
wait "$client" 2>/dev/null || true
grep -q 'fast shutdown request' "$work/first.log" || { cat "$work/first.log" >&2; die "no fast shutdown"; }
awk -v t="$took" 'BEGIN { exit !(t < 10) }' || die "shutdown took $took s"

log "second start (existing data)"
start "$work/second.log"
if grep -q 'initializing' "$work/second.log"; then die "initialized again on restart"; fi
in_image env PGPASSWORD="$password" psql -X -At -h 127.0.0.1 -p "$port" -U silo -d silo_db -c 'select 1' >/dev/null ||
    die "no connection after restart"
stop "$work/second.log"
[[ -s "$work/emptydir/pgdata/PG_VERSION" ]] || die "cluster not in the volume's pgdata subdirectory"

log "third start as root on a new volume (drops to the postgres user, owns the volume)"
umount "$root/var/lib/postgresql/data"
mount_volume "$work/emptydir2" 0777 "$root/var/lib/postgresql/data"
start "$work/third.log" 0:0
datadir="$(in_image psql -X -At -p "$port" -U silo -d silo_db -c 'show data_directory')"
stop "$work/third.log"
[[ "$datadir" == /var/lib/postgresql/data ]] || die "data directory $datadir, expected the volume itself"
[[ "$(stat -c %u:%g "$work/emptydir2")" == "$user" ]] || die "volume not chowned to $user"
log "ok: data in the volume (or <volume>/pgdata when it is root's), password auth over TCP, fast shutdown with a client connected, restart without init, root start drops privileges"
