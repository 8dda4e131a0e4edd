#!/usr/bin/env bash
# Container images without a container engine, as OCI archives for `ctr -n k8s.io images import`,
# `kind load image-archive`, `docker load` and `podman load`:
#
#   e2e/images/build.sh [workload|workload-next|operator|postgres|redis|kafka|all]...   (default: workload operator)
#
#   workload   ghcr.io/silo-dev/silo:<version>           relay, consumers, web, postprocess
#   workload-next  ghcr.io/silo-dev/silo:<version>-next  the same binaries as a second release,
#                                                         for upgrade and migration-gate tests
#   operator   ghcr.io/silo-dev/silo-operator:<version>  entrypoint silo-operator
#   postgres   silo.local/postgres:15                     Debian's postgresql-15, for end-to-end tests
#   redis      silo.local/redis:7                         Debian's redis-server, for end-to-end tests
#   kafka      silo.local/kafka:4.1.1                     Kafka 4.1.1 (KRaft) on Debian's JRE 17, ditto
#
# <version> is the version of operator/controller/Cargo.toml, or SILO_IMAGE_TAG. The names are
# the chart's and the ControlPlane's defaults, so imported images are used without overrides.
#
# The silo images hold the stripped release binaries plus a base built here: the shared
# libraries they load (found with ldd, copied with their paths, dynamic loader included),
# /etc/passwd, /etc/group and /etc/nsswitch.conf (root and nonroot 65532) and /tmp; no shell.
# They run as 65532:65532. The postgres, redis and kafka images are Debian root filesystems made
# by mmdebstrap from the host's apt sources; kafka adds the jars e2e/services resolves from Maven.
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
# silo images; default HEAD's commit time; the postgres, redis and kafka images use 0).
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
DEBIAN_SUITE=bookworm
POSTGRES_REF=silo.local/postgres:15
REDIS_REF=silo.local/redis:7
KAFKA_VERSION=4.1.1
KAFKA_REF=silo.local/kafka:$KAFKA_VERSION
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

# require_package TOOL PACKAGE: TOOL from Debian's PACKAGE, installed with apt-get when it is
# missing and this runs as root (as the node's packages are); otherwise names the command.
require_package() {
    if ! command -v "$1" >/dev/null 2>&1 && [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing Debian package $2 (for '$1')"
        mkdir -p "$SILO_CACHE"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "$2"; } \
            >"$SILO_CACHE/apt-images.log" 2>&1 ||
            die "apt-get install $2 failed, see $SILO_CACHE/apt-images.log"
    fi
    require "$1" "apt-get update && apt-get install -y $2"
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

# rust_image KIND REF TITLE DESCRIPTION CONFIG-ARGS -- BINARY...
rust_image() {
    local kind="$1" ref="$2" title="$3" description="$4"
    shift 4
    local -a config=()
    while [[ "$1" != -- ]]; do config+=("$1"); shift; done
    shift
    local work="$IMAGES/work/$kind" bin
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
        "org.opencontainers.image.version=${ref##*:}"
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

# debian_rootfs KIND PACKAGES HOOK [MMDEBSTRAP-OPTION...]: $IMAGES/KIND/rootfs.tar, Debian
# $DEBIAN_SUITE's essential packages plus PACKAGES (comma-separated, with their dependencies,
# without recommends) from the host's apt sources, HOOK's `essential` and `customize` stages run
# on it. Rebuilt when the options, the candidate versions of PACKAGES in the host's apt lists,
# mmdebstrap, HOOK or the apt sources change; the downloaded .debs are kept in $IMAGES/KIND/debs.
# Sets ROOTFS and ROOTFS_KEY.
debian_rootfs() {
    local kind="$1" packages="$2" hook="$3"
    shift 3
    require_package mmdebstrap mmdebstrap
    local codename
    # shellcheck disable=SC1091
    codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")"
    [[ "$codename" == "$DEBIAN_SUITE" ]] ||
        die "the $kind image installs ${packages//,/ } from the host's apt sources, which must be Debian $DEBIAN_SUITE (this host: ${codename:-unknown})"
    local -a sources=()
    mapfile -t sources < <(apt_sources)
    ((${#sources[@]} > 0)) || die "no apt sources found in /etc/apt (set SILO_APT_SOURCES)"
    local -a aptopts=()
    local proxy
    proxy="$(apt-config dump --format '%v%n' Acquire::http::Proxy 2>/dev/null || true)"
    [[ -z "$proxy" ]] || aptopts+=(--aptopt="Acquire::http::Proxy \"$proxy\"")
    local -a mm=(
        mmdebstrap --variant=essential --include="$packages" --format=tar --skip=output/dev
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
        "$@"
    )
    local version_info pkg
    version_info="$(for pkg in ${packages//,/ }; do
        apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ { print $2 }'
    done)"
    ROOTFS_KEY="$(
        printf '%s\n' "${mm[@]}" "$DEBIAN_SUITE" "$version_info" "$(mmdebstrap --version 2>&1)"
        sha256sum "$hook" "${sources[@]}" | cut -d' ' -f1
    )"
    ROOTFS_KEY="$(sha256sum <<<"$ROOTFS_KEY" | cut -d' ' -f1)"

    local dir="$IMAGES/$kind" started
    ROOTFS="$dir/rootfs.tar"
    local debs="$dir/debs"
    mkdir -p "$dir" "$debs"
    if [[ "${SILO_IMAGES_REBUILD:-0}" == 1 || ! -f "$ROOTFS" ||
        "$(cat "$ROOTFS.key" 2>/dev/null)" != "$ROOTFS_KEY" ]]; then
        started="$(now_s)"
        log "$kind: mmdebstrap $DEBIAN_SUITE + ${packages//,/ } (1-2 minutes; log: $LOGS/$kind-mmdebstrap.log)"
        rm -f "$ROOTFS" "$ROOTFS.key" "$ROOTFS.info"
        mkdir -p "$dir/tmp"
        # shellcheck disable=SC2016 # "$1" is the chroot, expanded by mmdebstrap's hook shell
        step "mmdebstrap ($kind rootfs)" "$LOGS/$kind-mmdebstrap.log" env TMPDIR="$dir/tmp" SOURCE_DATE_EPOCH=0 \
            "${mm[@]}" \
            --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
            --setup-hook="sync-in $debs /var/cache/apt/archives" \
            --essential-hook="sh '$hook' essential \"\$1\"" \
            --customize-hook="sync-out /var/cache/apt/archives $debs" \
            --customize-hook="sh '$hook' customize \"\$1\"" \
            "$DEBIAN_SUITE" "$ROOTFS.tmp" "${sources[@]}"
        mv "$ROOTFS.tmp" "$ROOTFS"
        printf '%s\n' "$ROOTFS_KEY" >"$ROOTFS.key"
        log "$kind: rootfs in $(elapsed "$started") s ($(mb "$(stat -c %s "$ROOTFS")") MB)"
    fi
}

# rootfs_info USER PACKAGE: USER's uid:gid in $ROOTFS's /etc/passwd and the installed version of
# PACKAGE, read once per rootfs ($ROOTFS.info). Sets ROOTFS_USER and ROOTFS_VERSION.
rootfs_info() {
    local user="$1" package="$2"
    if [[ ! -f "$ROOTFS.info" || "$ROOTFS.info" -ot "$ROOTFS" ]]; then
        local passwd
        passwd="$(tar -xOf "$ROOTFS" ./etc/passwd)" || die "no /etc/passwd in $ROOTFS"
        {
            awk -F: -v u="$user" '$1 == u { print $3 ":" $4 }' <<<"$passwd"
            tar -xOf "$ROOTFS" ./var/lib/dpkg/status |
                awk -v p="$package" '/^Package: / { s = ($2 == p) } s && /^Version:/ { v = $2 } END { print v }'
        } >"$ROOTFS.info"
    fi
    { read -r ROOTFS_USER; read -r ROOTFS_VERSION; } <"$ROOTFS.info"
    [[ "$ROOTFS_USER" =~ ^[0-9]+:[0-9]+$ ]] || die "no $user user in the rootfs's /etc/passwd ($ROOTFS)"
    [[ -n "$ROOTFS_VERSION" ]] || die "no $package installed in $ROOTFS"
}

# store_image KIND REF KEY-INPUTS... -- OCI-IMAGE-ARGS...: the archive of a store image (postgres,
# redis, kafka) from its rootfs and layers, keyed on the rootfs key, KEY-INPUTS (directories,
# hashed as trees), the arguments, build.sh and oci-image.py; stamped with 0 so that only the
# content decides the layer digests.
store_image() {
    local kind="$1" ref="$2" tree
    shift 2
    local -a trees=()
    while [[ "$1" != -- ]]; do trees+=("$1"); shift; done
    shift
    local key
    key="$(
        printf '%s\n' "$ref" "$ROOTFS_KEY" "$@"
        for tree in "${trees[@]}"; do tree_digest "$tree"; done
        sha256sum "${BASH_SOURCE[0]}" "$OCI_IMAGE" | cut -d' ' -f1
    )"
    key="$(sha256sum <<<"$key" | cut -d' ' -f1)"
    assemble "$kind" "$ref" "$key" 0 "$@"
}

postgres_image() {
    debian_rootfs postgres postgresql-15 "$HERE/postgres-hook.sh" \
        --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/bitcode/*' \
        --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/llvmjit*'
    rootfs_info postgres postgresql-15

    local work="$IMAGES/work/postgres"
    rm -rf "$work"
    mkdir -p "$work/entry/usr/local/bin" "$work/entry/docker-entrypoint-initdb.d"
    install -m 0755 "$HERE/postgres-entrypoint.sh" "$work/entry/usr/local/bin/postgres-entrypoint"
    local rev
    rev="$(revision e2e/images)"
    local -a args=(
        --layer "$ROOTFS" --layer "$work/entry" --arch "$ARCH"
        --user "$ROOTFS_USER"
        --entrypoint '["/usr/local/bin/postgres-entrypoint"]' --cmd '["postgres"]'
        --env PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        --env LANG=C.UTF-8 --env PGDATA=/var/lib/postgresql/data
        --workdir /var/lib/postgresql --expose 5432/tcp
        --label "org.opencontainers.image.title=silo-postgres"
        --label "org.opencontainers.image.description=Debian $DEBIAN_SUITE postgresql-15 for silo's end-to-end tests"
        --label "org.opencontainers.image.version=$ROOTFS_VERSION"
        --label "org.opencontainers.image.revision=$rev"
        --label "org.opencontainers.image.source=$SOURCE_URL"
        --label "org.opencontainers.image.licenses=PostgreSQL"
    )
    store_image postgres "$POSTGRES_REF" "$work/entry" -- "${args[@]}"
}

# Merged /usr set up by mmdebstrap's own hooks (symlinks, then usr-is-merged). Without them apt
# satisfies init-system-helpers's `usrmerge | usr-is-merged` with usrmerge, which converts the
# tree at install time and brings perl (45 MB) along. The postgres image needs perl anyway.
merged_usr_hooks() {
    local dir
    dir="$(dirname "$(readlink -f "$(command -v mmdebstrap)")")/../share/mmdebstrap/hooks/merged-usr"
    [[ -x "$dir/setup00.sh" ]] || dir=/usr/share/mmdebstrap/hooks/merged-usr
    [[ -x "$dir/setup00.sh" ]] || die "no mmdebstrap hooks/merged-usr (Debian's mmdebstrap package ships them)"
    printf -- '--hook-dir=%s\n' "$(realpath "$dir")"
}

redis_image() {
    debian_rootfs redis redis-server,redis-tools "$HERE/redis-hook.sh" "$(merged_usr_hooks)"
    rootfs_info redis redis-server

    local work="$IMAGES/work/redis"
    rm -rf "$work"
    mkdir -p "$work/entry/usr/local/bin"
    install -m 0755 "$HERE/redis-entrypoint.sh" "$work/entry/usr/local/bin/redis-entrypoint"
    local rev
    rev="$(revision e2e/images)"
    # No USER, as in the official image: the entrypoint starts as root, owns /data and drops to
    # the redis user (999:999, the official image's ids).
    local -a args=(
        --layer "$ROOTFS" --layer "$work/entry" --arch "$ARCH"
        --entrypoint '["/usr/local/bin/redis-entrypoint"]' --cmd '["redis-server"]'
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        --workdir /data --expose 6379/tcp
        --label "org.opencontainers.image.title=silo-redis"
        --label "org.opencontainers.image.description=Debian $DEBIAN_SUITE redis-server for silo's end-to-end tests"
        --label "org.opencontainers.image.version=$ROOTFS_VERSION"
        --label "org.opencontainers.image.revision=$rev"
        --label "org.opencontainers.image.source=$SOURCE_URL"
        --label "org.opencontainers.image.licenses=BSD-3-Clause"
    )
    store_image redis "$REDIS_REF" "$work/entry" -- "${args[@]}"
}

# The Kafka jars of the loopback services (e2e/services/lib.sh resolves them from Maven Central
# into $SILO_CACHE/kafka/VERSION/libs once); prints their directory.
kafka_libs() {
    (
        logs="$LOGS"
        export SILO_KAFKA_VERSION="$KAFKA_VERSION"
        # shellcheck disable=SC1091 # e2e/services/lib.sh: definitions only
        . "$ROOT/e2e/services/lib.sh"
        if [[ ! -f "$KAFKA_LIBS/.complete" ]]; then
            require mvn "apt-get install -y maven"
            require java "apt-get install -y openjdk-17-jre-headless"
            # services/up.sh resolves into the same directory under this lock.
            mkdir -p "$SILO_STATE"
            exec 8>"$SILO_STATE/services.lock"
            flock -w 600 8 || die "another services script holds $SILO_STATE/services.lock"
            LOGS="$logs" kafka_resolve_jars >&2 || exit 1
        fi
        printf '%s\n' "$KAFKA_LIBS"
    )
}

kafka_image() {
    local libs
    libs="$(kafka_libs)" || die "no Kafka $KAFKA_VERSION jars (log: $LOGS/kafka-maven.log)"
    debian_rootfs kafka openjdk-17-jre-headless "$HERE/kafka-hook.sh" "$(merged_usr_hooks)" \
        --dpkgopt='path-exclude=/usr/lib/jvm/*/lib/server/classes_nocoops.jsa' \
        --dpkgopt='path-exclude=/usr/lib/jvm/*/lib/ct.sym'
    rootfs_info appuser openjdk-17-jre-headless
    [[ "$ROOTFS_USER" == 1000:1000 ]] || die "appuser is $ROOTFS_USER in the kafka rootfs, expected 1000:1000"

    local work="$IMAGES/work/kafka" f
    rm -rf "$work"
    # The jars (a layer of their own: they change less often than the scripts).
    mkdir -p "$work/libs/opt/kafka/libs"
    for f in "$libs"/*.jar; do
        cp -l "$f" "$work/libs/opt/kafka/libs/" 2>/dev/null || cp "$f" "$work/libs/opt/kafka/libs/"
    done
    chmod 0644 "$work/libs/opt/kafka/libs"/*.jar
    # Entrypoint, tool wrappers, logging configuration.
    mkdir -p "$work/files/usr/local/bin" "$work/files/opt/kafka/bin" "$work/files/opt/kafka/config" \
        "$work/files/etc/kafka/docker"
    install -m 0755 "$HERE/kafka-entrypoint.sh" "$work/files/usr/local/bin/kafka-entrypoint"
    ln -s /usr/local/bin/kafka-entrypoint "$work/files/etc/kafka/docker/run"
    install -m 0755 "$HERE/kafka-tool.sh" "$work/files/opt/kafka/bin/kafka-run-class.sh"
    for f in kafka-topics kafka-storage kafka-console-producer kafka-console-consumer \
        kafka-consumer-groups kafka-metadata-quorum; do
        ln -s kafka-run-class.sh "$work/files/opt/kafka/bin/$f.sh"
    done
    install -m 0644 "$HERE/kafka-log4j2.properties" "$work/files/opt/kafka/config/log4j2.properties"
    local rev
    rev="$(revision e2e/images)"
    local jvm="/usr/lib/jvm/java-17-openjdk-$ARCH"
    local -a args=(
        --layer "$ROOTFS" --layer "$work/libs" --layer "$work/files" --arch "$ARCH"
        --user 1000:1000
        --entrypoint '["/usr/local/bin/kafka-entrypoint"]'
        --env PATH=/opt/kafka/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        --env JAVA_HOME="$jvm" --env LANG=C.UTF-8
        --workdir /opt/kafka --expose 9092/tcp --expose 9093/tcp
        --label "org.opencontainers.image.title=silo-kafka"
        --label "org.opencontainers.image.description=Apache Kafka $KAFKA_VERSION (KRaft) on Debian $DEBIAN_SUITE openjdk-17-jre-headless for silo's end-to-end tests"
        --label "org.opencontainers.image.version=$KAFKA_VERSION"
        --label "org.opencontainers.image.revision=$rev"
        --label "org.opencontainers.image.source=$SOURCE_URL"
        --label "org.opencontainers.image.licenses=Apache-2.0 AND GPL-2.0-only WITH Classpath-exception-2.0"
    )
    store_image kafka "$KAFKA_REF" "$work/libs" "$work/files" -- "${args[@]}"
}

want_workload=0 want_workload_next=0 want_operator=0 want_postgres=0 want_redis=0 want_kafka=0
(($# > 0)) || set -- workload operator
for arg in "$@"; do
    case "$arg" in
    workload) want_workload=1 ;;
    workload-next) want_workload_next=1 ;;
    operator) want_operator=1 ;;
    postgres) want_postgres=1 ;;
    redis) want_redis=1 ;;
    kafka) want_kafka=1 ;;
    all) want_workload=1 want_workload_next=1 want_operator=1 want_postgres=1 want_redis=1 want_kafka=1 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown image '$arg' (workload, workload-next, operator, postgres, redis, kafka or all)" ;;
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

if ((want_workload || want_workload_next || want_operator)); then
    require cargo "install Rust (rustup)"
    require strip "apt-get install -y binutils"
    require ldd "apt-get install -y libc-bin"
    # The workloads' Kafka client (librdkafka with TLS and SASL) builds against OpenSSL.
    require_package pkg-config pkg-config
    if ! pkg-config --exists openssl; then
        [[ $EUID -eq 0 ]] || die "OpenSSL's headers are missing: apt-get install -y libssl-dev"
        log "installing Debian package libssl-dev (OpenSSL headers for librdkafka)"
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libssl-dev; } \
            >"$SILO_CACHE/apt-images.log" 2>&1 ||
            die "apt-get install libssl-dev failed, see $SILO_CACHE/apt-images.log"
    fi
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
    rust_image workload "$WORKLOAD_REPO:$VERSION" silo \
        "silo workloads: relay, consumers, web and postprocess of a Sentry-compatible region" \
        --cmd '["web"]' -- "${WORKLOAD_BINS[@]}"
fi
if ((want_workload_next)); then
    rust_image workload-next "$WORKLOAD_REPO:$VERSION-next" silo \
        "silo workloads (the same binaries as $VERSION, tagged as a second release for tests)" \
        --cmd '["web"]' -- "${WORKLOAD_BINS[@]}"
fi
if ((want_operator)); then
    rust_image operator "$OPERATOR_REPO:$VERSION" silo-operator \
        "silo operator: reconciles ControlPlane and Region resources into running silos" \
        --entrypoint '["/usr/local/bin/silo-operator"]' -- silo-operator
fi
if ((want_postgres)); then
    postgres_image
fi
if ((want_redis)); then
    redis_image
fi
if ((want_kafka)); then
    kafka_image
fi
