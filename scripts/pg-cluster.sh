#!/usr/bin/env bash
# A throwaway PostgreSQL 15 pair on loopback for keyledger's tests and benches: a primary
# and a synchronous standby (streaming replication, `synchronous_commit = on`), so a commit
# the primary acknowledges is on both. Never for production: trust authentication, fsync on
# a temporary directory, loopback only.
#
#   scripts/pg-cluster.sh start          initdb (as the postgres user), start both, wait for sync
#   scripts/pg-cluster.sh url            the libpq URL naming both hosts (read-write session)
#   scripts/pg-cluster.sh status         which node is primary, and the standby's sync state
#   scripts/pg-cluster.sh kill-primary   SIGKILL the primary's postmaster (a machine dying)
#   scripts/pg-cluster.sh promote        promote the standby to primary
#   scripts/pg-cluster.sh restart-old-primary
#                                        start the killed primary again, as it was: a
#                                        stale primary whose synchronous standby is gone
#   scripts/pg-cluster.sh freeze NODE    SIGSTOP a node (primary|standby) and all its
#                                        processes: its sockets stay open and nothing
#                                        answers, as in a network partition
#   scripts/pg-cluster.sh thaw NODE      SIGCONT them again
#   scripts/pg-cluster.sh stop           stop both and delete the directory
#
# Environment: KEYLEDGER_PG_DIR (default /tmp/keyledger-pg), KEYLEDGER_PG_PRIMARY_PORT
# (54321), KEYLEDGER_PG_STANDBY_PORT (54322). Installs Debian's `postgresql` package when
# no PostgreSQL binaries are found (as root, with apt-get).
# KEYLEDGER_PG_TLS=1: both servers speak TLS (`ssl = on`) with a certificate from a test CA
# made here ($DIR/tls/ca.pem; the certificate names KEYLEDGER_PG_TLS_NAMES, default
# DNS:localhost,IP:127.0.0.1), and `url` asks for sslmode=verify-full against that CA.
set -euo pipefail

DIR=${KEYLEDGER_PG_DIR:-/tmp/keyledger-pg}
PRIMARY_PORT=${KEYLEDGER_PG_PRIMARY_PORT:-54321}
STANDBY_PORT=${KEYLEDGER_PG_STANDBY_PORT:-54322}
DATABASE=keyledger
USER_NAME=postgres

die() { echo "pg-cluster: $*" >&2; exit 1; }

bindir() {
    local found
    for found in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        if [ -x "$found/pg_ctl" ]; then echo "$found"; return 0; fi
    done
    return 1
}

ensure_installed() {
    if bindir >/dev/null; then return 0; fi
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and this is not root: apt-get install postgresql"
    echo "pg-cluster: installing postgresql with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bindir >/dev/null || die "postgresql installed but no pg_ctl found"
}

# Runs a PostgreSQL program as the unprivileged postgres user when this is root (initdb and
# the server refuse to run as root).
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg() { as_pg "$(bindir)/$1" "${@:2}"; }

psql_at() {
    local port=$1
    shift
    "$(bindir)/psql" -X -q -A -t -h 127.0.0.1 -p "$port" -U "$USER_NAME" -d "${PGDATABASE:-postgres}" "$@"
}

configure() {
    local data=$1 port=$2
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$DIR'
wal_level = replica
max_wal_senders = 8
max_replication_slots = 8
hot_standby = on
synchronous_commit = on
wal_keep_size = '256MB'
max_connections = 300
shared_buffers = '128MB'
fsync = on
logging_collector = off
EOF
    cat >"$data/pg_hba.conf" <<EOF
local all all trust
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
EOF
}

tls_on() { [ "${KEYLEDGER_PG_TLS:-0}" = 1 ]; }

# A test CA and a server certificate it signed, as docs/operations.md shows; the key and
# certificate go into the primary's data directory (and so into the standby's base backup).
make_certificates() {
    local data=$1 tls="$DIR/tls"
    local names=${KEYLEDGER_PG_TLS_NAMES:-DNS:localhost,IP:127.0.0.1}
    mkdir -p "$tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" -subj "/CN=keyledger test CA" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=keyledger test server" 2>/dev/null
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
        -CAcreateserial -days 30 -extfile <(printf "subjectAltName=%s" "$names") \
        -out "$tls/server.pem" 2>/dev/null
    chmod 0755 "$tls"
    chmod 0644 "$tls/ca.pem"
    cp "$tls/server.pem" "$data/server.crt"
    cp "$tls/server.key" "$data/server.key"
    chown postgres:postgres "$data/server.crt" "$data/server.key" 2>/dev/null || true
    chmod 0600 "$data/server.key"
    cat >>"$data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
}

wait_for() {
    local what=$1 tries=$2
    shift 2
    local i
    for ((i = 0; i < tries; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    die "timed out waiting for $what"
}

sync_standby() {
    [ "$(psql_at "$PRIMARY_PORT" -c "select sync_state from pg_stat_replication where application_name = 'standby1'")" = sync ]
}

start() {
    ensure_installed
    [ ! -e "$DIR/primary/PG_VERSION" ] || die "$DIR already holds a cluster (stop it first)"
    mkdir -p "$DIR"
    chown postgres:postgres "$DIR" 2>/dev/null || true
    chmod 0700 "$DIR"
    as_pg test -w "$DIR" ||
        die "the postgres user cannot write $DIR (is a parent directory closed to it?)"
    pg initdb -D "$DIR/primary" -U "$USER_NAME" --auth=trust --no-instructions -E UTF8 >/dev/null
    configure "$DIR/primary" "$PRIMARY_PORT"
    if tls_on; then make_certificates "$DIR/primary"; fi
    pg pg_ctl -D "$DIR/primary" -l "$DIR/primary.log" -w -t 60 start >/dev/null
    psql_at "$PRIMARY_PORT" -c "create database $DATABASE" >/dev/null
    # A fast checkpoint: the default spreads it over minutes.
    pg pg_basebackup -h 127.0.0.1 -p "$PRIMARY_PORT" -U "$USER_NAME" -D "$DIR/standby" -R -X stream -c fast \
        -d "host=127.0.0.1 port=$PRIMARY_PORT user=$USER_NAME application_name=standby1"
    sed -i "s/^port = .*/port = $STANDBY_PORT/" "$DIR/standby/postgresql.conf"
    pg pg_ctl -D "$DIR/standby" -l "$DIR/standby.log" -w -t 60 start >/dev/null
    # Only now: with a synchronous standby named but not yet connected, every commit waits.
    psql_at "$PRIMARY_PORT" -c "alter system set synchronous_standby_names = 'standby1'" >/dev/null
    psql_at "$PRIMARY_PORT" -c "select pg_reload_conf()" >/dev/null
    wait_for "the standby to be synchronous" 150 sync_standby
    echo "pg-cluster: primary 127.0.0.1:$PRIMARY_PORT, synchronous standby 127.0.0.1:$STANDBY_PORT ($DIR)" >&2
    url
}

url() {
    local tls=""
    if tls_on; then tls="&sslmode=verify-full&sslrootcert=$DIR/tls/ca.pem"; fi
    echo "postgres://$USER_NAME@127.0.0.1:$PRIMARY_PORT,127.0.0.1:$STANDBY_PORT/$DATABASE?target_session_attrs=read-write$tls"
}

role_of() {
    local port=$1
    case "$(psql_at "$port" -c 'select pg_is_in_recovery()' 2>/dev/null)" in
        f) echo primary ;;
        t) echo standby ;;
        *) echo down ;;
    esac
}

status() {
    echo "127.0.0.1:$PRIMARY_PORT $(role_of "$PRIMARY_PORT")"
    echo "127.0.0.1:$STANDBY_PORT $(role_of "$STANDBY_PORT")"
    if [ "$(role_of "$PRIMARY_PORT")" = primary ]; then
        echo "standby1 $(psql_at "$PRIMARY_PORT" -c "select coalesce(max(sync_state), 'absent') from pg_stat_replication where application_name = 'standby1'")"
    fi
}

kill_primary() {
    local pid
    pid=$(head -1 "$DIR/primary/postmaster.pid" 2>/dev/null) || die "no primary postmaster.pid in $DIR"
    kill -9 "$pid"
    echo "pg-cluster: killed the primary's postmaster (pid $pid)" >&2
}

# Sends signal $2 to node $1's postmaster and every process it started.
signal_node() {
    local node=$1 sig=$2 pid
    case "$node" in primary | standby) ;; *) die "no node $node (primary or standby)" ;; esac
    pid=$(head -1 "$DIR/$node/postmaster.pid" 2>/dev/null) || die "no $node postmaster.pid in $DIR"
    # shellcheck disable=SC2046
    kill "-$sig" "$pid" $(pgrep -P "$pid") || die "cannot send SIG$sig to the $node"
    echo "pg-cluster: SIG$sig sent to the $node (postmaster pid $pid and its children)" >&2
}

promote() {
    pg pg_ctl -D "$DIR/standby" -w -t 60 promote >/dev/null
    wait_for "the standby to leave recovery" 150 test "$(role_of "$STANDBY_PORT")" = primary
    echo "pg-cluster: 127.0.0.1:$STANDBY_PORT is the primary" >&2
}

restart_old_primary() {
    # The killed postmaster's backends exit on their own once they notice; until then the
    # old shared memory is in use and the server refuses to start.
    local i
    for ((i = 0; i < 50; i++)); do
        if pg pg_ctl -D "$DIR/primary" -l "$DIR/primary.log" -w -t 60 start >/dev/null 2>&1; then
            echo "pg-cluster: the old primary runs again on 127.0.0.1:$PRIMARY_PORT" >&2
            return 0
        fi
        sleep 0.2
    done
    die "the old primary did not start again (see $DIR/primary.log)"
}

stop() {
    local node pid
    for node in primary standby; do
        # A frozen node would never stop.
        pid=$(head -1 "$DIR/$node/postmaster.pid" 2>/dev/null) || continue
        # shellcheck disable=SC2046
        kill -CONT "$pid" $(pgrep -P "$pid") 2>/dev/null || true
    done
    for node in primary standby; do
        if [ -e "$DIR/$node/postmaster.pid" ]; then
            pg pg_ctl -D "$DIR/$node" -m immediate -w -t 60 stop >/dev/null 2>&1 || true
        fi
    done
    # A postmaster killed with SIGKILL leaves its children to exit on their own.
    pkill -9 -f -- "-D $DIR/" 2>/dev/null || true
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    url) url ;;
    status) status ;;
    kill-primary) kill_primary ;;
    promote) promote ;;
    restart-old-primary) restart_old_primary ;;
    freeze) signal_node "${2:-}" STOP ;;
    thaw) signal_node "${2:-}" CONT ;;
    stop) stop ;;
    *) die "usage: $0 start|url|status|kill-primary|promote|restart-old-primary|freeze NODE|thaw NODE|stop" ;;
esac
