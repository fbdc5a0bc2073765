# Everyday commands. `make test` sets up everything it needs first (Python env, cluster binaries,
# PostgreSQL, MariaDB) and is what CI runs (.ci/run).
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.synced
PG_ENV = eval "$$(hack/postgres.sh start)" && eval "$$(hack/mariadb.sh start)"
PYTEST_ARGS ?=

.PHONY: setup system venv k8s promtool helm postgres mariadb crds lock lint test security demo up down bench clean

setup: system venv k8s promtool helm

system:
	@hack/system-deps.sh

venv: $(VENV_STAMP)
$(VENV_STAMP): requirements/dev.lock requirements/bootstrap.lock pyproject.toml
	@echo "==> Python environment (.venv, from requirements/*.lock with hashes)"
	python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check --require-hashes -r requirements/bootstrap.lock
	.venv/bin/uv pip sync -q --python $(PY) --require-hashes requirements/dev.lock
	.venv/bin/uv pip install -q --python $(PY) --no-deps -e .
	@touch $@

k8s:
	@hack/build-k8s.sh >/dev/null

# promtool, for `promtool test rules` on manifests/monitoring (tests/unit/test_monitoring.py).
promtool:
	@hack/promtool.sh >/dev/null

# helm, for `helm lint` and `helm template` of charts/ (tests/e2e/test_helm.py).
helm:
	@hack/helm.sh >/dev/null

postgres:
	@hack/postgres.sh start

# MariaDB for the restore verification tests on MySQL engines (tests/e2e/test_verify.py).
mariadb:
	@hack/mariadb.sh start

# Regenerate crds/ from operator/dbops/models.py, and the copy kustomize reads (it reads no file outside
# its root): manifests/crds (a test fails when they drift; charts/dbops-crds/files links to crds/).
crds: venv
	$(PY) -m dbops crds crds
	cp crds/*.yaml manifests/crds/

# Regenerate the lock files after a change to pyproject.toml.
lock: venv
	.venv/bin/uv pip compile -q pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements/dev.lock
	.venv/bin/uv pip compile -q pyproject.toml --generate-hashes --python-version 3.11 -o requirements/runtime.lock

lint: venv
	@echo "==> ruff and mypy"
	.venv/bin/ruff check operator tests hack
	.venv/bin/ruff format --check operator tests hack
	.venv/bin/mypy
	@echo "==> import contracts (pyproject.toml [tool.importlinter])"
	.venv/bin/lint-imports

test: setup lint
	@echo "==> tests (real kube-apiserver + etcd, moto server, PostgreSQL)"
	@$(PG_ENV) && hack/test.sh $(PYTEST_ARGS)

# Every scanner of .github/workflows/security.yml that runs here (hack/security.sh): gitleaks, actionlint, shellcheck,
# zizmor, checkov, bandit, semgrep, hclfmt, pip-audit. Zero unexplained findings.
security: venv k8s
	@hack/security.sh

demo: system venv k8s
	@$(PY) hack/demo.py

# The playground: the API server, the AWS stand-in (seeded for every file in examples/) and the operator
# left running in the background; `make up` prints the KUBECONFIG line to export, `make down` stops it all.
up: system venv k8s
	@$(PY) hack/playground.py up

down:
	@$(PY) hack/playground.py down

bench: setup
	@$(PY) -m pytest tests/bench -m bench -s $(PYTEST_ARGS)

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
