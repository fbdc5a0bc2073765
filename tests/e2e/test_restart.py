"""Idempotency across operator restarts: exactly one database, and the object still gets there."""

from __future__ import annotations

from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator


def test_operator_killed_mid_restore_resumes_without_a_second_create(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "orders")
    fake_aws.configure(create_seconds=8)
    own_operator.start()
    cluster.apply(dbrestore("r", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "orders-copy"))
    wait_phase(cluster, "r", own_namespace, "Restoring")
    own_operator.kill()  # SIGKILL: no cleanup, as in a node failure
    own_operator.start()
    obj = wait_phase(cluster, "r", own_namespace, "Available", "Failed")
    assert obj["status"]["phase"] == "Available", obj["status"]
    assert fake_aws.calls()["RestoreDBInstanceFromDBSnapshot"] == 1
    assert (
        len(rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["orders-copy"]}])["DBInstances"])
        == 1
    )


def test_crash_between_the_restore_call_and_the_status_write_adopts_its_own_db(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    """The restore call went through but the operator died before recording it: the DB carries the
    object's UID tag, so the next operator adopts it instead of failing or creating another."""
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "ledger")
    cluster.apply(dbrestore("r", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "ledger-copy"))
    uid = cluster.get("dbrestore", "r", own_namespace)["metadata"]["uid"]
    rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="ledger-copy",
        DBSnapshotIdentifier=src.snapshot_identifier,
        Tags=[{"Key": "dbops.dev/owner-uid", "Value": uid}, {"Key": "dbops.dev/managed-by", "Value": "dbops"}],
    )
    fake_aws.reset_calls()
    own_operator.start()
    obj = wait_phase(cluster, "r", own_namespace, "Available", "Failed")
    assert obj["status"]["phase"] == "Available", obj["status"]
    assert "RestoreDBInstanceFromDBSnapshot" not in fake_aws.calls()
    messages = [e["message"] for e in cluster.events(own_namespace, "r") if e["reason"] == "Restoring"]
    assert messages and "adopted its own instance ledger-copy" in messages[0]
