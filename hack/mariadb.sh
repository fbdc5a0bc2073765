#!/usr/bin/env bash
# A throwaway MariaDB server on loopback for the tests of restore verification on MySQL engines (the
# drill probes run through PyMySQL against it). Installs Debian's mariadb-server package when missing,
# keeps its data outside the repository, serves TLS with a certificate of its own test CA (so that the
# probes' verify-full mode is proven against a real server), and prints the admin URL and the CA file.
#
# Usage: hack/mariadb.sh start   -> prints: export DBOPS_TEST_MARIADB=mysql://... DBOPS_TEST_MARIADB_CA=...
#        hack/mariadb.sh stop
set -euo pipefail

PORT="${DBOPS_MARIADB_PORT:-53306}"
DATA="${DBOPS_MARIADB_DATA:-${TMPDIR:-/tmp}/dbops-mariadb-$PORT}"
TLS="$DATA-tls"
SOCKET="$DATA/mysqld.sock"
ADMIN_USER=dbops
ADMIN_PASSWORD=dbops-test # a loopback test server's, nothing else's
log() { echo "[mariadb] $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install() {
  if [ ! -x /usr/sbin/mariadbd ] || ! command -v mariadb-install-db >/dev/null; then
    log "installing Debian's mariadb-server package"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null
  fi
}

# A CA and a server certificate for 127.0.0.1 and localhost, made once (openssl comes with Debian).
certificates() {
  [ -f "$TLS/server-cert.pem" ] && return
  as_root mkdir -p "$TLS"
  as_root openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=dbops test CA" \
    -keyout "$TLS/ca-key.pem" -out "$TLS/ca.pem" 2>/dev/null
  as_root openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$TLS/server-key.pem" -out "$TLS/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' | as_root tee "$TLS/san.ext" >/dev/null
  as_root openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.pem" -CAkey "$TLS/ca-key.pem" -CAcreateserial \
    -days 3650 -extfile "$TLS/san.ext" -out "$TLS/server-cert.pem" 2>/dev/null
  as_root chown -R mysql:mysql "$TLS"
  as_root chmod 644 "$TLS/ca.pem"
  log "made a test CA and server certificate in $TLS"
}

running() { as_root mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1; }

start() {
  install
  certificates
  if [ ! -d "$DATA/mysql" ]; then
    as_root mkdir -p "$DATA"
    as_root chown mysql:mysql "$DATA"
    as_root mariadb-install-db --user=mysql --datadir="$DATA" --auth-root-authentication-method=socket \
      --skip-test-db >/dev/null
    log "initialised $DATA"
  fi
  if ! running; then
    as_root setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$DATA" --port="$PORT" \
      --bind-address=127.0.0.1 --socket="$SOCKET" --pid-file="$DATA/mysqld.pid" --log-error="$DATA/server.log" \
      --skip-name-resolve --innodb-buffer-pool-size=32M --max-connections=200 \
      --ssl-ca="$TLS/ca.pem" --ssl-cert="$TLS/server-cert.pem" --ssl-key="$TLS/server-key.pem" \
      </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 120); do running && break; sleep 0.5; done
    running || { log "did not start; see $DATA/server.log"; exit 1; }
    log "started on 127.0.0.1:$PORT"
  fi
  as_root mariadb --socket="$SOCKET" -uroot -e "CREATE USER IF NOT EXISTS '$ADMIN_USER'@'127.0.0.1' \
    IDENTIFIED BY '$ADMIN_PASSWORD'; GRANT ALL ON *.* TO '$ADMIN_USER'@'127.0.0.1' WITH GRANT OPTION;"
  echo "export DBOPS_TEST_MARIADB=mysql://$ADMIN_USER:$ADMIN_PASSWORD@127.0.0.1:$PORT/ DBOPS_TEST_MARIADB_CA=$TLS/ca.pem"
}

stop() {
  if running; then
    as_root mariadb-admin --socket="$SOCKET" -uroot shutdown || true # already stopping is fine
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
