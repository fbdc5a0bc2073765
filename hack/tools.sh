#!/usr/bin/env bash
# Build the Go-based scanners of `make security` from the Go module proxy, pinned by version, and cache
# them outside the repository (like hack/build-k8s.sh), so that a second run builds nothing.
#
# Usage: hack/tools.sh            build what is missing, print the bin directory
#
# terraform itself cannot be built this way: its go.mod replaces internal backend modules with local
# directories that are not part of the published module, so `go install` refuses it. hclfmt (from
# hashicorp/hcl, the formatter `terraform fmt` is built on) checks the formatting of terraform/ instead;
# the workflow runs the real `terraform fmt -check` and `terraform validate`.
set -euo pipefail

GITLEAKS_VERSION=v8.30.1
ACTIONLINT_VERSION=v1.7.12
HCL_VERSION=v2.25.0

CACHE_ROOT="${DBOPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dbops}"
BIN_DIR="$CACHE_ROOT/tools/bin"
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0 GOTOOLCHAIN=local
mkdir -p "$BIN_DIR"

log() { echo "[tools] $*" >&2; }

build() { # name version module/cmd
  local name=$1 version=$2 pkg=$3 target="$BIN_DIR/$1-$2"
  if [[ ! -x "$target" ]]; then
    log "building $name $version from the Go module proxy"
    local tmp
    tmp="$(mktemp -d)"
    GOBIN="$tmp" go install "$pkg@$version"
    mv "$tmp/$name" "$target"
    rm -rf "$tmp"
  fi
  ln -sf "$target" "$BIN_DIR/$name"
}

build gitleaks "$GITLEAKS_VERSION" github.com/zricethezav/gitleaks/v8
build actionlint "$ACTIONLINT_VERSION" github.com/rhysd/actionlint/cmd/actionlint
build hclfmt "$HCL_VERSION" github.com/hashicorp/hcl/v2/cmd/hclfmt
echo "$BIN_DIR"
