"""DBRestore spec.verify end to end: the operator's probes run for real against the restored database.

The fake AWS gives an instance restored from a snapshot the address of a real local database holding the
snapshot's data (tests/e2e/drill_helpers.py): PostgreSQL through psycopg2, MariaDB through PyMySQL with TLS
verify-full against the test server's own CA, and the password from a Secret or from the RDS-managed secret
in Secrets Manager. What status says is bounded and holds no secret and no row beyond the value checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.drill_helpers import (
    GOOD_PROBES,
    MOTO_MANAGED_PASSWORD,
    PRIVATE,
    SnapshotData,
    mariadb_over_tls,
    postgres_data,
    probes,
    restored_from,
)
from tests.e2e.obs_helpers import secret
from tests.e2e.restore_helpers import dbrestore, event_reasons, ready, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

PASSWORD_SECRET = "drill-password"


@pytest.fixture
def pg_data() -> Iterator[SnapshotData]:
    yield from postgres_data()


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def verified_restore(namespace: str, snapshot: str, target: str, verify: dict[str, Any], **spec: Any) -> dict[str, Any]:
    spec = {"masterPassword": {"secretRef": {"name": PASSWORD_SECRET}}, "deletionPolicy": "Delete", "ttl": "1h", **spec}
    return dbrestore("drill", namespace, {"dbSnapshot": snapshot}, target, verify=verify, **spec)


def assert_nothing_private(obj: dict[str, Any], cluster: Cluster, namespace: str, *secrets: str) -> None:
    shown = json.dumps(obj["status"]) + json.dumps(cluster.events(namespace, obj["metadata"]["name"]))
    for text in (PRIVATE, *secrets):
        assert text not in shown, f"{text!r} is in the status or events"


def test_probes_pass_against_the_restored_postgres_database(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, pg_data: SnapshotData
) -> None:
    snapshot = restored_from(fake_aws, pg_data, "orders")
    cluster.apply(secret(PASSWORD_SECRET, namespace, password=pg_data.password))
    verify = {"database": pg_data.database, "tls": {"mode": "disable"}, "probes": GOOD_PROBES}
    cluster.apply(verified_restore(namespace, snapshot, "orders-verified", verify))
    obj = wait_phase(cluster, "drill", namespace, "Available", "Failed", timeout=90)
    st = obj["status"]
    assert st["phase"] == "Available", st
    assert ready(obj)["reason"] == "Verified" and "3 probes passed" in ready(obj)["message"]
    assert condition(obj, "Verified")["status"] == "True"
    assert condition(obj, "MasterPasswordSet")["status"] == "True"  # the password was set before connecting
    ver = st["verification"]
    assert ver["result"] == "Passed" and ver["engine"] == "postgres" and ver["database"] == pg_data.database
    assert {p["name"]: (p["result"], p["observed"]) for p in ver["probes"]} == {
        "orders-counted": ("Passed", "3"),
        "orders-listed": ("Passed", "at least 2 rows"),
        "newest-order": ("Passed", "3"),
    }
    assert ver["startedAt"] <= ver["completedAt"] and st["completionTime"] <= ver["completedAt"]
    assert st["snapshotTime"]  # the data's age: the snapshot's creation time in RDS
    assert "Verified" in event_reasons(cluster, namespace, "drill")
    assert_nothing_private(obj, cluster, namespace, pg_data.password)


def test_an_expectation_that_fails_fails_the_restore_with_the_mismatch_and_nothing_secret(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, pg_data: SnapshotData
) -> None:
    snapshot = restored_from(fake_aws, pg_data, "billing")
    cluster.apply(secret(PASSWORD_SECRET, namespace, password=pg_data.password))
    bad = probes(
        ("enough-orders", "SELECT id, email FROM orders", {"minRows": 1000}),
        ("org-customers", "SELECT count(*) FROM orders WHERE email LIKE '%@example.org'", {"equals": "1"}),
        ("no-such-table", "SELECT count(*) FROM invoices", {"compare": {"op": ">", "value": 0}}),
        ("still-fine", "SELECT count(*) FROM orders", {"compare": {"op": "==", "value": 3}}),
    )
    verify = {"database": pg_data.database, "tls": {"mode": "disable"}, "probes": bad}
    cluster.apply(verified_restore(namespace, snapshot, "billing-verified", verify))
    obj = wait_phase(cluster, "drill", namespace, "Failed", "Available", timeout=90)
    st = obj["status"]
    assert st["phase"] == "Failed" and ready(obj)["reason"] == "ProbeFailed", st
    message = ready(obj)["message"]
    assert "probe enough-orders: expected at least 1000 rows" in message
    assert "probe org-customers: expected first value equals '1', got 0" in message
    assert "probe no-such-table" in message and "invoices" in message  # the query's own error, bounded
    assert condition(obj, "Verified")["status"] == "False"
    results = {p["name"]: p for p in st["verification"]["probes"]}
    assert (results["enough-orders"]["result"], results["enough-orders"]["observed"]) == ("Failed", "3 rows")
    assert (results["org-customers"]["result"], results["org-customers"]["observed"]) == ("Failed", "0")
    assert results["no-such-table"]["result"] == "Error" and results["still-fine"]["result"] == "Passed"
    # Rows were fetched (the e-mail column with them) and counted: none of their values reaches status.
    assert_nothing_private(obj, cluster, namespace, pg_data.password)
    assert "ProbeFailed" in event_reasons(cluster, namespace, "drill")


def test_a_database_that_cannot_be_reached_fails_with_the_reason_and_is_still_removed(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, pg_data: SnapshotData
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "ledger", master_username=pg_data.user)
    fake_aws.restores_to(src.snapshot_identifier, "127.0.0.1", 9)  # nothing listens on the discard port
    cluster.apply(secret(PASSWORD_SECRET, namespace, password=pg_data.password))
    verify = {"connectWithin": "4s", "timeout": "2s", "tls": {"mode": "disable"}, "probes": GOOD_PROBES[:1]}
    cluster.apply(
        verified_restore(namespace, src.snapshot_identifier, "ledger-verified", verify, deletionPolicy="Snapshot")
    )
    obj = wait_phase(cluster, "drill", namespace, "Failed", "Available", timeout=90)
    assert ready(obj)["reason"] == "ConnectFailed", obj["status"]
    assert "127.0.0.1:9" in ready(obj)["message"] and "connectWithin 4s" in ready(obj)["message"]
    assert obj["status"]["verification"]["result"] == "Failed"
    assert pg_data.password not in json.dumps(obj["status"])

    # Its ttl is up (the stand-in's clock moved on): removed per deletionPolicy, a failed drill or not.
    fake_aws.age("ledger-verified", 3600)
    obj = wait_phase(cluster, "drill", namespace, "Expired", timeout=60)
    assert not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["ledger-verified"]}])[
        "DBInstances"
    ]
    snaps = rds.describe_db_snapshots(DBInstanceIdentifier="ledger-verified")["DBSnapshots"]
    assert [s["DBSnapshotIdentifier"] for s in snaps] == [f"ledger-verified-final-{obj['metadata']['uid'][:8]}"]
    assert obj["status"]["verification"]["result"] == "Failed"  # the evidence stays with the object


def test_mariadb_over_verify_full_tls_with_the_rds_managed_password(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    """The MySQL path: PyMySQL, TLS verify-full against the server's CA (from a Secret), and the password RDS
    manages in Secrets Manager, which the server checks."""
    for snapshot, verify in mariadb_over_tls(fake_aws, cluster, namespace):
        managed = {"manageMasterUserPassword": True}
        cluster.apply(verified_restore(namespace, snapshot, "shop-verified", verify, masterPassword=managed))
        obj = wait_phase(cluster, "drill", namespace, "Available", "Failed", timeout=90)
        st = obj["status"]
        assert st["phase"] == "Available", st
        assert st["verification"]["tls"] == "verify-full" and st["verification"]["engine"] == "mariadb"
        assert [p["result"] for p in st["verification"]["probes"]] == ["Passed"] * 3
        assert_nothing_private(obj, cluster, namespace, MOTO_MANAGED_PASSWORD)
        assert fake_aws.calls().get("GetSecretValue", 0) >= 1
