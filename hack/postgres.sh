#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the tests (the audit database's production engine).
# Installs Debian's postgresql package when missing, runs the server as the unprivileged `postgres`
# user (PostgreSQL refuses root), keeps its data outside the repository, and prints the admin URL.
#
# Usage: hack/postgres.sh start   -> prints: export DBOPS_TEST_POSTGRES=postgresql://...
#        hack/postgres.sh stop
set -euo pipefail

PORT="${DBOPS_PG_PORT:-55432}"
DATA="${DBOPS_PG_DATA:-${TMPDIR:-/tmp}/dbops-postgres-$PORT}"
log() { echo "[postgres] $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

bindir() { find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1; }

install() {
  if [ -z "$(bindir)" ] || [ ! -x "$(bindir)/initdb" ]; then
    log "installing Debian's postgresql package"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  fi
}

run_as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  install
  local bin; bin="$(bindir)"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_root mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
    run_as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    log "initialised $DATA"
  fi
  if ! run_as_pg "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    run_as_pg "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off -c max_connections=200" start >/dev/null
    log "started on 127.0.0.1:$PORT"
  fi
  echo "export DBOPS_TEST_POSTGRES=postgresql+psycopg2://postgres@127.0.0.1:$PORT/postgres"
}

stop() {
  local bin; bin="$(bindir)"
  if [ -n "$bin" ] && [ -f "$DATA/PG_VERSION" ]; then
    run_as_pg "$bin/pg_ctl" -D "$DATA" -m fast stop >/dev/null || true # already stopped is fine
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
