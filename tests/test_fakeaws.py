"""Tests of the fake AWS server itself (tests/support/fakeaws.py), through boto3 over HTTP.

These tests count every call the server receives: they run on a server of their own (``fake_aws`` is
overridden below), never on the session's, which an operator of another test may still be calling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.fakeaws_fixture import FakeAWS, running, seed_cluster, seed_instance

# botocore's ``max_attempts`` counts retries, ``total_max_attempts`` counts attempts.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
ONE_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})
TIMEOUT = 60.0  # generous: the machine may be busy


@pytest.fixture(scope="module")
def private_fake_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeAWS]:
    with running(tmp_path_factory.mktemp("fakeaws-private") / "server.log") as fake:
        yield fake


@pytest.fixture
def fake_aws(private_fake_aws: FakeAWS) -> FakeAWS:
    """This module's own server, reset to empty before each test."""
    private_fake_aws.reset()
    return private_fake_aws


def watch(read_status: Callable[[], str], until: str = "available") -> tuple[list[str], float]:
    """Poll a status until it reads ``until``; the distinct statuses seen in order, and the time taken."""
    start = time.monotonic()
    seen: list[str] = []
    while time.monotonic() - start < TIMEOUT:
        status = read_status()
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == until:
            return seen, time.monotonic() - start
        time.sleep(0.05)
    pytest.fail(f"status never became {until!r}; seen {seen}")


def instance_status(rds: Any, identifier: str) -> str:
    status: str = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]["DBInstanceStatus"]
    return status


def cluster_status(rds: Any, identifier: str) -> str:
    status: str = rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]["Status"]
    return status


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    code: str = exc.value.response["Error"]["Code"]
    return code


def test_seeded_instance_and_snapshot_are_available(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds")
    fake_aws.configure(create_seconds=30)  # seeding ignores it
    seeded = seed_instance(rds, "orders", tags={"team": "payments"})

    db = rds.describe_db_instances(DBInstanceIdentifier="orders")["DBInstances"][0]
    assert db["DBInstanceStatus"] == "available"
    assert db["Engine"] == "postgres"
    assert db["DBSubnetGroup"]["DBSubnetGroupName"] == seeded.subnet_group
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == seeded.security_group_ids
    assert [g["DBParameterGroupName"] for g in db["DBParameterGroups"]] == [seeded.parameter_group]
    assert db["Endpoint"]["Port"] == 5432
    assert {"Key": "team", "Value": "payments"} in db["TagList"]
    snapshot = rds.describe_db_snapshots(DBSnapshotIdentifier=seeded.snapshot_identifier)["DBSnapshots"][0]
    assert snapshot["Status"] == "available"
    assert snapshot["SnapshotType"] == "manual"
    assert snapshot["DBInstanceIdentifier"] == "orders"
    assert fake_aws.config()["create_seconds"] == 30  # put back after seeding


def test_child_process_reaches_it_through_env(fake_aws: FakeAWS) -> None:
    seed_instance(fake_aws.client("rds"), "orders")
    fake_aws.reset_calls()
    script = (
        "import boto3, json; "
        "print(json.dumps([d['DBInstanceIdentifier'] for d in boto3.client('rds').describe_db_instances()"
        "['DBInstances']]))"
    )
    base = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**base, **fake_aws.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout) == ["orders"]
    assert fake_aws.calls() == {"DescribeDBInstances": 1}


def test_seeded_cluster_and_snapshot_are_available(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds")
    seeded = seed_cluster(rds, "ledger", port=5433)

    cluster = rds.describe_db_clusters(DBClusterIdentifier="ledger")["DBClusters"][0]
    assert cluster["Status"] == "available"
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["DBSubnetGroup"] == seeded.subnet_group
    assert cluster["DBClusterParameterGroup"] == seeded.parameter_group
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == seeded.security_group_ids
    assert cluster["Port"] == 5433
    assert {"Key": "team", "Value": "dbops"} in cluster["TagList"]
    assert [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"]] == ["ledger-writer"]
    assert cluster["DBClusterMembers"][0]["IsClusterWriter"] is True
    assert instance_status(rds, "ledger-writer") == "available"
    snapshot = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=seeded.snapshot_identifier)[
        "DBClusterSnapshots"
    ][0]
    assert snapshot["Status"] == "available"
    assert snapshot["DBClusterIdentifier"] == "ledger"


def test_instance_restore_takes_time(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds")
    seeded = seed_instance(rds, "orders")
    fake_aws.configure(create_seconds=2)

    start = time.monotonic()
    restored = rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="orders-copy",
        DBSnapshotIdentifier=seeded.snapshot_identifier,
        DBSubnetGroupName=seeded.subnet_group,
        VpcSecurityGroupIds=seeded.security_group_ids,
    )["DBInstance"]
    assert restored["DBInstanceStatus"] == "creating"
    assert instance_status(rds, "orders") == "available"  # the source is not affected

    seen, _ = watch(lambda: instance_status(rds, "orders-copy"))
    assert seen == ["creating", "backing-up", "available"]
    assert time.monotonic() - start >= 1.9
    assert instance_status(rds, "orders") == "available"


def test_cluster_restore_takes_time(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds")
    seeded = seed_cluster(rds, "ledger")
    fake_aws.configure(create_seconds=2)

    start = time.monotonic()
    cluster = rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier="ledger-copy",
        SnapshotIdentifier=seeded.snapshot_identifier,
        Engine="aurora-postgresql",
        DBSubnetGroupName=seeded.subnet_group,
        VpcSecurityGroupIds=seeded.security_group_ids,
    )["DBCluster"]
    assert cluster["Status"] == "creating"
    writer = rds.create_db_instance(
        DBInstanceIdentifier="ledger-copy-writer",
        DBClusterIdentifier="ledger-copy",
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
    )["DBInstance"]
    assert writer["DBInstanceStatus"] == "creating"

    seen, _ = watch(lambda: cluster_status(rds, "ledger-copy"))
    assert seen == ["creating", "backing-up", "available"]
    assert time.monotonic() - start >= 1.9
    # The writer was created a moment later, so it may still be finishing.
    seen, _ = watch(lambda: instance_status(rds, "ledger-copy-writer"))
    assert seen[-1] == "available"
    assert cluster_status(rds, "ledger") == "available"


def test_every_creation_path_is_timed(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds")
    instance = seed_instance(rds, "orders")
    cluster = seed_cluster(rds, "ledger")
    fake_aws.configure(create_seconds=300)

    rds.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier="orders",
        TargetDBInstanceIdentifier="orders-pitr",
        UseLatestRestorableTime=True,
    )
    rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="orders-snap", DBSnapshotIdentifier=instance.snapshot_identifier
    )
    rds.create_db_instance(
        DBInstanceIdentifier="fresh",
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="dbadmin",
        MasterUserPassword="not-a-secret-1",
    )
    rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="ledger-pitr", SourceDBClusterIdentifier="ledger", UseLatestRestorableTime=True
    )
    rds.restore_db_cluster_from_snapshot(
        DBClusterIdentifier="ledger-snap",
        SnapshotIdentifier=cluster.snapshot_identifier,
        Engine="aurora-postgresql",
    )
    rds.create_db_cluster(
        DBClusterIdentifier="fresh-cluster",
        Engine="aurora-postgresql",
        MasterUsername="dbadmin",
        MasterUserPassword="not-a-secret-1",
    )
    for identifier in ("orders-pitr", "orders-snap", "fresh"):
        assert instance_status(rds, identifier) == "creating", identifier
    for identifier in ("ledger-pitr", "ledger-snap", "fresh-cluster"):
        assert cluster_status(rds, identifier) == "creating", identifier
    assert instance_status(rds, "orders") == "available"
    assert cluster_status(rds, "ledger") == "available"


@pytest.mark.parametrize(
    ("action", "code", "status"),
    [("RestoreDBInstanceFromDBSnapshot", "Throttling", 400), ("DescribeDBInstances", "InternalFailure", 500)],
)
def test_retryable_fault_fails_once_then_retries_succeed(
    fake_aws: FakeAWS, action: str, code: str, status: int
) -> None:
    rds = fake_aws.client("rds")
    seeded = seed_instance(rds, "orders")
    fake_aws.reset_calls()

    def call(client: Any) -> dict[str, Any]:
        if action == "DescribeDBInstances":
            result: dict[str, Any] = client.describe_db_instances(DBInstanceIdentifier="orders")
        else:
            result = client.restore_db_instance_from_db_snapshot(
                DBInstanceIdentifier="orders-copy", DBSnapshotIdentifier=seeded.snapshot_identifier
            )
        return result

    fake_aws.inject_fault(action, code, status=status, message="Rate exceeded", times=1)
    with pytest.raises(ClientError) as exc:
        call(fake_aws.client("rds", config=NO_RETRIES))
    assert error_code(exc) == code
    assert exc.value.response["Error"]["Message"] == "Rate exceeded"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert exc.value.response["ResponseMetadata"]["RequestId"]
    assert fake_aws.calls() == {action: 1}
    if action != "DescribeDBInstances":  # the failed call did nothing
        with pytest.raises(ClientError) as missing:
            rds.describe_db_instances(DBInstanceIdentifier="orders-copy")
        assert error_code(missing) == "DBInstanceNotFound"
        fake_aws.reset_calls()

    fake_aws.inject_fault(action, code, status=status, message="Rate exceeded", times=1)
    response = call(rds)  # default retry policy: the retry succeeds
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert fake_aws.calls()[action] == 2 + (action == "DescribeDBInstances")


def test_max_attempts_counts_retries(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds", config=ONE_RETRY)
    fake_aws.inject_fault("DescribeDBClusters", "Throttling", times=1)
    assert rds.describe_db_clusters()["ResponseMetadata"]["RetryAttempts"] == 1
    fake_aws.inject_fault("DescribeDBClusters", "Throttling", times=2)
    with pytest.raises(ClientError) as exc:
        rds.describe_db_clusters()
    assert error_code(exc) == "Throttling"
    assert fake_aws.calls() == {"DescribeDBClusters": 4}


def test_non_retryable_fault_is_not_retried(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds")
    fake_aws.inject_fault("DescribeDBInstances", "InvalidParameterValue", message="bad", times=3)
    with pytest.raises(ClientError) as exc:
        rds.describe_db_instances()
    assert error_code(exc) == "InvalidParameterValue"
    assert fake_aws.calls() == {"DescribeDBInstances": 1}
    fake_aws.clear_faults()
    assert rds.describe_db_instances()["DBInstances"] == []


def test_fault_on_json_protocol_service(fake_aws: FakeAWS) -> None:
    secrets = fake_aws.client("secretsmanager")
    secrets.create_secret(Name="db-password", SecretString="hunter2")
    fake_aws.inject_fault("GetSecretValue", "ThrottlingException", message="Rate exceeded", times=-1)
    with pytest.raises(ClientError) as exc:
        fake_aws.client("secretsmanager", config=NO_RETRIES).get_secret_value(SecretId="db-password")
    assert error_code(exc) == "ThrottlingException"
    assert exc.value.response["Error"]["Message"] == "Rate exceeded"
    fake_aws.clear_faults()
    assert secrets.get_secret_value(SecretId="db-password")["SecretString"] == "hunter2"
    assert fake_aws.calls() == {"CreateSecret": 1, "GetSecretValue": 2}


def test_counters_and_reset(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds")
    sts = fake_aws.client("sts")
    assert fake_aws.calls() == {}
    rds.describe_db_instances()
    rds.describe_db_instances()
    sts.get_caller_identity()
    assert fake_aws.calls() == {"DescribeDBInstances": 2, "GetCallerIdentity": 1}
    fake_aws.reset_calls()
    assert fake_aws.calls() == {}

    seed_instance(rds, "orders")
    fake_aws.configure(create_seconds=5, delete_seconds=1)
    fake_aws.inject_fault("DescribeDBInstances", "Throttling", times=-1)
    fake_aws.reset()
    assert fake_aws.calls() == {}
    assert fake_aws.config() == {"create_seconds": 0.0, "delete_seconds": 0.0}
    assert rds.describe_db_instances()["DBInstances"] == []  # state gone, fault gone
    assert rds.describe_db_snapshots()["DBSnapshots"] == []


def test_delete_lingers_as_deleting(fake_aws: FakeAWS) -> None:
    rds = fake_aws.client("rds")
    seed_instance(rds, "orders")
    seed_cluster(rds, "ledger")
    fake_aws.configure(delete_seconds=1.5)

    assert (
        rds.delete_db_instance(DBInstanceIdentifier="orders", SkipFinalSnapshot=True)["DBInstance"]["DBInstanceStatus"]
        == "deleting"
    )
    with pytest.raises(ClientError) as again:
        rds.delete_db_instance(DBInstanceIdentifier="orders", SkipFinalSnapshot=True)
    assert error_code(again) == "InvalidDBInstanceState"
    rds.delete_db_instance(DBInstanceIdentifier="ledger-writer", SkipFinalSnapshot=True)
    rds.delete_db_cluster(DBClusterIdentifier="ledger", SkipFinalSnapshot=True)  # members are deleting

    def gone(read: Callable[[], str]) -> Callable[[], str]:
        def status() -> str:
            try:
                return read()
            except ClientError as exc:
                return str(exc.response["Error"]["Code"])

        return status

    seen, _ = watch(gone(lambda: instance_status(rds, "orders")), until="DBInstanceNotFound")
    assert seen == ["deleting", "DBInstanceNotFound"]
    seen, _ = watch(gone(lambda: cluster_status(rds, "ledger")), until="DBClusterNotFoundFault")
    assert seen[-1] == "DBClusterNotFoundFault"
    assert set(seen) <= {"deleting", "DBClusterNotFoundFault"}


def test_a_restore_answers_where_its_snapshot_data_lives(fake_aws: FakeAWS) -> None:
    """restores_to: what is restored from a snapshot reports that snapshot's address and port as its endpoint
    (a real local database the verification probes reach), with create_seconds of its own; others do not."""
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "orders", master_username="drill_user")
    other = seed_instance(rds, "billing")
    fake_aws.restores_to(src.snapshot_identifier, "127.0.0.1", 55432, create_seconds=1)
    rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="orders-drill", DBSnapshotIdentifier=src.snapshot_identifier
    )
    rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="billing-copy", DBSnapshotIdentifier=other.snapshot_identifier
    )
    db = rds.describe_db_instances(DBInstanceIdentifier="orders-drill")["DBInstances"][0]
    assert db["Endpoint"] == {"Address": "127.0.0.1", "Port": 55432} and db["MasterUsername"] == "drill_user"
    seen, _ = watch(lambda: instance_status(rds, "orders-drill"))
    assert seen[0] == "creating" and seen[-1] == "available"
    plain = rds.describe_db_instances(DBInstanceIdentifier="billing-copy")["DBInstances"][0]
    assert plain["Endpoint"]["Address"].endswith(".rds.amazonaws.com")
    fake_aws.reset()
    assert fake_aws._control("GET", "restores") == {}
