"""DBRestore end to end: the real API server, the operator as a process, moto standing in for RDS."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from tests.e2e.obs_helpers import scrape, value
from tests.e2e.restore_helpers import dbrestore, event_reasons, phase_is, ready, tags, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import Cluster, Watch
from tests.support.operator import Operator


def test_instance_from_named_snapshot_shows_progress_and_copies_the_source(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "orders")
    fake_aws.configure(create_seconds=3)
    with Watch(cluster, "dbrestore", namespace) as watch:
        cluster.apply(dbrestore("r1", namespace, {"dbSnapshot": src.snapshot_identifier}, "orders-copy"))
        obj = wait_phase(cluster, "r1", namespace, "Available", "Failed")
    assert obj["status"]["phase"] == "Available", obj["status"]
    assert watch.phases("r1") == ["Pending", "Restoring", "Available"]
    rds_seen = [o["status"].get("rdsStatus") for o in watch.objects if o.get("status", {}).get("rdsStatus")]
    assert "backing-up" in rds_seen or "creating" in rds_seen  # progress was visible before available

    st = obj["status"]
    assert st["source"] == f"snapshot:{src.snapshot_identifier}" and st["dbInstanceIdentifier"] == "orders-copy"
    assert st["endpoint"] and st["port"] == src.port and st["engine"] == "postgres" and st["rdsStatus"] == "available"
    cond = ready(obj)
    assert cond["status"] == "True" and cond["reason"] == "Available" and cond["lastTransitionTime"]
    assert cond["observedGeneration"] == obj["metadata"]["generation"]
    assert st["startTime"] and st["completionTime"]
    reasons = event_reasons(cluster, namespace, "r1")
    assert {"Accepted", "Restoring", "Available"} <= set(reasons)

    db = rds.describe_db_instances(DBInstanceIdentifier="orders-copy")["DBInstances"][0]
    assert tags(db)["dbops.dev/owner-uid"] == obj["metadata"]["uid"]
    assert db["DBSubnetGroup"]["DBSubnetGroupName"] == src.subnet_group
    assert sorted(g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]) == sorted(src.security_group_ids)
    assert db["DBParameterGroups"][0]["DBParameterGroupName"] == src.parameter_group
    assert fake_aws.calls().get("RestoreDBInstanceFromDBSnapshot") == 1


def test_latest_snapshot_by_endpoint_hostname(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_instance(rds, "billing", snapshot_identifier="billing-old")
    rds.create_db_snapshot(DBInstanceIdentifier="billing", DBSnapshotIdentifier="billing-new")
    host = rds.describe_db_instances(DBInstanceIdentifier="billing")["DBInstances"][0]["Endpoint"]["Address"]
    cluster.apply(
        dbrestore(
            "r2",
            namespace,
            {"latestSnapshot": {"endpoint": host, "snapshotType": "manual"}},
            {"identifier": "billing-copy", "dbInstanceClass": "db.t4g.small"},
        )
    )
    obj = wait_phase(cluster, "r2", namespace, "Available", "Failed")
    assert obj["status"]["phase"] == "Available", obj["status"]
    assert obj["status"]["source"] == "snapshot:billing-new"
    db = rds.describe_db_instances(DBInstanceIdentifier="billing-copy")["DBInstances"][0]
    assert db["DBInstanceClass"] == "db.t4g.small"  # the override wins over the source's class


def test_point_in_time_of_an_instance(cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str) -> None:
    rds = fake_aws.client("rds")
    seed_instance(rds, "ledger")
    cluster.apply(dbrestore("r3", namespace, {"pointInTime": {"dbInstance": "ledger"}}, "ledger-pit"))
    obj = wait_phase(cluster, "r3", namespace, "Available", "Failed")
    assert obj["status"]["phase"] == "Available", obj["status"]
    assert obj["status"]["source"].startswith("pit:ledger@")
    assert fake_aws.calls().get("RestoreDBInstanceToPointInTime") == 1


@pytest.mark.parametrize("source_kind", ["snapshot", "pit"])
def test_aurora_cluster_with_its_instances(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, source_kind: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_cluster(rds, "payments")
    fake_aws.configure(create_seconds=2)
    source = (
        {"dbClusterSnapshot": src.snapshot_identifier}
        if source_kind == "snapshot"
        else {"pointInTime": {"dbCluster": "payments"}}
    )
    cluster.apply(dbrestore("r4", namespace, source, {"identifier": "payments-copy", "instances": {"count": 2}}))
    obj = wait_phase(cluster, "r4", namespace, "Available", "Failed")
    assert obj["status"]["phase"] == "Available", obj["status"]
    st = obj["status"]
    assert st["kind"] == "cluster" and st["dbClusterIdentifier"] == "payments-copy"
    assert st["instanceIdentifiers"] == ["payments-copy-1", "payments-copy-2"]
    assert st["endpoint"] and st["readerEndpoint"]
    members = rds.describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": ["payments-copy"]}])["DBInstances"]
    assert sorted(m["DBInstanceIdentifier"] for m in members) == ["payments-copy-1", "payments-copy-2"]
    assert all(m["DBInstanceClass"] == "db.r6g.large" for m in members)  # the source writer's class
    restored = rds.describe_db_clusters(DBClusterIdentifier="payments-copy")["DBClusters"][0]
    assert restored["DBSubnetGroup"] == src.subnet_group


def test_an_existing_database_is_never_adopted(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "crm")
    seed_instance(rds, "crm-prod-copy", tags={"owner": "someone-else"})
    cluster.apply(
        dbrestore("r5", namespace, {"dbSnapshot": src.snapshot_identifier}, "crm-prod-copy", deletionPolicy="Delete")
    )
    obj = wait_phase(cluster, "r5", namespace, "Failed")
    assert ready(obj)["reason"] == "NameCollision" and "spec.target.identifier" in ready(obj)["message"]
    cluster.kubectl("delete", "dbrestore", "r5", "-n", namespace, "--timeout=30s")
    db = rds.describe_db_instances(DBInstanceIdentifier="crm-prod-copy")["DBInstances"][0]
    assert db["DBInstanceStatus"] == "available" and tags(db) == {"owner": "someone-else"}
    calls = fake_aws.calls()
    assert not {"RestoreDBInstanceFromDBSnapshot", "DeleteDBInstance", "ModifyDBInstance", "AddTagsToResource"} & set(
        calls
    )


def test_permanent_error_fails_with_the_code_and_a_fixed_spec_retries(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "hr")
    cluster.apply(dbrestore("r6", namespace, {"dbSnapshot": "no-such-snapshot"}, "hr-copy"))
    obj = wait_phase(cluster, "r6", namespace, "Failed")
    assert ready(obj)["reason"] == "SnapshotNotFound" and "spec.source.dbSnapshot" in ready(obj)["message"]
    assert "SnapshotNotFound" in event_reasons(cluster, namespace, "r6")
    cluster.kubectl(
        "patch",
        "dbrestore",
        "r6",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"source": {"dbSnapshot": src.snapshot_identifier}}}),
    )
    obj = wait_phase(cluster, "r6", namespace, "Available")
    assert ready(obj)["status"] == "True"


def test_aws_error_code_lands_in_status_and_events(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "quota")
    fake_aws.inject_fault(
        "RestoreDBInstanceFromDBSnapshot", "InstanceQuotaExceeded", 400, "DB instance quota exceeded", times=1
    )
    cluster.apply(dbrestore("r7", namespace, {"dbSnapshot": src.snapshot_identifier}, "quota-copy"))
    obj = wait_phase(cluster, "r7", namespace, "Failed")
    assert ready(obj)["reason"] == "InstanceQuotaExceeded" and "quota exceeded" in ready(obj)["message"]
    # Retry without changing the spec: the annotation is the user's "try again".
    cluster.kubectl("annotate", "dbrestore", "r7", "-n", namespace, "dbops.dev/retry=1")
    obj = wait_phase(cluster, "r7", namespace, "Available")
    assert fake_aws.calls()["RestoreDBInstanceFromDBSnapshot"] == 2


@pytest.mark.parametrize(("code", "status"), [("Throttling", 400), ("InternalFailure", 500)])
def test_transient_errors_retry_and_show_in_conditions(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, code: str, status: int
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "events")
    # More failures than botocore's 5 attempts, so that the operator's own retry shows.
    fake_aws.inject_fault("RestoreDBInstanceFromDBSnapshot", code, status, "injected", times=6)
    with Watch(cluster, "dbrestore", namespace) as watch:
        cluster.apply(dbrestore("r8", namespace, {"dbSnapshot": src.snapshot_identifier}, "events-copy"))
        wait_phase(cluster, "r8", namespace, "Available", timeout=90)
    reasons_seen = {c["reason"] for o in watch.objects for c in (o.get("status") or {}).get("conditions", [])}
    assert code in reasons_seen
    assert code in event_reasons(cluster, namespace, "r8")
    assert fake_aws.calls()["RestoreDBInstanceFromDBSnapshot"] == 7
    assert "Failed" not in watch.phases("r8")


@pytest.mark.parametrize("policy", ["Retain", "Delete", "Snapshot"])
def test_deletion_policy(cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, policy: str) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "shop")
    cluster.apply(
        dbrestore("r9", namespace, {"dbSnapshot": src.snapshot_identifier}, "shop-copy", deletionPolicy=policy)
    )
    obj = wait_phase(cluster, "r9", namespace, "Available")
    uid = obj["metadata"]["uid"]
    fake_aws.configure(delete_seconds=2)
    cluster.kubectl("delete", "dbrestore", "r9", "-n", namespace, "--wait=false")
    if policy != "Retain":
        cluster.wait_for("dbrestore", "r9", namespace, phase_is("Deleting"), timeout=30)
    gone = cluster.kubectl("wait", "--for=delete", "dbrestore/r9", "-n", namespace, "--timeout=60s", check=False)
    assert gone.returncode == 0, gone.stderr
    remaining = rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["shop-copy"]}])["DBInstances"]
    assert bool(remaining) is (policy == "Retain")
    snaps = [
        s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(DBInstanceIdentifier="shop-copy")["DBSnapshots"]
    ]
    assert (f"shop-copy-final-{uid[:8]}" in snaps) is (policy == "Snapshot")
    assert rds.describe_db_instances(DBInstanceIdentifier="shop")["DBInstances"]  # the source is untouched


def test_a_database_deleted_outside_dbops_shows_at_the_slow_resync_and_is_never_made_again(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    """Drift of a settled object: the shared operator looks at Available objects only at the slow resync
    (5 s here), through the orphan sweep's listing of the region (its slow cache makes no describe of its
    own while the sweep runs). A database deleted behind dbops' back shows there; dbops does not restore
    it again."""
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "ledger")
    cluster.apply(dbrestore("r-drift", namespace, {"dbSnapshot": src.snapshot_identifier}, "ledger-copy"))
    wait_phase(cluster, "r-drift", namespace, "Available")
    rds.delete_db_instance(DBInstanceIdentifier="ledger-copy", SkipFinalSnapshot=True)
    obj = wait_phase(cluster, "r-drift", namespace, "Failed", timeout=90)
    assert ready(obj)["reason"] == "NotFound" and "deleted outside dbops" in ready(obj)["message"], obj["status"]
    assert obj["status"].get("rdsStatus") is None
    assert fake_aws.calls().get("RestoreDBInstanceFromDBSnapshot") == 1


def test_ttl_removes_the_database_and_keeps_the_record(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "preview")
    cluster.apply(
        dbrestore(
            "r10",
            namespace,
            {"dbSnapshot": src.snapshot_identifier},
            "preview-pr-1",
            deletionPolicy="Delete",
            ttl="10m",
        )
    )
    obj = wait_phase(cluster, "r10", namespace, "Available")
    # The ttl counts from the database's creation time in RDS. 10m is the shortest admission takes:
    # rather than wait for it, the stand-in's clock runs on for this database (a status field written
    # by hand would not do: the operator does not take expiresAt from status).
    created = rds.describe_db_instances(DBInstanceIdentifier="preview-pr-1")["DBInstances"][0]["InstanceCreateTime"]
    expires = datetime.fromisoformat(obj["status"]["expiresAt"].replace("Z", "+00:00"))
    assert abs(expires - (created + timedelta(minutes=10))) < timedelta(seconds=1)
    fake_aws.age("preview-pr-1", 11 * 60)
    obj = wait_phase(cluster, "r10", namespace, "Expired", timeout=60)
    assert ready(obj)["reason"] == "Expired"
    assert not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["preview-pr-1"]}])[
        "DBInstances"
    ]


def test_master_password_from_a_secret_never_shows(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "vault")
    secret = "s3cr3t-Value-42"
    cluster.kubectl("create", "secret", "generic", "pw", "-n", namespace, f"--from-literal=password={secret}")
    cluster.apply(
        dbrestore(
            "r11",
            namespace,
            {"dbSnapshot": src.snapshot_identifier},
            "vault-copy",
            masterPassword={"secretRef": {"name": "pw"}},
        )
    )
    obj = cluster.wait_for(
        "dbrestore",
        "r11",
        namespace,
        lambda o: any(
            c["type"] == "MasterPasswordSet" and c["status"] == "True"
            for c in (o.get("status") or {}).get("conditions", [])
        ),
    )
    assert secret not in json.dumps(obj)
    assert secret not in json.dumps(cluster.events(namespace, "r11"))
    assert secret not in operator.tail(10**7)
    assert fake_aws.calls().get("ModifyDBInstance") == 1


def test_a_restore_time_in_the_future_fails_before_any_aws_call(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    # An operator of its own, whose /metrics count every AWS call it makes (the fake AWS server also
    # hears the shared operator polling other tests' databases). No CEL rule can refuse a future time:
    # CEL has no clock.
    namespace = own_namespace
    own_operator.start()
    cluster.apply(
        dbrestore(
            "r12",
            namespace,
            {"pointInTime": {"dbInstance": "src", "restoreTime": "2099-01-01T00:00:00Z"}},
            "future-copy",
        )
    )
    obj = wait_phase(cluster, "r12", namespace, "Failed")
    assert (
        ready(obj)["reason"] == "RestoreTimeInFuture" and "spec.source.pointInTime.restoreTime" in ready(obj)["message"]
    )
    assert value(scrape(own_operator.metrics_port), "dbops_aws_api_calls_total") == 0
