# shellcheck shell=bash
# Shared part of the image tests (test-silo.sh, test-postgres.sh, test-redis.sh, test-kafka.sh),
# sourced by them after `set -euo pipefail`, with TEST_TAG set to the prefix of their messages:
#
#   log MSG... / die MSG...      a "[TEST_TAG] MSG" line on stderr; die adds "error:" and exits 1
#   now_s, since START [DIGITS]  a timestamp; the seconds since START (2 decimals unless DIGITS)
#   require_root [WHY]           dies unless root (WHY: "chroot, mounts, namespaces")
#   require_tools TOOL...        dies naming the first TOOL not on PATH, and the packages to install
#   find_archive KIND [ARCHIVE]  sets archive: ARCHIVE, or the one `build.sh KIND` last wrote
#                                (${SILO_CACHE_DIR:-~/.cache/silo}/images/KIND.path)
#   make_workdir NAME [LOGS_VAR] sets work (a new $TMPDIR/NAME.XXXXXX) and the EXIT trap: when the
#                                variable LOGS_VAR names a directory, $work/*.log is copied there;
#                                then server_pid is killed, what mount_* mounted is unmounted (last
#                                first) and $work removed
#   unpack_image ARCHIVE DIR     unpacks the OCI archive into DIR/oci and its layers into DIR/root;
#                                sets root (DIR/root), layers, image_env, entrypoint, cmd, user
#                                (0:0 when unset), workdir (/ when unset), ports (the exposed ports,
#                                sorted, space-separated) and image_config (the config blob)
#   setup_dev [fd] [shm]         what a runtime mounts at $root/dev: a tmpfs with null, zero, full,
#                                random, urandom and tty; fd: the fd, stdin, stdout and stderr links;
#                                shm: a 1777 tmpfs at /dev/shm
#   mount_volume DIR MODE TARGET creates DIR with MODE (a volume of the test cluster: a hostPath
#                                is root's and 0750, an emptyDir 0777) and bind-mounts it at TARGET
#
# Callers that declare these variables local (layers, user, ...) get them set in their scope.

IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SILO_CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"
TEST_TAG="${TEST_TAG:-image-test}"
server_pid=""
test_mounts=()
test_logs_var=""

log() { printf '[%s] %s\n' "$TEST_TAG" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$TEST_TAG" "$*" >&2; exit 1; }
now_s() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now_s)" -v d="${2:-2}" 'BEGIN { printf "%." d "f", b - a }'; }

# shellcheck disable=SC2120 # the argument is optional
require_root() {
    [[ "$(id -u)" == 0 ]] || die "needs root (${1:-chroot, mounts, namespaces})"
}

require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "no $tool (apt-get install -y util-linux iproute2 procps python3)"
    done
}

find_archive() {
    local kind="$1"
    archive="${2:-}"
    if [[ -z "$archive" ]]; then
        [[ -f "$SILO_CACHE/images/$kind.path" ]] || die "no archive given and none built (run $IMAGES_DIR/build.sh $kind)"
        archive="$(cat "$SILO_CACHE/images/$kind.path")"
    fi
    [[ -f "$archive" ]] || die "no archive $archive"
}

make_workdir() {
    work="$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")"
    test_logs_var="${2:-}"
    trap 'keep_logs; cleanup' EXIT
}

keep_logs() {
    [[ -n "$test_logs_var" && -n "${!test_logs_var:-}" ]] || return 0
    mkdir -p "${!test_logs_var}"
    cp "$work"/*.log "${!test_logs_var}"/ 2>/dev/null || true
}

cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    local i
    for ((i = ${#test_mounts[@]} - 1; i >= 0; i--)); do
        umount "${test_mounts[i]}" 2>/dev/null || true
    done
    rm -rf "$work"
}

unpack_image() {
    local archive="$1" dir="$2" layer
    mkdir -p "$dir/oci" "$dir/root"
    tar -xf "$archive" -C "$dir/oci"
    # shellcheck disable=SC2034 # for the caller
    layers=() image_env=() entrypoint=() cmd=() user="" workdir="" ports="" image_config=""
    eval "$(python3 - "$dir/oci" <<'PY'
import json, shlex, sys
oci = sys.argv[1]
blob = lambda d: f"{oci}/blobs/sha256/{d.split(':', 1)[1]}"
index = json.load(open(f"{oci}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))["config"]
q = lambda items: " ".join(shlex.quote(i) for i in items)
print(f"layers=({q(blob(l['digest']) for l in manifest['layers'])})")
print(f"image_env=({q(config.get('Env', []))})")
print(f"entrypoint=({q(config.get('Entrypoint') or [])})")
print(f"cmd=({q(config.get('Cmd') or [])})")
print("user=" + shlex.quote(config.get("User", "") or "0:0"))
print("workdir=" + shlex.quote(config.get("WorkingDir", "") or "/"))
print("ports=" + shlex.quote(" ".join(sorted(config.get("ExposedPorts", {})))))
print("image_config=" + shlex.quote(blob(manifest["config"]["digest"])))
PY
    )"
    for layer in "${layers[@]}"; do
        tar -xzf "$layer" -C "$dir/root" --numeric-owner --same-permissions
    done
    root="$dir/root"
}

# shellcheck disable=SC2120 # the options are optional
setup_dev() {
    local node name major minor fd opt
    mkdir -p "$root/dev"
    mount -t tmpfs -o mode=0755 tmpfs "$root/dev"
    test_mounts+=("$root/dev")
    for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
        IFS=: read -r name major minor <<<"$node"
        mknod -m 0666 "$root/dev/$name" c "$major" "$minor"
    done
    for opt in "$@"; do
        case "$opt" in
        fd)
            ln -s /proc/self/fd "$root/dev/fd"
            for fd in stdin:0 stdout:1 stderr:2; do ln -s "/proc/self/fd/${fd#*:}" "$root/dev/${fd%:*}"; done
            ;;
        shm)
            mkdir -p "$root/dev/shm"
            mount -t tmpfs -o mode=1777 tmpfs "$root/dev/shm"
            test_mounts+=("$root/dev/shm")
            ;;
        *) die "setup_dev: unknown option $opt" ;;
        esac
    done
}

mount_volume() {
    mkdir -p "$1"
    chmod "$2" "$1"
    mount --bind "$1" "$3"
    test_mounts+=("$3")
}
