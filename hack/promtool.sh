#!/usr/bin/env bash
# Build promtool (Prometheus' rule tester) from the Go module proxy and cache it outside the
# repository, so that tests/unit/test_monitoring.py can run `promtool test rules`. Prometheus 3.x is
# published as Go module versions v0.3XX.Y (v0.316.0 is Prometheus 3.16.0).
#
# Usage: hack/promtool.sh    build (if not cached) and print the path of the binary
set -euo pipefail
# shellcheck source=hack/go-tool.sh
source "$(dirname "$0")/go-tool.sh"

PROM_MODULE_VERSION="${PROM_MODULE_VERSION:-v0.316.0}"
CACHE_ROOT="${DBOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbops}"
BIN_DIR="$CACHE_ROOT/tools/promtool-$PROM_MODULE_VERSION"

go_tool promtool "$BIN_DIR" "github.com/prometheus/prometheus/cmd/promtool@$PROM_MODULE_VERSION" \
  -p "${PROMTOOL_BUILD_JOBS:-$(nproc)}"
echo "$BIN_DIR/promtool"
