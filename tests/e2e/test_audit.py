"""The audit trail in PostgreSQL: every step recorded, nothing lost while the database is down."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy

from tests.e2e.obs_helpers import audit_rows, eventually, scrape, value
from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import ROOT, Cluster
from tests.support.operator import Operator

PASSWORD = "s3cr3t-Never-In-Audit"


def _postgres(command: str) -> None:
    subprocess.run(["bash", str(ROOT / "hack" / "postgres.sh"), command], check=True, capture_output=True, timeout=120)


@pytest.fixture
def postgres_comes_back() -> Iterator[None]:
    """Whatever happens in the test, the shared PostgreSQL server is up again when it ends."""
    try:
        yield
    finally:
        _postgres("start")


def _count(url: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text("select count(*) from audit_records")).scalar_one())
    finally:
        engine.dispose()


def test_records_survive_postgres_going_down_mid_restore(
    cluster: Cluster,
    own_operator: Operator,
    own_namespace: str,
    fake_aws: FakeAWS,
    pg_url: str,
    postgres_comes_back: None,
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "audit-src")
    fake_aws.configure(create_seconds=6)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db-password", "namespace": own_namespace},
        "data": {"password": base64.b64encode(PASSWORD.encode()).decode()},
    }
    cluster.apply(secret)
    own_operator.env.update(DBOPS_AUDIT_URL=pg_url, DBOPS_AUDIT_RETRY_INTERVAL="1")
    own_operator.start()
    # The schema is created on start (Alembic), before any record needs it.
    eventually(lambda: _tables(pg_url) >= {"audit_records", "dbops_alembic_version"}, what="the schema")

    manifest = dbrestore(
        "a1",
        own_namespace,
        {"dbSnapshot": src.snapshot_identifier},
        "audit-copy",
        masterPassword={"secretRef": {"name": "db-password"}},
    )
    cluster.apply(manifest)
    wait_phase(cluster, "a1", own_namespace, "Restoring")
    eventually(lambda: _count(pg_url) >= 2, what="requested and restore-started written")

    _postgres("stop")
    try:
        # The restore goes on without its audit database; its records wait in the spool.
        obj = wait_phase(cluster, "a1", own_namespace, "Available", "Failed", timeout=90)
        assert obj["status"]["phase"] == "Available"
        eventually(
            lambda: any(
                c["type"] == "MasterPasswordSet"
                for c in cluster.get("dbrestore", "a1", own_namespace)["status"]["conditions"]
            ),
            what="the password set",
        )
        spooled = eventually(
            lambda: value(scrape(own_operator.metrics_port), "dbops_audit_spool_records"), what="spooled records"
        )
        assert spooled >= 2  # at least available and MasterPasswordSet
        assert value(scrape(own_operator.metrics_port), "dbops_audit_write_errors_total") >= 1
    finally:
        _postgres("start")

    eventually(lambda: value(scrape(own_operator.metrics_port), "dbops_audit_spool_records") == 0, what="spool drained")
    rows = audit_rows(pg_url, "-n", own_namespace)
    actions = [r["action"] for r in rows]
    for expected in ("requested", "aws-call", "restore-started", "available", "MasterPasswordSet"):
        assert actions.count(expected) == 1, actions  # none lost, none twice
    assert actions.index("requested") < actions.index("restore-started") < actions.index("available")
    assert _count(pg_url) == len(rows)
    uid = obj["metadata"]["uid"]
    for row in rows:
        assert row["namespace"] == own_namespace and row["name"] == "a1" and row["uid"] == uid
        assert row["kind"] == "DBRestore" and row["target"] == "audit-copy"
        assert row["time"].endswith("Z")
        assert PASSWORD not in str(row)  # no secret in any record
    available = next(r for r in rows if r["action"] == "available")
    assert available["outcome"] == "succeeded" and available["source"] == f"snapshot:{src.snapshot_identifier}"
    assert available["details"]["duration_seconds"] > 0
    assert next(r for r in rows if r["action"] == "aws-call")["details"] == {
        "operation": "restore_db_instance_from_db_snapshot"
    }

    # The read path filters (by target, user, time) and prints a table.
    assert audit_rows(pg_url, "--target", "audit-copy", "--action", "available")[0]["uid"] == uid
    assert audit_rows(pg_url, "--target", "no-such-target") == []
    assert audit_rows(pg_url, "--user", "nobody-at-all") == []
    assert len(audit_rows(pg_url, "-n", own_namespace, "--since", "1h")) == len(rows)
    assert audit_rows(pg_url, "-n", own_namespace, "--until", "2000-01-01T00:00:00Z") == []
    table = subprocess.run(
        [sys.executable, "-m", "dbops", "audit", "--url", pg_url, "-n", own_namespace],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert table.splitlines()[0].split()[:5] == ["TIME", "NAMESPACE", "NAME", "KIND", "ACTION"]
    assert "restore-started" in table and "audit-copy" in table
    assert PASSWORD not in own_operator.tail(10**6)


def _tables(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        return set(sqlalchemy.inspect(engine).get_table_names())
    except sqlalchemy.exc.OperationalError:
        return set()
    finally:
        engine.dispose()
