#!/bin/bash
# Entrypoint of the end-to-end test image silo.local/redis:7 (built by e2e/images/build.sh), a
# subset of the official redis image's:
#
#   redis-entrypoint redis-server [OPTIONS...]   run redis-server (as the redis user)
#   redis-entrypoint --OPTION...                 the same, redis-server prepended
#   redis-entrypoint COMMAND...                  run COMMAND as it is (redis-cli, bash, ...)
#
# Started as root, it creates /data (the working directory), gives it and whatever in it is not
# the redis user's to redis (a hostPath or emptyDir volume is root's), and runs redis-server as
# redis (999:999) with no other privileges; as another user it runs redis-server directly.
# redis-server is exec'd, so it receives SIGTERM itself and shuts down (saving per its options).
set -euo pipefail

if [[ $# -eq 0 || "$1" == -* ]]; then
    set -- redis-server "$@"
fi
if [[ "$1" != redis-server ]]; then
    exec "$@"
fi

if [[ "$(id -u)" == 0 ]]; then
    mkdir -p /data
    find /data \! -user redis -exec chown redis:redis {} +
    exec setpriv --reuid=redis --regid=redis --init-groups -- "$0" "$@"
fi
exec "$@"
