#!/bin/sh
# mmdebstrap hooks for silo.local/postgres:15 (called by e2e/images/build.sh):
#   postgres-hook.sh essential ROOT   before postgresql-15 is installed
#   postgres-hook.sh customize ROOT   after everything is installed, before the tarball is made
# Users and groups are resolved inside the chroot (chroot ROOT ...), never on the host.
set -eu
stage="$1"
root="$2"

case "$stage" in
essential)
    # No cluster "main" from the package's postinst: the entrypoint initializes $PGDATA.
    mkdir -p "$root/etc/postgresql-common/createcluster.d"
    echo "create_main_cluster = false" >"$root/etc/postgresql-common/createcluster.d/silo.conf"
    ;;
customize)
    # JIT compilation is the only user of LLVM (about 130 MB with z3); without its provider
    # library postgres runs with JIT unavailable. llvmjit*.so and the bitcode are dpkg
    # path-excluded; drop the libraries themselves.
    chroot "$root" dpkg --purge --force-depends libllvm14 libz3-4
    # Generated at install time: a private key nobody should share, and not reproducible.
    rm -f "$root/etc/ssl/private/ssl-cert-snakeoil.key" "$root/etc/ssl/certs/ssl-cert-snakeoil.pem"
    # postgres's man pages (kept by dpkg: update-alternatives needs them at configure time).
    rm -rf "$root"/usr/share/postgresql/*/man
    # Copies of the host's files (the container runtime provides resolv.conf and hostname),
    # the host's apt sources and leftovers of package installation.
    rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
    rm -f "$root"/etc/apt/sources.list "$root"/etc/apt/sources.list.d/*
    rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
    rm -rf "$root"/var/log/apt "$root"/var/cache/ldconfig/aux-cache
    # /run keeps only lock/ and the socket directory compiled into postgres and psql.
    find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
    chroot "$root" install -d -o postgres -g postgres -m 2775 /run/postgresql
    chroot "$root" install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
    ;;
*)
    echo "postgres-hook.sh: unknown stage '$stage'" >&2
    exit 1
    ;;
esac
