#!/usr/bin/env bash
# Container images without a container engine, as OCI archives for `ctr -n k8s.io images import`,
# `kind load image-archive`, `docker load` and `podman load`:
#
#   e2e/images/build.sh [workload|operator|postgres|all]...    (default: workload operator)
#
#   workload   ghcr.io/silo-dev/silo:<version>           relay, consumers, web, postprocess
#   operator   ghcr.io/silo-dev/silo-operator:<version>  entrypoint silo-operator
#   postgres   silo.local/postgres:15                     Debian's postgresql-15, for end-to-end tests
#
# <version> is the version of operator/controller/Cargo.toml, or SILO_IMAGE_TAG. The names are
# the chart's and the ControlPlane's defaults, so imported images are used without overrides.
#
# The silo images hold the stripped release binaries plus a base built here: the shared
# libraries they load (found with ldd, copied with their paths, dynamic loader included),
# /etc/passwd, /etc/group and /etc/nsswitch.conf (root and nonroot 65532) and /tmp; no shell.
# They run as 65532:65532. The postgres image is made by mmdebstrap from the host's apt sources.
#
# Archives are cached in $SILO_CACHE/images and rebuilt only when their inputs change. For each
# image, stdout gets one tab-separated line
#     image <TAB> KIND <TAB> REFERENCE <TAB> ARCHIVE <TAB> COMPRESSED_BYTES <TAB> UNPACKED_BYTES
# and $SILO_CACHE/images/KIND.path holds the archive path, KIND.ref the reference. Progress
# and sizes go to stderr; step logs to $SILO_CACHE/images/logs.
#
# Environment: CARGO_TARGET_DIR (default $SILO_CACHE/cargo-target), SILO_CACHE_DIR,
# SILO_IMAGE_TAG, SILO_IMAGE_SOURCE (label org.opencontainers.image.source),
# SILO_IMAGES_REBUILD=1 (ignore the cache), SILO_APT_SOURCES (apt sources files for mmdebstrap,
# space-separated; default the host's), SOURCE_DATE_EPOCH (file times and creation date of the
# silo images; default HEAD's commit time; the postgres image uses 0).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SILO_CACHE="${SILO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/silo}"
IMAGES="$SILO_CACHE/images"
LOGS="$IMAGES/logs"
TARGET_DIR="$(realpath -m "${CARGO_TARGET_DIR:-$SILO_CACHE/cargo-target}")"
OCI_IMAGE="$HERE/oci-image.py"

WORKLOAD_REPO=ghcr.io/silo-dev/silo
OPERATOR_REPO=ghcr.io/silo-dev/silo-operator
POSTGRES_REF=silo.local/postgres:15
POSTGRES_SUITE=bookworm
SOURCE_URL="${SILO_IMAGE_SOURCE:-https://github.com/silo-dev/silo}"
WORKLOAD_BINS=(relay consumers web postprocess)
WORKLOAD_PKGS=(silo-relay silo-consumers silo-web silo-postprocess)

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }
now_s() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1000000 }'; }

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# step NAME LOG COMMAND...: runs COMMAND with its output in LOG; on failure names the step and
# shows the end of the log.
step() {
    local name="$1" logfile="$2" status=0
    shift 2
    "$@" >"$logfile" 2>&1 || status=$?
    if ((status != 0)); then
        printf '[images] error: %s failed (exit %d); log: %s\n' "$name" "$status" "$logfile" >&2
        tail -n 25 "$logfile" | sed 's/^/    /' >&2
        exit "$status"
    fi
}

require() {
    command -v "$1" >/dev/null 2>&1 || die "required tool '$1' not found: $2"
}

# sha256 of a directory tree: names, types, modes, link targets and file contents.
tree_digest() {
    (
        cd "$1"
        find . -printf '%y %m %p %l\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
    ) | sha256sum | cut -d' ' -f1
}

json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# git revision of the checkout, "-dirty" when the tree has changes; PATHS limits both to paths.
revision() {
    local rev dirty
    rev="$(git -C "$ROOT" log -1 --format=%H -- "$@" 2>/dev/null)" || rev=""
    [[ -n "$rev" ]] || { echo unknown; return; }
    dirty="$(git -C "$ROOT" status --porcelain -- "$@" 2>/dev/null | head -n 1)"
    printf '%s%s\n' "$rev" "${dirty:+-dirty}"
}

# finish KIND REF ARCHIVE: record and print where the image is.
finish() {
    local kind="$1" ref="$2" archive="$3" how="$4" compressed unpacked
    compressed="$(json_field "$archive.json" compressed_bytes)"
    unpacked="$(json_field "$archive.json" unpacked_bytes)"
    printf '%s\n' "$archive" >"$IMAGES/$kind.path"
    printf '%s\n' "$ref" >"$IMAGES/$kind.ref"
    log "$kind $ref: $(mb "$compressed") MB compressed, $(mb "$unpacked") MB unpacked ($how) -> $archive"
    printf 'image\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$ref" "$archive" "$compressed" "$unpacked"
}

# assemble KIND REF KEY EPOCH OCI-IMAGE-ARGS...: writes the archive (timestamps EPOCH) unless
# one with KEY exists.
assemble() {
    local kind="$1" ref="$2" key="$3" epoch="$4" started
    shift 4
    local name="${ref##*/}"
    local archive="$IMAGES/${name%%:*}_${ref##*:}.tar"
    if [[ "${SILO_IMAGES_REBUILD:-0}" != 1 && -f "$archive" && -f "$archive.json" &&
        "$(cat "$archive.key" 2>/dev/null)" == "$key" ]]; then
        finish "$kind" "$ref" "$archive" cached
        return
    fi
    started="$(now_s)"
    rm -f "$archive.key"
    step "writing the $kind image archive" "$LOGS/$kind-archive.log" \
        env SOURCE_DATE_EPOCH="$epoch" python3 "$OCI_IMAGE" --name "$ref" --out "$archive" "$@"
    tail -n 1 "$LOGS/$kind-archive.log" >"$archive.json"
    printf '%s\n' "$key" >"$archive.key"
    finish "$kind" "$ref" "$archive" "written in $(elapsed "$started") s"
}

# base_layer DIR BINARY...: the shared libraries BINARY... load, users, nsswitch.conf, /tmp.
base_layer() {
    local dir="$1" bin out lib
    shift
    local -a libs=()
    for bin in "$@"; do
        if ! out="$(ldd "$bin" 2>&1)"; then
            [[ "$out" == *"not a dynamic executable"* ]] && continue
            die "ldd $bin failed: $out"
        fi
        if grep -q 'not found' <<<"$out"; then
            die "shared libraries of $bin missing on this host: $(grep 'not found' <<<"$out" | tr -s ' \t' ' ')"
        fi
        # "libx.so.1 => /path (0x..)" and "/lib64/ld-linux-x86-64.so.2 (0x..)"; vdso has no path.
        while read -r lib; do libs+=("$lib"); done < <(
            awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
        )
    done
    for lib in $(printf '%s\n' "${libs[@]}" | LC_ALL=C sort -u); do
        mkdir -p "$dir$(dirname "$lib")"
        cp -L "$lib" "$dir$lib"
    done
    mkdir -p "$dir/etc" "$dir/tmp"
    chmod 1777 "$dir/tmp"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$dir/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$dir/etc/group"
    printf '%s\n' 'passwd: files' 'group: files' 'shadow: files' 'hosts: files dns' \
        'networks: files' 'protocols: files' 'services: files' >"$dir/etc/nsswitch.conf"
    chmod 0644 "$dir"/etc/*
}

# rust_image KIND REPO TITLE DESCRIPTION CONFIG-ARGS -- BINARY...
rust_image() {
    local kind="$1" repo="$2" title="$3" description="$4"
    shift 4
    local -a config=()
    while [[ "$1" != -- ]]; do config+=("$1"); shift; done
    shift
    local ref="$repo:$VERSION" work="$IMAGES/work/$kind" bin
    rm -rf "$work"
    mkdir -p "$work/base" "$work/app/usr/local/bin"
    for bin in "$@"; do
        [[ -x "$TARGET_DIR/release/$bin" ]] || die "cargo build left no $TARGET_DIR/release/$bin"
        step "strip $bin" "$LOGS/strip-$bin.log" \
            strip --strip-all -o "$work/app/usr/local/bin/$bin" "$TARGET_DIR/release/$bin"
    done
    base_layer "$work/base" "$work"/app/usr/local/bin/*
    local -a labels=(
        "org.opencontainers.image.title=$title"
        "org.opencontainers.image.description=$description"
        "org.opencontainers.image.version=$VERSION"
        "org.opencontainers.image.revision=$REVISION"
        "org.opencontainers.image.source=$SOURCE_URL"
        "org.opencontainers.image.licenses=Apache-2.0"
    )
    local -a args=(--layer "$work/base" --layer "$work/app" --arch "$ARCH" --user 65532:65532
        "${config[@]}")
    local label
    for label in "${labels[@]}"; do args+=(--label "$label"); done
    local key
    key="$(
        printf '%s\n' "$ref" "$IMAGE_EPOCH" "${args[@]}"
        tree_digest "$work/base"
        tree_digest "$work/app"
        sha256sum "${BASH_SOURCE[0]}" "$OCI_IMAGE" | cut -d' ' -f1
    )"
    key="$(sha256sum <<<"$key" | cut -d' ' -f1)"
    assemble "$kind" "$ref" "$key" "$IMAGE_EPOCH" "${args[@]}"
}

# The host's apt sources, for mmdebstrap (one argument per file, one-line or deb822 format).
apt_sources() {
    if [[ -n "${SILO_APT_SOURCES:-}" ]]; then
        # shellcheck disable=SC2086 # a space-separated list of files
        printf '%s\n' $SILO_APT_SOURCES
        return
    fi
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] && grep -q -E '^[[:space:]]*(deb[[:space:]]|Types:)' "$f" && printf '%s\n' "$f"
    done
    return 0
}

postgres_image() {
    require mmdebstrap "apt-get update && apt-get install -y mmdebstrap"
    local codename
    # shellcheck disable=SC1091
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ "$codename" == "$POSTGRES_SUITE" ]] ||
        die "the postgres image installs postgresql-15 from the host's apt sources, which must be Debian $POSTGRES_SUITE (this host: ${codename:-unknown})"
    local -a sources=()
    mapfile -t sources < <(apt_sources)
    ((${#sources[@]} > 0)) || die "no apt sources found in /etc/apt (set SILO_APT_SOURCES)"
    local -a aptopts=()
    local proxy
    proxy="$(apt-config dump --format '%v%n' Acquire::http::Proxy 2>/dev/null || true)"
    [[ -z "$proxy" ]] || aptopts+=(--aptopt="Acquire::http::Proxy \"$proxy\"")
    local -a mm=(
        mmdebstrap --variant=essential --include=postgresql-15 --format=tar --skip=output/dev
        --skip=cleanup/run --skip=essential/unlink
        --aptopt='Acquire::Languages "none"' "${aptopts[@]}"
        --dpkgopt='path-exclude=/usr/share/doc/*'
        --dpkgopt='path-include=/usr/share/doc/*/copyright'
        --dpkgopt='path-exclude=/usr/share/man/*'
        --dpkgopt='path-exclude=/usr/share/info/*'
        --dpkgopt='path-exclude=/usr/share/lintian/*'
        --dpkgopt='path-exclude=/usr/share/locale/*'
        --dpkgopt='path-exclude=/usr/share/i18n/*'
        --dpkgopt='path-exclude=/usr/share/zoneinfo/right/*'
        --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/bitcode/*'
        --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/llvmjit*'
    )
    local version_info
    version_info="$(apt-cache policy postgresql-15 2>/dev/null | awk '/Candidate:/ { print $2 }')"
    local rootfs_key
    rootfs_key="$(
        printf '%s\n' "${mm[@]}" "$POSTGRES_SUITE" "$version_info" "$(mmdebstrap --version 2>&1)"
        sha256sum "$HERE/postgres-hook.sh" "${sources[@]}" | cut -d' ' -f1
    )"
    rootfs_key="$(sha256sum <<<"$rootfs_key" | cut -d' ' -f1)"

    local dir="$IMAGES/postgres" started
    local rootfs="$dir/rootfs.tar" debs="$dir/debs"
    mkdir -p "$dir" "$debs"
    if [[ "${SILO_IMAGES_REBUILD:-0}" == 1 || ! -f "$rootfs" ||
        "$(cat "$rootfs.key" 2>/dev/null)" != "$rootfs_key" ]]; then
        started="$(now_s)"
        log "postgres: mmdebstrap $POSTGRES_SUITE + postgresql-15 (about 2 minutes; log: $LOGS/postgres-mmdebstrap.log)"
        rm -f "$rootfs" "$rootfs.key" "$rootfs.info"
        mkdir -p "$dir/tmp"
        # shellcheck disable=SC2016 # "$1" is the chroot, expanded by mmdebstrap's hook shell
        step "mmdebstrap (postgres rootfs)" "$LOGS/postgres-mmdebstrap.log" env TMPDIR="$dir/tmp" SOURCE_DATE_EPOCH=0 \
            "${mm[@]}" \
            --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
            --setup-hook="sync-in $debs /var/cache/apt/archives" \
            --essential-hook="sh '$HERE/postgres-hook.sh' essential \"\$1\"" \
            --customize-hook="sync-out /var/cache/apt/archives $debs" \
            --customize-hook="sh '$HERE/postgres-hook.sh' customize \"\$1\"" \
            "$POSTGRES_SUITE" "$rootfs.tmp" "${sources[@]}"
        mv "$rootfs.tmp" "$rootfs"
        printf '%s\n' "$rootfs_key" >"$rootfs.key"
        log "postgres: rootfs in $(elapsed "$started") s ($(mb "$(stat -c %s "$rootfs")") MB)"
    fi

    # The image's postgres user and package version, read from the rootfs once.
    if [[ ! -f "$rootfs.info" || "$rootfs.info" -ot "$rootfs" ]]; then
        local passwd
        passwd="$(tar -xOf "$rootfs" ./etc/passwd)" || die "no /etc/passwd in $rootfs"
        {
            awk -F: '$1 == "postgres" { print $3 ":" $4 }' <<<"$passwd"
            tar -xOf "$rootfs" ./var/lib/dpkg/status |
                awk '/^Package: / { p = ($2 == "postgresql-15") } p && /^Version:/ { v = $2 } END { print v }'
        } >"$rootfs.info"
    fi
    local user pg_version
    { read -r user; read -r pg_version; } <"$rootfs.info"
    [[ "$user" =~ ^[0-9]+:[0-9]+$ ]] || die "no postgres user in the rootfs's /etc/passwd ($rootfs)"

    local work="$IMAGES/work/postgres"
    rm -rf "$work"
    mkdir -p "$work/entry/usr/local/bin" "$work/entry/docker-entrypoint-initdb.d"
    install -m 0755 "$HERE/postgres-entrypoint.sh" "$work/entry/usr/local/bin/postgres-entrypoint"
    local rev
    rev="$(revision e2e/images)"
    local -a args=(
        --layer "$rootfs" --layer "$work/entry" --arch "$ARCH"
        --user "$user"
        --entrypoint '["/usr/local/bin/postgres-entrypoint"]' --cmd '["postgres"]'
        --env PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        --env LANG=C.UTF-8 --env PGDATA=/var/lib/postgresql/data
        --workdir /var/lib/postgresql --expose 5432/tcp
        --label "org.opencontainers.image.title=silo-postgres"
        --label "org.opencontainers.image.description=Debian $POSTGRES_SUITE postgresql-15 for silo's end-to-end tests"
        --label "org.opencontainers.image.version=$pg_version"
        --label "org.opencontainers.image.revision=$rev"
        --label "org.opencontainers.image.source=$SOURCE_URL"
        --label "org.opencontainers.image.licenses=PostgreSQL"
    )
    local key
    key="$(
        printf '%s\n' "$POSTGRES_REF" "$rootfs_key" "${args[@]}"
        tree_digest "$work/entry"
        sha256sum "${BASH_SOURCE[0]}" "$OCI_IMAGE" | cut -d' ' -f1
    )"
    key="$(sha256sum <<<"$key" | cut -d' ' -f1)"
    # Stamped with 0 so that only the rootfs's content decides its layer digest.
    assemble postgres "$POSTGRES_REF" "$key" 0 "${args[@]}"
}

want_workload=0 want_operator=0 want_postgres=0
(($# > 0)) || set -- workload operator
for arg in "$@"; do
    case "$arg" in
    workload) want_workload=1 ;;
    operator) want_operator=1 ;;
    postgres) want_postgres=1 ;;
    all) want_workload=1 want_operator=1 want_postgres=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown image '$arg' (workload, operator, postgres or all)" ;;
    esac
done

require python3 "apt-get install -y python3"
require git "apt-get install -y git"
require flock "apt-get install -y util-linux"
mkdir -p "$IMAGES" "$LOGS"
# One build at a time per cache: runs share the work directories, archives and logs.
exec 9>"$IMAGES/.lock"
if ! flock -n 9; then
    log "waiting for another e2e/images/build.sh using $IMAGES (lock $IMAGES/.lock)"
    flock 9
fi

VERSION="${SILO_IMAGE_TAG:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$ROOT/operator/controller/Cargo.toml" | head -n 1)}"
[[ -n "$VERSION" ]] || die "no version in operator/controller/Cargo.toml (or set SILO_IMAGE_TAG)"
REVISION="$(revision .)"
# The images hold this machine's binaries and packages: its architecture, in OCI's names.
case "$(uname -m)" in
x86_64) ARCH=amd64 ;;
aarch64 | arm64) ARCH=arm64 ;;
*) die "unsupported machine architecture $(uname -m)" ;;
esac
# Timestamps in the silo images. Not exported: build scripts (cc, ring) track SOURCE_DATE_EPOCH,
# so a value changing with HEAD would rebuild them on every commit.
IMAGE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}"

if ((want_workload || want_operator)); then
    require cargo "install Rust (rustup)"
    require strip "apt-get install -y binutils"
    require ldd "apt-get install -y libc-bin"
    # Always all five binaries: cargo unifies dependency features over the selected packages,
    # so building fewer would give other binaries (and rebuild the dependencies).
    bins=("${WORKLOAD_BINS[@]}" silo-operator) pkgs=("${WORKLOAD_PKGS[@]}" silo-operator)
    cargo_args=(build --release)
    for p in "${pkgs[@]}"; do cargo_args+=(-p "$p"); done
    for b in "${bins[@]}"; do cargo_args+=(--bin "$b"); done
    started="$(now_s)"
    log "cargo ${cargo_args[*]} (target $TARGET_DIR; log: $LOGS/cargo-build.log)"
    (cd "$ROOT" && step "cargo build --release" "$LOGS/cargo-build.log" \
        env CARGO_TARGET_DIR="$TARGET_DIR" cargo "${cargo_args[@]}")
    log "cargo build: $(elapsed "$started") s"
fi

if ((want_workload)); then
    rust_image workload "$WORKLOAD_REPO" silo \
        "silo workloads: relay, consumers, web and postprocess of a Sentry-compatible region" \
        --cmd '["web"]' -- "${WORKLOAD_BINS[@]}"
fi
if ((want_operator)); then
    rust_image operator "$OPERATOR_REPO" silo-operator \
        "silo operator: reconciles ControlPlane and Region resources into running silos" \
        --entrypoint '["/usr/local/bin/silo-operator"]' -- silo-operator
fi
if ((want_postgres)); then
    postgres_image
fi
