#!/usr/bin/env bash
# A throwaway PostgreSQL server, for the store tests and for running dutyflow on PostgreSQL
# by hand: a cluster in DIR, a server on a free loopback port (and its socket in DIR), trust
# authentication for the superuser "dutyflow", and no durability (fsync off).
#
#   scripts/pg-test-server.sh start DIR   prints postgres://dutyflow@127.0.0.1:PORT/dutyflow
#   scripts/pg-test-server.sh stop DIR    stops the server and removes DIR
#
# initdb refuses to run as root, so as root the cluster belongs to the user postgres (nobody
# when there is none). The server binaries are taken from $DUTYFLOW_PG_BINDIR, else from the
# directory of initdb on PATH, else from the newest /usr/lib/postgresql/*/bin (Debian's
# package postgresql, which scripts/setup.sh installs).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
dir=$2
marker=.dutyflow-pg-test-server

find_bindir() {
  local d=""
  if [ -n "${DUTYFLOW_PG_BINDIR:-}" ]; then
    d=$DUTYFLOW_PG_BINDIR
  elif command -v initdb >/dev/null 2>&1; then
    d=$(dirname "$(readlink -f "$(command -v initdb)")")
  else
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  if [ -z "$d" ] || [ ! -x "$d/initdb" ] || [ ! -x "$d/pg_ctl" ]; then
    echo "pg-test-server: PostgreSQL server binaries (initdb, pg_ctl) not found; install the Debian package postgresql (scripts/setup.sh does) or set DUTYFLOW_PG_BINDIR" >&2
    exit 1
  fi
  echo "$d"
}

# Runs a command as the cluster's owner: ourselves, or an unprivileged user when we are root.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    setpriv --reuid="$owner_uid" --regid="$owner_gid" --clear-groups -- "$@"
  else
    "$@"
  fi
}

bin=$(find_bindir)
if [ "$(id -u)" = 0 ]; then
  owner=postgres
  id -u "$owner" >/dev/null 2>&1 || owner=nobody
  owner_uid=$(id -u "$owner")
  owner_gid=$(id -g "$owner")
fi

case $action in
  start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    touch "$dir/$marker"
    if [ "$(id -u)" = 0 ]; then chown "$owner_uid:$owner_gid" "$dir"; fi
    chmod 700 "$dir"
    # initdb and the server must be able to read their working directory.
    cd "$dir"
    fail() { echo "pg-test-server: $1" >&2; cat "$dir"/*.log >&2 2>/dev/null || true; rm -rf "$dir"; exit 1; }
    as_owner "$bin/initdb" -D "$dir/data" --auth=trust --username=dutyflow --encoding=UTF8 --locale=C --no-sync \
      >"$dir/initdb.log" 2>&1 || fail "initdb failed"
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
EOF
    # A port taken by someone else makes the server exit at once: try another.
    for _ in $(seq 1 20); do
      port=$((20000 + RANDOM % 40000))
      if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "-p $port" start >/dev/null 2>&1; then
        "$bin/createdb" -h 127.0.0.1 -p "$port" -U dutyflow dutyflow || fail "createdb failed"
        echo "postgres://dutyflow@127.0.0.1:$port/dutyflow"
        exit 0
      fi
    done
    fail "the server did not start"
    ;;
  stop)
    # Only ever removes a directory this script made.
    [ -f "$dir/$marker" ] || { echo "pg-test-server: $dir is not a test server's directory" >&2; exit 1; }
    cd "$dir"
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    cd /
    rm -rf "$dir"
    ;;
  *) usage ;;
esac
