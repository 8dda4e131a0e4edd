#!/bin/sh
# mmdebstrap hooks for silo.local/kafka:4.1.1 (called by e2e/images/build.sh):
#   kafka-hook.sh essential ROOT   before openjdk-17-jre-headless is installed
#   kafka-hook.sh customize ROOT   after everything is installed, before the tarball is made
# The jars and scripts are layers of their own (build.sh); this is the JRE and the user.
set -eu
stage="$1"
root="$2"

case "$stage" in
essential)
    # update-alternatives (the JRE's postinst) links man pages into man1, which the dpkg
    # path-excludes leave out; an empty directory lets it work, the customize stage removes it.
    mkdir -p "$root/usr/share/man/man1"
    ;;
customize)
    # The official apache/kafka image's user: appuser, 1000:1000.
    grep -q '^appuser:' "$root/etc/group" || echo 'appuser:x:1000:' >>"$root/etc/group"
    grep -q '^appuser:' "$root/etc/passwd" ||
        echo 'appuser:x:1000:1000::/home/appuser:/bin/bash' >>"$root/etc/passwd"
    if [ -f "$root/etc/shadow" ] && ! grep -q '^appuser:' "$root/etc/shadow"; then
        echo 'appuser:*:0:0:99999:7:::' >>"$root/etc/shadow"
    fi
    chroot "$root" install -d -o appuser -g appuser -m 0755 /home/appuser /var/lib/kafka
    chroot "$root" install -d -o appuser -g appuser -m 0750 /var/lib/kafka/data
    # Dependencies of the JRE that only AWT, fonts, printing (CUPS, with its TLS and Kerberos
    # libraries), sound, images and smart cards load: the broker and the tools run headless and
    # never load libawt, libfontmanager, libjsound, libjavajpeg, liblcms or the PC/SC provider.
    # About 28 MB.
    chroot "$root" dpkg --purge --force-depends \
        libcups2 libavahi-client3 libavahi-common3 libavahi-common-data libdbus-1-3 \
        libgnutls30 libp11-kit0 libtasn1-6 libunistring2 libidn2-0 libnettle8 libhogweed6 libffi8 \
        libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 \
        libasound2 libasound2-data libfontconfig1 fontconfig-config fonts-dejavu-core libexpat1 \
        libfreetype6 libpng16-16 libbrotli1 libharfbuzz0b libglib2.0-0 libgraphite2-3 \
        libjpeg62-turbo liblcms2-2 libpcsclite1
    # Nothing else may have lost a library (libjvm.so is loaded before the JDK's own libraries).
    broken="$(chroot "$root" sh -c '
        find /usr/lib /usr/bin /usr/sbin -type f \( -name "*.so*" -o -perm -0100 \) | while read -r f; do
            ldd "$f" 2>/dev/null | grep "not found" | grep -v -q "libjvm\.so" && echo "$f"
        done' | grep -v -E '/lib/(libawt|libawt_headless|libfontmanager|libjavajpeg|liblcms|libjsound|libj2pcsc)\.so$' || true)"
    if [ -n "$broken" ]; then
        echo "kafka-hook.sh: shared libraries missing after the purge for:" $broken >&2
        exit 1
    fi
    rm -rf "$root/usr/share/man"
    # Copies of the host's files (the container runtime provides resolv.conf and hostname),
    # the host's apt sources and leftovers of package installation.
    rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
    rm -f "$root"/etc/apt/sources.list "$root"/etc/apt/sources.list.d/*
    rm -f "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
    rm -rf "$root"/var/log/apt "$root"/var/cache/ldconfig/aux-cache
    find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock -exec rm -rf {} +
    ;;
*)
    echo "kafka-hook.sh: unknown stage '$stage'" >&2
    exit 1
    ;;
esac
