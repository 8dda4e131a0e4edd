#!/usr/bin/env bash
# Checks the silo images without a container runtime (root only): unpacks each archive's layers
# and verifies the image config (user 65532:65532, entrypoint/cmd, labels), that the root holds
# only the base (shared libraries, passwd/group/nsswitch.conf, /tmp 1777) plus the binaries, no
# shell, and that every binary starts under chroot as the image's user with the image's Env
# (`--help`), i.e. the copied libraries and dynamic loader are complete.
#
#   e2e/images/test-silo.sh [workload|operator]...   (default both; archives from build.sh)
set -euo pipefail

TEST_TAG=silo-image-test
# shellcheck source=e2e/images/test-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/test-lib.sh"

require_root chroot
(($# > 0)) || set -- workload operator
CHROOT="$(command -v chroot)" || die "no chroot (coreutils)"

make_workdir silo-image-test

check() {
    local kind="$1" archive root
    local -a layers=() image_env=() entrypoint=() cmd=()
    # shellcheck disable=SC2034 # workdir and ports: set by unpack_image, unused here
    local user="" workdir="" ports="" image_config="" title=""
    find_archive "$kind"
    unpack_image "$archive" "$work/$kind"
    # The labels build.sh sets; the title goes into the report.
    eval "$(python3 - "$image_config" <<'EOF'
import json, shlex, sys
labels = json.load(open(sys.argv[1]))["config"].get("Labels", {})
for key in ("source", "version", "revision", "title", "licenses", "description"):
    if not labels.get(f"org.opencontainers.image.{key}"):
        print(f"die 'label org.opencontainers.image.{key} missing'")
print(f"title={shlex.quote(labels.get('org.opencontainers.image.title', ''))}")
EOF
    )"

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
        if ! env -i "${image_env[@]}" "$CHROOT" --userspec="$user" "$root" "/usr/local/bin/$bin" --help >"$work/$kind-$bin.out" 2>&1; then
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
