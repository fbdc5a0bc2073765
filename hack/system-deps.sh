#!/usr/bin/env bash
# System packages the project needs beyond what the machine ships (Go, Python 3.11): make, PostgreSQL
# (the audit database of the tests), MariaDB (restore verification on MySQL engines, hack/mariadb.sh),
# python3-venv, shellcheck (make security).
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v make >/dev/null || need+=(make)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v shellcheck >/dev/null || need+=(shellcheck) # make security; actionlint checks workflow scripts with it
if [ ${#need[@]} -gt 0 ]; then
  echo "[system-deps] apt-get install ${need[*]}" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "[system-deps] Go is required to build kube-apiserver (go.dev/dl)" >&2; exit 1; }
python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version' ||
  { echo "[system-deps] Python 3.11+ is required" >&2; exit 1; }
echo "[system-deps] ok: $(go version | cut -d' ' -f3), $(python3 --version)" >&2
