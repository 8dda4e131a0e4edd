#!/usr/bin/env bash
# Runs the built images as real containers (root only), in a private containerd started here
# (own root, state and socket in a temp dir, no CRI plugin; stopped and removed at the end):
#   - imports the three archives with `ctr images import` (as e2e/test.sh and kind do) and checks
#     their names;
#   - workload: the default command is web (exits asking for --database-url); no /bin/sh;
#   - operator: the entrypoint is silo-operator (exits without a Kubernetes configuration);
#   - postgres: starts as the image's user on a root-owned 0777 bind mount (an emptyDir),
#     answers a password login over TCP, and stops on SIGTERM within 5 s with a client connected.
#
#   e2e/images/test-containerd.sh
# Needs containerd and ctr (on PATH, or built by the cluster scripts under
# $SILO_CACHE/containerd/*/bin; CONTAINERD_BIN=DIR picks one), runc, and psql on the host.
set -euo pipefail

SILO_CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"
NS=silo-image-test

log() { printf '[containerd-test] %s\n' "$*" >&2; }
die() { printf '[containerd-test] error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "needs root (containerd, runc)"
bin="${CONTAINERD_BIN:-}"
if [[ -z "$bin" ]]; then
    if command -v containerd >/dev/null 2>&1 && command -v ctr >/dev/null 2>&1; then
        bin="$(dirname "$(command -v containerd)")"
    else
        bin="$(find "$SILO_CACHE/containerd" -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
    fi
fi
[[ -n "$bin" && -x "$bin/containerd" && -x "$bin/ctr" ]] ||
    die "no containerd/ctr (install containerd, or build the real node: e2e/cluster/build.sh; or set CONTAINERD_BIN)"
command -v runc >/dev/null 2>&1 || die "no runc (apt-get install -y runc)"
command -v psql >/dev/null 2>&1 || die "no psql (apt-get install -y postgresql-client)"
for kind in workload operator postgres; do
    [[ -f "$SILO_CACHE/images/$kind.path" ]] || die "no $kind image built (run e2e/images/build.sh all)"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/silo-containerd-test.XXXXXX")"
daemon=""
ctr() { "$bin/ctr" --address "$work/containerd.sock" --namespace "$NS" "$@" 2> >(grep -v DEPRECATION >&2); }
cleanup() {
    set +e
    if [[ -n "$daemon" ]]; then
        local c
        for c in $(ctr tasks ls -q 2>/dev/null); do ctr tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true; done
        sleep 0.5
        for c in $(ctr containers ls -q 2>/dev/null); do
            ctr tasks delete -f "$c" >/dev/null 2>&1 || true
            ctr containers delete "$c" >/dev/null 2>&1 || true
        done
        kill "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    # runc's cgroups (v1 hierarchies) of this namespace, then the daemon's mounts.
    local d
    for d in /sys/fs/cgroup/*/"$NS"; do
        [[ -d "$d" ]] && { find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null; rmdir "$d" 2>/dev/null; }
    done
    grep -o " $work/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf "$work"
    return 0
}
trap cleanup EXIT

cat >"$work/config.toml" <<EOF
version = 3
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.nri.v1.nri"]
[grpc]
  address = "$work/containerd.sock"
[ttrpc]
  address = "$work/containerd.sock.ttrpc"
[debug]
  address = "$work/debug.sock"
EOF
PATH="$bin:$PATH" "$bin/containerd" --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
daemon=$!
for ((i = 0; i < 50; i++)); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
ctr version >/dev/null 2>&1 || { cat "$work/containerd.log" >&2; die "private containerd did not start"; }
log "private containerd $("$bin/containerd" --version | awk '{print $3}') on $work/containerd.sock"

for kind in workload operator postgres; do
    archive="$(cat "$SILO_CACHE/images/$kind.path")"
    ref="$(cat "$SILO_CACHE/images/$kind.ref")"
    ctr images import "$archive" >"$work/import-$kind.log" || die "ctr images import $archive failed"
    ctr images ls -q | grep -qx "$ref" || die "$archive imported, but no image named $ref"
done
log "imported: $(ctr images ls -q | tr '\n' ' ')"
workload_ref="$(cat "$SILO_CACHE/images/workload.ref")"
operator_ref="$(cat "$SILO_CACHE/images/operator.ref")"
postgres_ref="$(cat "$SILO_CACHE/images/postgres.ref")"

# run_once ID IMAGE [COMMAND...]: a container to completion; its output and exit status.
run_once() {
    local id="$1" image="$2" status=0
    shift 2
    PATH="$bin:$PATH" timeout 60 "$bin/ctr" --address "$work/containerd.sock" --namespace "$NS" \
        run --rm "$image" "$id" "$@" >"$work/$id.out" 2>&1 || status=$?
    grep -v DEPRECATION "$work/$id.out" >"$work/$id.log" || true
    return "$status"
}

run_once workload-default "$workload_ref" || true
grep -q -- '--database-url' "$work/workload-default.log" ||
    { cat "$work/workload-default.log" >&2; die "the workload image's default command is not web"; }
run_once workload-relay "$workload_ref" relay --help ||
    { cat "$work/workload-relay.log" >&2; die "relay --help failed in the workload image"; }
if run_once workload-shell "$workload_ref" /bin/sh -c true; then die "the workload image has /bin/sh"; fi
run_once operator-default "$operator_ref" || true
grep -q 'Kubernetes client' "$work/operator-default.log" ||
    { cat "$work/operator-default.log" >&2; die "the operator image's entrypoint is not silo-operator"; }
log "workload: default command web, relay runs, no shell; operator: entrypoint silo-operator"

mkdir -p "$work/emptydir"
chmod 0777 "$work/emptydir"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
started="$(date +%s.%N)"
PATH="$bin:$PATH" "$bin/ctr" --address "$work/containerd.sock" --namespace "$NS" run -d --net-host \
    --env POSTGRES_PASSWORD=secret --env POSTGRES_USER=silo \
    --mount "type=bind,src=$work/emptydir,dst=/var/lib/postgresql/data,options=rbind:rw" \
    "$postgres_ref" pg /usr/local/bin/postgres-entrypoint postgres -c port="$port" >/dev/null 2>&1 ||
    die "ctr run $postgres_ref failed"
for ((i = 0; i < 120; i++)); do
    out="$(PGPASSWORD=secret psql -X -At -h 127.0.0.1 -p "$port" -U silo -d silo -c 'select current_user' 2>/dev/null)" && break
    sleep 0.5
done
[[ "${out:-}" == silo ]] || die "postgres container not answering on 127.0.0.1:$port"
ready="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
pid="$(ctr tasks ls | awk '$1 == "pg" { print $2 }')"
owner="$(stat -c %u:%g /proc/"$pid")"
PGPASSWORD=secret psql -X -h 127.0.0.1 -p "$port" -U silo -d silo -c 'select pg_sleep(60)' >/dev/null 2>&1 &
client=$!
sleep 1
started="$(date +%s.%N)"
ctr tasks kill -s SIGTERM pg
for ((i = 0; i < 50; i++)); do
    [[ "$(ctr tasks ls | awk '$1 == "pg" { print $3 }')" == STOPPED ]] && break
    sleep 0.1
done
took="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')"
[[ "$(ctr tasks ls | awk '$1 == "pg" { print $3 }')" == STOPPED ]] || die "postgres still running 5 s after SIGTERM"
kill "$client" 2>/dev/null || true
wait "$client" 2>/dev/null || true
[[ -s "$work/emptydir/pgdata/PG_VERSION" ]] || die "no cluster in the volume's pgdata subdirectory"
log "postgres: ready in $ready s as uid:gid $owner, password login over TCP, stopped ${took} s after SIGTERM with a client connected"
log "ok"
