#!/usr/bin/env bash
# `make test`: every test but the benchmarks. The few marked `side` spend minutes waiting (an API server
# down for 5 minutes, minute boundaries of a cron schedule, a whole playground): they run in a second
# pytest process beside the rest, with an API server, fake AWS and operators of their own (SQLite audit,
# so the PostgreSQL restart of tests/e2e/test_audit.py cannot reach them). Both must pass.
# With arguments (PYTEST_ARGS), one plain pytest run of what they select.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=.venv/bin/python
if [ $# -gt 0 ]; then
  exec "$PY" -m pytest "$@"
fi

log=$(mktemp -t dbops-side-tests.XXXXXX)
"$PY" -m pytest -p no:cacheprovider -m "side and not bench" >"$log" 2>&1 &
side=$!
trap 'kill "$side" 2>/dev/null' INT TERM

"$PY" -m pytest -m "not side and not bench"
main=$?
echo "==> the tests marked side (run beside the rest; waiting for them if still running)"
wait "$side"
beside=$?
cat "$log"
rm -f "$log"
if [ "$main" -ne 0 ] || [ "$beside" -ne 0 ]; then
  echo "==> FAILED: pytest exit status $main for the rest, $beside for the side tests" >&2
  exit 1
fi
