"""Fixtures: a real API server, the AWS stand-in, PostgreSQL, and the operator as users run it."""

from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy

from tests.support import kube
from tests.support.fakeaws_fixture import FakeAWS
from tests.support.operator import Operator

# The shared operator watches namespaces made by `namespace`; tests that run their own operator
# (restarts, RBAC) use `own_namespace`, which the shared one does not see.
pytest_plugins = ["tests.support.fakeaws_fixture"]
SHARED_PREFIX = "t"
OWN_PREFIX = "own"
POLL_INTERVAL = "1"
# Settled objects are looked at every few seconds (in production: minutes), so that a change made in
# the fake AWS behind the operator's back (a database deleted or aged) shows within a test's patience.
RESYNC_INTERVAL = "5"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kube.Cluster]:
    yield from kube.cluster_session(tmp_path_factory.mktemp("cluster"))


def operator_env(fake: FakeAWS, cluster: kube.Cluster, **extra: str) -> dict[str, str]:
    """What an operator of the tests runs with. DBOPS_POLICY=open: the namespaces of tests about other
    things have no DBPolicy (tests/e2e/test_tenancy.py runs its operators with the shipped enforce)."""
    return {
        **fake.env(),
        "KUBECONFIG": str(cluster.kubeconfig),
        "DBOPS_POLL_INTERVAL": POLL_INTERVAL,
        "DBOPS_RESYNC_INTERVAL": RESYNC_INTERVAL,
        "DBOPS_POLICY": "open",
        **extra,
    }


@pytest.fixture(scope="session")
def shared_operator(
    cluster: kube.Cluster, fake_aws_server: FakeAWS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    workdir = tmp_path_factory.mktemp("operator")
    env = operator_env(fake_aws_server, cluster, DBOPS_NAMESPACE=f"{SHARED_PREFIX}-*")
    with Operator(workdir, env).start() as op:
        yield op


@pytest.fixture
def operator(shared_operator: Operator, fake_aws: FakeAWS) -> Iterator[Operator]:
    """The shared operator, with AWS reset for this test."""
    yield shared_operator
    if shared_operator.proc and shared_operator.proc.poll() is not None:
        pytest.fail(f"the operator died:\n{shared_operator.tail()}")


@pytest.fixture
def namespace(cluster: kube.Cluster) -> Iterator[str]:
    """A fresh namespace the shared operator watches; its DBRestoreSchedules, DBRestores and DBAttaches are
    deleted after the test, so that the shared operator does not keep looking at (and calling AWS for) another
    test's."""
    name = cluster.create_namespace(SHARED_PREFIX)
    yield name
    kube.delete_all(cluster, name, "dbrestoreschedules.dbops.dev,dbrestores.dbops.dev,dbattaches.dbops.dev")


@pytest.fixture
def own_namespace(cluster: kube.Cluster) -> str:
    return cluster.create_namespace(OWN_PREFIX)


@pytest.fixture
def own_operator(
    cluster: kube.Cluster, fake_aws: FakeAWS, own_namespace: str, tmp_path: pathlib.Path
) -> Iterator[Operator]:
    """An operator of this test's own, watching only own_namespace (not yet started)."""
    env = operator_env(fake_aws, cluster, DBOPS_NAMESPACE=own_namespace)
    op = Operator(tmp_path, env)
    yield op
    op.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test (the server is started by .ci/run)."""
    admin_url = os.environ.get("DBOPS_TEST_POSTGRES")
    if not admin_url:
        pytest.fail(
            "DBOPS_TEST_POSTGRES is not set: start PostgreSQL with `make postgres` (hack/postgres.sh) "
            "and export the URL it prints"
        )
    name = f"test_{uuid.uuid4().hex[:12]}"
    # pre_ping: a test may restart the server (test_audit), leaving pooled connections dead.
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = engine.url.set(database=name)
    yield url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure, attach the operator's log of that test: a failing e2e test says why."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        op = item.funcargs.get("operator") or item.funcargs.get("own_operator")  # type: ignore[attr-defined]
        if isinstance(op, Operator):
            report.sections.append(("operator log", op.tail(8000)))
