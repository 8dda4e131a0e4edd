#!/usr/bin/env bash
# Checks the silo images without a container runtime (root only): unpacks each archive's layers
# and verifies the image config (user 65532:65532, entrypoint/cmd, labels), that the root holds
# only the base (shared libraries, passwd/group/nsswitch.conf, /tmp 1777) plus the binaries, no
# shell, and that every binary starts under chroot as the image's user with the image's Env
# (`--help`), i.e. the copied libraries and dynamic loader are complete.
#
#   e2e/images/test-silo.sh [workload|operator]...   (default both; archives from build.sh)
set -euo pipefail

SILO_CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"

log() { printf '[silo-image-test] %s\n' "$*" >&2; }
die() { printf '[silo-image-test] error: %s\n' "$*" >&2; exit 1; }

[[ "$(id -u)" == 0 ]] || die "needs root (chroot)"
(($# > 0)) || set -- workload operator
CHROOT="$(command -v chroot)" || die "no chroot (coreutils)"

work="$(mktemp -d "${TMPDIR:-/tmp}/silo-image-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

check() {
    local kind="$1" archive root
    [[ -f "$SILO_CACHE/images/$kind.path" ]] || die "no $kind image built (run e2e/images/build.sh $kind)"
    archive="$(cat "$SILO_CACHE/images/$kind.path")"
    root="$work/$kind/root"
    mkdir -p "$work/$kind/oci" "$root"
    tar -xf "$archive" -C "$work/$kind/oci"
    local -a layers=() env=() entrypoint=() cmd=()
    local user="" title=""
    eval "$(python3 - "$work/$kind/oci" <<'EOF'
import json, shlex, sys
oci = sys.argv[1]
blob = lambda d: f"{oci}/blobs/sha256/{d.split(':', 1)[1]}"
index = json.load(open(f"{oci}/index.json"))
manifest = json.load(open(blob(index["manifests"][0]["digest"])))
config = json.load(open(blob(manifest["config"]["digest"])))["config"]
q = lambda items: " ".join(shlex.quote(i) for i in items)
print(f"layers=({q(blob(l['digest']) for l in manifest['layers'])})")
print(f"env=({q(config.get('Env', []))})")
print(f"entrypoint=({q(config.get('Entrypoint') or [])})")
print(f"cmd=({q(config.get('Cmd') or [])})")
print(f"user={shlex.quote(config.get('User', ''))}")
labels = config.get("Labels", {})
for key in ("source", "version", "revision", "title", "licenses", "description"):
    if not labels.get(f"org.opencontainers.image.{key}"):
        print(f"die 'label org.opencontainers.image.{key} missing'")
print(f"title={shlex.quote(labels.get('org.opencontainers.image.title', ''))}")
EOF
    )"
    local layer
    for layer in "${layers[@]}"; do tar -xzf "$layer" -C "$root" --numeric-owner; done

    [[ "$user" == 65532:65532 ]] || die "$kind: user '$user', expected 65532:65532"
    [[ "$(stat -c %a "$root/tmp")" == 1777 ]] || die "$kind: /tmp is not 1777"
    grep -qx 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' "$root/etc/passwd" ||
        die "$kind: no nonroot 65532 in /etc/passwd"
    local shell
    for shell in bin/sh bin/bash usr/bin/sh bin/busybox; do
        [[ ! -e "$root/$shell" ]] || die "$kind: image contains /$shell"
    done
    local unexpected
    unexpected="$(find "$root" -mindepth 1 \( -type f -o -type l \) -printf '/%P\n' |
        grep -v -E '^/(lib|lib64|usr/lib)/.*\.so[.0-9]*$|^/etc/(passwd|group|nsswitch\.conf)$|^/usr/local/bin/[a-z-]+$' || true)"
    [[ -z "$unexpected" ]] || die "$kind: unexpected files: $unexpected"

    local bins=() bin
    for bin in "$root"/usr/local/bin/*; do bins+=("${bin##*/}"); done
    case "$kind" in
    workload)
        [[ "${#entrypoint[@]}" == 0 && "${cmd[*]}" == web ]] || die "workload: entrypoint '${entrypoint[*]}' cmd '${cmd[*]}'"
        [[ "${bins[*]}" == "consumers postprocess relay web" ]] || die "workload: binaries ${bins[*]}"
        ;;
    operator)
        [[ "${entrypoint[*]}" == /usr/local/bin/silo-operator ]] || die "operator: entrypoint '${entrypoint[*]}'"
        [[ "${bins[*]}" == silo-operator ]] || die "operator: binaries ${bins[*]}"
        ;;
    esac
    for bin in "${bins[@]}"; do
        if ! env -i "${env[@]}" "$CHROOT" --userspec="$user" "$root" "/usr/local/bin/$bin" --help >"$work/$kind-$bin.out" 2>&1; then
            cat "$work/$kind-$bin.out" >&2
            die "$kind: $bin --help failed in the image"
        fi
    done
    log "ok: $kind ($title) $(du -sk "$root" | cut -f1) KB unpacked; ${bins[*]} start as $user; $(find "$root" -name '*.so*' | wc -l) shared libraries, no shell"
}

for kind in "$@"; do
    case "$kind" in
    workload | operator) check "$kind" ;;
    *) die "unknown image '$kind' (workload or operator)" ;;
    esac
done
