#!/usr/bin/env bash
# Build helm from its Go module (helm.sh/helm/v3) and cache it by version outside the repository, like
# hack/build-k8s.sh caches kube-apiserver, so that tests/e2e/test_helm.py can lint and render charts/.
#
# Usage: hack/helm.sh    build (if not cached) and print the path of the binary
set -euo pipefail
# shellcheck source=hack/go-tool.sh
source "$(dirname "$0")/go-tool.sh"

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${DBOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbops}"
BIN_DIR="$CACHE_ROOT/tools/helm-$HELM_VERSION"

# -X: helm reports this version (a plain `go install` build would not know its own).
go_tool helm "$BIN_DIR" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
echo "$BIN_DIR/helm"
