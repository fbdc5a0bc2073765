#!/usr/bin/env bash
# `make security`: every scanner of .github/workflows/security.yml that can run here, with zero unexplained
# findings (each suppression carries its reason where it is made). Offline except pip-audit, which asks
# PyPI's vulnerability data about requirements/runtime.lock (what the image ships).
#
#   gitleaks    secrets in the git history and in the working tree (what git would commit)
#   actionlint  workflow syntax and expressions (and their run: scripts, through shellcheck)
#   zizmor      (offline) workflow security;  shellcheck: hack/*.sh, .ci/run
#   checkov     terraform/, the rendered kustomize manifests (base, overlays, argocd) and charts, Dockerfile, workflows
#   bandit      operator/;  semgrep: .semgrep/ rules (tested by .semgrep/dbops.py) on operator/
#   hclfmt      formatting of terraform/ (see hack/tools.sh for why not `terraform fmt`)
#   pip-audit   known vulnerabilities in requirements/runtime.lock
#
# Scanners come from requirements/security.lock (hashes) in .venv-security and from hack/tools.sh (Go,
# pinned, cached). A scanner that cannot be set up is a failure, never a skip. DBOPS_SARIF_DIR=DIR also
# writes a SARIF report per scanner there (the workflow uploads them).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
VENV=.venv-security
SARIF_DIR="${DBOPS_SARIF_DIR:-}"
failed=()
not_run=()

log() { echo "==> [security $((SECONDS - start))s] $*"; }
die() { echo "[security] $*" >&2; exit 1; }
run() { # name command...: run one scanner, remember a failure and go on with the others
  local name=$1
  shift
  log "$name"
  if ! "$@"; then
    failed+=("$name")
    echo "[security] $name: FAILED (findings above)" >&2
  fi
}

# --- set-up ---------------------------------------------------------------------------------------
stamp="$VENV/.synced"
if [[ ! -f "$stamp" || requirements/security.lock -nt "$stamp" ]]; then
  log "scanner environment ($VENV, from requirements/security.lock with hashes)"
  [[ -x .venv/bin/uv ]] || die "uv is missing: run \`make venv\` first (it installs .venv/bin/uv from a hashed lock)"
  [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
  .venv/bin/uv pip sync -q --python "$VENV/bin/python" --require-hashes requirements/security.lock
  touch "$stamp"
fi
command -v go >/dev/null || die "Go is required to build gitleaks, actionlint and hclfmt (hack/tools.sh)"
TOOLS="$(hack/tools.sh)"
K8S_BIN="$(hack/build-k8s.sh)"
[[ -x "$K8S_BIN/kubectl" ]] || die "kubectl missing in $K8S_BIN: run \`make k8s\`"
export PATH="$PWD/$VENV/bin:$TOOLS:$PATH" SEMGREP_SEND_METRICS=off
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sarif() { [[ -n "$SARIF_DIR" ]] && mkdir -p "$SARIF_DIR" && echo "$SARIF_DIR/$1.sarif"; }

# --- scanners -------------------------------------------------------------------------------------
gitleaks_scan() {
  local report=() out
  if out="$(sarif gitleaks)"; then report=(--report-format sarif --report-path "$out"); fi
  gitleaks git --no-banner --redact --log-level warn "${report[@]}" . || return 1
  # The working tree as git sees it (tracked and untracked, not ignored): secrets not committed yet.
  mkdir -p "$work/tree"
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [[ -f "$f" ]] && { mkdir -p "$work/tree/$(dirname "$f")"; cp "$f" "$work/tree/$f"; }
  done
  gitleaks dir --no-banner --redact --log-level warn "$work/tree"
}

zizmor_scan() {
  zizmor --offline --no-progress .github || return 1
  if out="$(sarif zizmor)"; then zizmor --offline --no-progress --format sarif .github >"$out" || true; fi
}

render_manifests() { # kustomize output of every installable tree, for checkov's kubernetes checks
  mkdir -p "$work/rendered"
  local dir name
  for dir in manifests/base manifests/overlays/* argocd; do
    name="${dir//\//_}"
    "$K8S_BIN/kubectl" kustomize "$dir" >"$work/rendered/$name.yaml" || return 1
  done
  # The Helm chart too, cluster- and namespace-scoped, with everything optional turned on.
  local helm scope
  helm="$(hack/helm.sh)" || return 1
  for scope in cluster namespace; do
    "$helm" template dbops charts/dbops -n dbops-system --set "watch.scope=$scope" \
      --set webhook.certManager.enabled=true --set monitoring.prometheusRule.enabled=true \
      --set monitoring.dashboard.enabled=true 2>/dev/null >"$work/rendered/chart_$scope.yaml" || return 1
  done
  "$helm" template dbops-crds charts/dbops-crds 2>/dev/null >"$work/rendered/chart_crds.yaml" || return 1
}

checkov_scan() {
  render_manifests || return 1
  local outputs=(-o cli) files=() f
  if out="$(sarif checkov)"; then outputs+=(-o sarif --output-file-path "console,$out"); fi
  # Files, not directories: checkov ignores -f when it is also given -d.
  while IFS= read -r -d '' f; do files+=(-f "$f"); done < <(
    find terraform -name '*.tf' -print0
    find .github/workflows -name '*.yml' -print0
    printf '%s\0' Dockerfile "$work"/rendered/*.yaml
  )
  # --skip-download: no Prisma Cloud/Bridgecrew API (offline); the checks themselves ship with checkov.
  checkov --quiet --compact --skip-download --framework terraform kubernetes dockerfile github_actions \
    "${files[@]}" "${outputs[@]}" || return 1
}

bandit_scan() { # honours the reasons of ruff's `noqa: S1xx` on the same lines (see hack/bandit_noqa.py)
  local extra=()
  if out="$(sarif bandit)"; then extra=(--sarif "$out"); fi
  python hack/bandit_noqa.py "${extra[@]}" operator
}

semgrep_scan() {
  semgrep --test --quiet --metrics=off --disable-version-check --config .semgrep/dbops.yml .semgrep/dbops.py || return 1
  local extra=()
  if out="$(sarif semgrep)"; then extra=(--sarif-output="$out"); fi
  semgrep scan --quiet --error --metrics=off --disable-version-check --config .semgrep/dbops.yml "${extra[@]}" operator
}

hclfmt_check() {
  local f bad=0
  while IFS= read -r -d '' f; do
    hclfmt -require-no-change "$f" >/dev/null || { echo "not formatted: $f (hclfmt -w $f)"; bad=1; }
  done < <(find terraform -name '*.tf' -print0)
  return $bad
}

pip_audit_scan() {
  # pip-audit's PyPI service reads https://pypi.org/pypi/NAME/VERSION/json for each pinned package. Where
  # only PyPI's package index is reachable (a mirror or proxy that serves /simple but not that JSON API),
  # nothing can be audited: that is reported as NOT RUN in the summary, and is a failure when
  # DBOPS_REQUIRE_PIP_AUDIT=1 (the security workflow sets it). --strict: a package pip-audit could not
  # look up fails the run instead of passing unaudited.
  if ! python - <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen("https://pypi.org/pypi/pip/24.0/json", timeout=15).read(1)
except Exception as exc:
    print(f"PyPI's JSON API is not reachable from here: {exc}", file=sys.stderr)
    sys.exit(1)
PY
  then
    if [[ "${DBOPS_REQUIRE_PIP_AUDIT:-0}" == 1 ]]; then return 1; fi
    not_run+=("pip-audit (PyPI's per-release JSON API, which it needs, is not reachable here; runs in .github/workflows/security.yml)")
    return 0
  fi
  # --disable-pip: the lock is complete and hashed, so nothing is resolved or installed to audit it.
  pip-audit --strict --progress-spinner off --vulnerability-service pypi --require-hashes --disable-pip \
    -r requirements/runtime.lock
}

run gitleaks gitleaks_scan
command -v shellcheck >/dev/null || die "shellcheck is missing: hack/system-deps.sh installs it (apt)"
run actionlint actionlint
run shellcheck shellcheck hack/*.sh .ci/run
run zizmor zizmor_scan
run checkov checkov_scan
run bandit bandit_scan
run semgrep semgrep_scan
run hclfmt hclfmt_check
run pip-audit pip_audit_scan

for what in "${not_run[@]}"; do echo "[security] NOT RUN: $what" >&2; done
if ((${#failed[@]})); then
  die "failed: ${failed[*]} ($((SECONDS - start))s)"
fi
log "all scanners clean in $((SECONDS - start))s"
