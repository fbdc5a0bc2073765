# shellcheck shell=bash
# Sourced by hack/helm.sh and hack/promtool.sh: build one command from the Go module proxy into a cache
# directory named by its version (outside the repository), once; a second run builds nothing.
#
#   go_tool NAME BIN_DIR PACKAGE@VERSION [go install flags...]    leaves BIN_DIR/NAME
export GOFLAGS="-buildvcs=false -trimpath" CGO_ENABLED=0 GOTOOLCHAIN=local

go_tool() {
  local name=$1 bin_dir=$2 pkg=$3
  shift 3
  [[ -x "$bin_dir/$name" ]] && return 0
  echo "[$name] building $pkg from the Go module proxy (minutes when cold)" >&2
  local start=$SECONDS tmp beat
  tmp="$(mktemp -d)"
  # A heartbeat, so that minutes of compiling are not silence.
  (while sleep 30; do echo "[$name]   still building ($((SECONDS - start))s)" >&2; done) &
  beat=$!
  if ! GOBIN="$tmp" nice go install "$@" "$pkg"; then
    kill "$beat" 2>/dev/null || true
    rm -rf "$tmp"
    return 1
  fi
  kill "$beat" 2>/dev/null || true
  mkdir -p "$bin_dir"
  mv "$tmp/$name" "$bin_dir/$name"
  rm -rf "$tmp"
  echo "[$name] built in $((SECONDS - start))s" >&2
}
