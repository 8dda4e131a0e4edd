#!/bin/bash
# Entrypoint of the end-to-end test image silo.local/postgres:15 (built by e2e/images/build.sh).
#
#   postgres-entrypoint [postgres] [POSTGRES OPTIONS...]   initialize $PGDATA if needed, run postgres
#   postgres-entrypoint COMMAND...                         run COMMAND (psql, bash, ...)
#
# Variables, with the meaning the official postgres image gives them:
#   POSTGRES_PASSWORD           superuser password; required unless POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_USER               superuser name (default postgres)
#   POSTGRES_DB                 database created at initialization (default $POSTGRES_USER)
#   POSTGRES_INITDB_ARGS        extra initdb arguments (split on spaces)
#   POSTGRES_HOST_AUTH_METHOD   auth for TCP connections (default scram-sha-256)
#   PGDATA                      data directory (default /var/lib/postgresql/data)
# Scripts in /docker-entrypoint-initdb.d (*.sh, *.sql) run once, after the first initialization.
#
# Runs as the image's postgres user; started as root it drops to that user. When $PGDATA is a
# volume mount point it cannot own (an emptyDir is root's, mode 0777), the cluster lives in
# $PGDATA/pgdata instead. Local (Unix socket) connections are trusted, TCP connections need the
# password. SIGTERM and SIGINT both stop postgres with a fast shutdown (postgres itself treats
# SIGTERM as a smart shutdown, which waits for every client to disconnect); SIGQUIT is passed on.
set -euo pipefail

log() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ $# -eq 0 || "$1" == -* ]]; then
    set -- postgres "$@"
fi
if [[ "$1" != postgres ]]; then
    exec "$@"
fi
shift

if [[ "$(id -u)" == 0 ]]; then
    data="${PGDATA:-/var/lib/postgresql/data}"
    mkdir -p "$data"
    chown postgres:postgres "$data"
    chmod 0700 "$data"
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$0" postgres "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

mkdir -p "$PGDATA" 2>/dev/null || die "cannot create PGDATA $PGDATA as uid $(id -u)"
if [[ ! -O "$PGDATA" ]]; then
    log "$PGDATA belongs to uid $(stat -c %u "$PGDATA"), not $(id -u); using $PGDATA/pgdata"
    PGDATA="$PGDATA/pgdata"
    mkdir -p "$PGDATA" || die "cannot create $PGDATA as uid $(id -u)"
fi
chmod 0700 "$PGDATA"

# The socket directory compiled into Debian's postgres and psql; /tmp when another uid runs us.
socket_dir=/run/postgresql
[[ -w "$socket_dir" ]] || socket_dir=/tmp

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    if [[ -z "${POSTGRES_PASSWORD:-}" && "$auth" != trust ]]; then
        die "database is uninitialized and POSTGRES_PASSWORD is not set (set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without a password)"
    fi
    log "initializing $PGDATA (superuser $POSTGRES_USER, database $POSTGRES_DB, TCP auth $auth)"
    pwfile="$(mktemp)"
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
    pwargs=()
    [[ -z "${POSTGRES_PASSWORD:-}" ]] || pwargs=(--pwfile="$pwfile")
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
    initdb --username="$POSTGRES_USER" "${pwargs[@]}" --auth-local=trust --auth-host="$auth" \
        --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >&2
    rm -f "$pwfile"
    trap - EXIT
    printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

    # Initialization scripts and the database run against a server reachable only over the socket.
    pg_ctl --pgdata="$PGDATA" --wait --silent \
        --options="-c listen_addresses='' -c unix_socket_directories=$socket_dir" start >&2
    psql=(psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --host="$socket_dir"
        --username="$POSTGRES_USER" --dbname=postgres)
    if [[ "$POSTGRES_DB" != postgres ]]; then
        "${psql[@]}" --set=db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
        *.sh) log "running $script"; PGHOST="$socket_dir" PGUSER="$POSTGRES_USER" PGDATABASE="$POSTGRES_DB" bash "$script" ;;
        *.sql) log "running $script"; "${psql[@]/#--dbname=postgres/--dbname=$POSTGRES_DB}" -f "$script" ;;
        *) [[ ! -e "$script" ]] || log "ignoring $script" ;;
        esac
    done
    pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop >&2
    log "initialized"
fi

postgres -c unix_socket_directories="$socket_dir" "$@" &
pid=$!
signalled=0
trap 'signalled=1; kill -INT "$pid" 2>/dev/null || true' TERM INT
trap 'signalled=1; kill -QUIT "$pid" 2>/dev/null || true' QUIT
while :; do
    signalled=0
    status=0
    wait "$pid" || status=$?
    # A trapped signal interrupts `wait` with 128+N; wait again for postgres's own status.
    [[ "$signalled" == 1 ]] || exit "$status"
done
