#!/bin/sh
# mmdebstrap hooks for silo.local/redis:7 (called by e2e/images/build.sh):
#   redis-hook.sh essential ROOT   before redis-server and redis-tools are installed
#   redis-hook.sh customize ROOT   after everything is installed, before the tarball is made
# Users and groups are resolved inside the chroot (chroot ROOT ...), never on the host.
set -eu
stage="$1"
root="$2"

case "$stage" in
essential)
    # The official redis image's user and group, 999:999. redis-tools's postinst runs
    # `adduser --system --group redis`, which keeps an existing system user as it is.
    grep -q '^redis:' "$root/etc/group" || echo 'redis:x:999:' >>"$root/etc/group"
    grep -q '^redis:' "$root/etc/passwd" ||
        echo 'redis:x:999:999::/var/lib/redis:/usr/sbin/nologin' >>"$root/etc/passwd"
    ;;
customize)
    [ "$(chroot "$root" id -u redis):$(chroot "$root" id -g redis)" = 999:999 ] || {
        echo "redis-hook.sh: the redis user is not 999:999" >&2
        exit 1
    }
    # The data directory of the official image (its WORKDIR); the entrypoint chowns a mounted one.
    chroot "$root" install -d -o redis -g redis -m 0755 /data
    # Copies of the host's files (the container runtime provides resolv.conf and hostname),
    # the host's apt sources and leftovers of package installation.
    rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
    rm -f "$root"/etc/apt/sources.list "$root"/etc/apt/sources.list.d/*
    rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
    rm -rf "$root"/var/log/apt "$root"/var/cache/ldconfig/aux-cache
    find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
    ;;
*)
    echo "redis-hook.sh: unknown stage '$stage'" >&2
    exit 1
    ;;
esac
