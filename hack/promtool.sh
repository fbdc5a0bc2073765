#!/usr/bin/env bash
# Build promtool (Prometheus' rule tester) from the Go module proxy and cache it outside the
# repository, so that tests/unit/test_monitoring.py can run `promtool test rules`. Prometheus 3.x is
# published as Go module versions v0.3XX.Y (v0.316.0 is Prometheus 3.16.0).
#
# Usage: hack/promtool.sh    build (if not cached) and print the path of the binary
set -euo pipefail

PROM_MODULE_VERSION="${PROM_MODULE_VERSION:-v0.316.0}"
CACHE_ROOT="${DBOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbops}"
BIN_DIR="$CACHE_ROOT/tools/promtool-$PROM_MODULE_VERSION"
export GOFLAGS="-buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local

if [ ! -x "$BIN_DIR/promtool" ]; then
  echo "[promtool] building promtool $PROM_MODULE_VERSION from the Go module proxy (5-15 min cold)" >&2
  mkdir -p "$BIN_DIR"
  start=$SECONDS
  # A heartbeat, so that minutes of compiling are not silence.
  (while sleep 30; do echo "[promtool]   still building ($((SECONDS - start))s)" >&2; done) &
  beat=$!
  trap 'kill "$beat" 2>/dev/null || true' EXIT
  GOBIN="$BIN_DIR" nice go install -p "${PROMTOOL_BUILD_JOBS:-$(nproc)}" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROM_MODULE_VERSION"
  echo "[promtool] built in $((SECONDS - start))s" >&2
fi
echo "$BIN_DIR/promtool"
