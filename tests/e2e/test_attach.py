"""DBAttach end to end: readers added to (and removed from) a real-looking Aurora cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.restore_helpers import dbattach, dbrestore, tags
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import Cluster, Watch
from tests.support.operator import Operator


def wait_attach(
    cluster: Cluster, name: str, namespace: str, *phases: str, timeout: float = 60, check: Any = None
) -> dict[str, Any]:
    def done(obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return st.get("phase") in phases and (check is None or check(st))

    return cluster.wait_for("dbattach", name, namespace, done, timeout=timeout, what=f"phase {'/'.join(phases)}")


def members(rds: Any, cluster_id: str) -> dict[str, dict[str, Any]]:
    found = rds.describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": [cluster_id]}])["DBInstances"]
    return {d["DBInstanceIdentifier"]: d for d in found}


def test_attach_by_identifier_copies_the_writer_and_sets_no_cluster_fields(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_cluster(rds, "orders")
    fake_aws.configure(create_seconds=2)
    with Watch(cluster, "dbattach", namespace) as watch:
        cluster.apply(dbattach("a1", namespace, {"dbCluster": "orders"}, identifier="orders-reader"))
        obj = wait_attach(cluster, "a1", namespace, "Available", "Failed")
    assert watch.phases("a1")[:2] == ["Pending", "Attaching"]  # seen at once, before any AWS call
    st = obj["status"]
    assert st["phase"] == "Available", st
    assert st["ready"] == "1/1" and st["dbClusterIdentifier"] == "orders" and st["endpoint"]
    (inst,) = st["instances"]
    assert inst["identifier"] == "orders-reader" and inst["role"] == "reader" and inst["rdsStatus"] == "available"
    assert inst["availabilityZone"] and inst["endpoint"]
    assert st["startTime"] <= st["completionTime"]  # how long it took, for metrics and notifications
    db = members(rds, "orders")["orders-reader"]
    writer = members(rds, "orders")["orders-writer"]
    assert db["DBInstanceClass"] == writer["DBInstanceClass"] and db["Engine"] == "aurora-postgresql"
    assert tags(db)["dbops.dev/owner-uid"] == obj["metadata"]["uid"]
    out = cluster.kubectl("get", "dba", "a1", "-n", namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "PHASE", "CLUSTER", "INSTANCES", "ENDPOINT", "AGE"]
    assert out[1].split()[:4] == ["a1", "Available", "orders", "1/1"]


def test_attach_by_reader_endpoint_spreads_zones(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_cluster(rds, "billing")
    host = rds.describe_db_clusters(DBClusterIdentifier="billing")["DBClusters"][0]["ReaderEndpoint"]
    zones = rds.describe_db_clusters(DBClusterIdentifier="billing")["DBClusters"][0]["AvailabilityZones"]
    cluster.apply(
        dbattach(
            "a2",
            namespace,
            {"endpoint": host},
            identifierPrefix="billing-ro",
            count=2,
            dbInstanceClass="db.r6g.xlarge",
            promotionTier=3,
        )
    )
    obj = wait_attach(cluster, "a2", namespace, "Available", "Failed")
    assert obj["status"]["phase"] == "Available", obj["status"]
    found = members(rds, "billing")
    assert {"billing-ro-1", "billing-ro-2"} <= set(found)
    assert all(found[n]["DBInstanceClass"] == "db.r6g.xlarge" for n in ("billing-ro-1", "billing-ro-2"))
    placed = [found[n]["AvailabilityZone"] for n in ("billing-writer", "billing-ro-1", "billing-ro-2")]
    if len(zones) >= 3:
        assert len(set(placed)) == 3, placed
    else:
        assert len(set(placed)) == len(zones), placed


def test_attach_to_a_restored_cluster_waits_for_the_dbrestore(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_cluster(rds, "pay")
    fake_aws.configure(create_seconds=4)
    cluster.apply(dbrestore("pay-copy", namespace, {"dbClusterSnapshot": src.snapshot_identifier}, "pay-copy"))
    with Watch(cluster, "dbattach", namespace) as watch:
        cluster.apply(dbattach("a3", namespace, {"dbRestoreRef": "pay-copy"}, identifier="pay-copy-reader"))
        obj = wait_attach(cluster, "a3", namespace, "Available", "Failed", timeout=90)
    assert obj["status"]["phase"] == "Available", obj["status"]
    assert watch.phases("a3")[0] == "Pending"
    assert "pay-copy-reader" in members(rds, "pay-copy")


def test_count_scales_out_and_in_one_at_a_time_never_the_writer(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_cluster(rds, "shop")
    fake_aws.configure(create_seconds=2, delete_seconds=1)
    cluster.apply(dbattach("a4", namespace, {"dbCluster": "shop"}, identifierPrefix="shop-ro", count=1))
    wait_attach(cluster, "a4", namespace, "Available")
    with Watch(cluster, "dbattach", namespace) as watch:
        cluster.kubectl("patch", "dbattach", "a4", "-n", namespace, "--type=merge", "-p", '{"spec":{"count":3}}')
        wait_attach(cluster, "a4", namespace, "Available", timeout=90, check=lambda st: st.get("ready") == "3/3")
    for obj in watch.objects:
        busy = [i for i in (obj.get("status") or {}).get("instances") or [] if i.get("rdsStatus") != "available"]
        assert len(busy) <= 1, busy  # one at a time
    assert {"shop-ro-1", "shop-ro-2", "shop-ro-3"} <= set(members(rds, "shop"))
    cluster.kubectl("patch", "dbattach", "a4", "-n", namespace, "--type=merge", "-p", '{"spec":{"count":1}}')
    obj = wait_attach(
        cluster,
        "a4",
        namespace,
        "Available",
        timeout=90,
        check=lambda st: st.get("ready") == "1/1" and len(st.get("instances") or []) == 1,
    )
    left = set(members(rds, "shop"))
    assert "shop-ro-1" in left and "shop-ro-2" not in left and "shop-ro-3" not in left
    assert "shop-writer" in left
    assert fake_aws.calls()["DeleteDBInstance"] == 2


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_deletion_policy_removes_only_our_readers(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, policy: str
) -> None:
    rds = fake_aws.client("rds")
    seed_cluster(rds, "crm")
    cluster.apply(
        dbattach("a5", namespace, {"dbCluster": "crm"}, identifierPrefix="crm-ro", count=2, deletionPolicy=policy)
    )
    wait_attach(cluster, "a5", namespace, "Available", timeout=90)
    cluster.kubectl("delete", "dbattach", "a5", "-n", namespace, "--wait=false")
    gone = cluster.kubectl("wait", "--for=delete", "dbattach/a5", "-n", namespace, "--timeout=60s", check=False)
    assert gone.returncode == 0, gone.stderr
    left = set(members(rds, "crm"))
    assert "crm-writer" in left
    assert rds.describe_db_clusters(DBClusterIdentifier="crm")["DBClusters"]
    assert ({"crm-ro-1", "crm-ro-2"} <= left) is (policy == "Retain")
    assert not ({"crm-ro-1", "crm-ro-2"} & left) or policy == "Retain"


def test_a_name_taken_by_someone_else_is_a_clear_failure(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_cluster(rds, "hr")
    rds.create_db_instance(
        DBInstanceIdentifier="hr-reader",
        DBClusterIdentifier="hr",
        Engine="aurora-postgresql",
        DBInstanceClass="db.r6g.large",
        Tags=[{"Key": "owner", "Value": "dba-team"}],
    )
    fake_aws.reset_calls()
    cluster.apply(dbattach("a6", namespace, {"dbCluster": "hr"}, identifier="hr-reader", deletionPolicy="Delete"))
    obj = wait_attach(cluster, "a6", namespace, "Failed")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "NameCollision"
    cluster.kubectl("delete", "dbattach", "a6", "-n", namespace, "--timeout=30s")
    assert "hr-reader" in members(rds, "hr")
    assert not {"DeleteDBInstance", "CreateDBInstance", "ModifyDBInstance"} & set(fake_aws.calls())


def test_an_instance_endpoint_is_not_an_aurora_cluster(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_instance(rds, "plain")
    host = rds.describe_db_instances(DBInstanceIdentifier="plain")["DBInstances"][0]["Endpoint"]["Address"]
    fake_aws.reset_calls()
    cluster.apply(dbattach("a7", namespace, {"endpoint": host}, identifier="plain-reader"))
    obj = wait_attach(cluster, "a7", namespace, "Failed")
    assert next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")["reason"] == "NotAurora"
    assert "CreateDBInstance" not in fake_aws.calls()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"count": 0, "identifierPrefix": "x"}, "spec.count"),
        ({"count": 2, "identifier": "x"}, "use identifierPrefix for count > 1"),
        ({"identifier": "x", "dbInstanceClass": "r6g.large"}, "spec.dbInstanceClass"),
        ({"identifier": "x", "identifierPrefix": "other"}, "set exactly one of identifier, identifierPrefix"),
        ({"identifier": "bad--name"}, "spec.identifier"),
        ({"identifier": "x", "monitoring": {"interval": 30}}, "roleArn is required"),
    ],
)
def test_malformed_dbattach_is_rejected_at_admission(
    cluster: Cluster, own_namespace: str, spec: dict[str, Any], expected: str
) -> None:
    proc = cluster.apply(dbattach("bad", own_namespace, {"dbCluster": "c"}, **spec), check=False)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
    proc = cluster.apply(
        dbattach("bad2", own_namespace, {"dbCluster": "c", "dbRestoreRef": "r"}, identifier="x"), check=False
    )
    assert proc.returncode != 0 and "set exactly one of dbCluster, endpoint, dbRestoreRef" in proc.stderr


def test_operator_restart_mid_attach_creates_each_instance_once(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_cluster(rds, "ledger")
    fake_aws.configure(create_seconds=5)
    fake_aws.reset_calls()
    own_operator.start()
    cluster.apply(dbattach("a8", own_namespace, {"dbCluster": "ledger"}, identifierPrefix="ledger-ro", count=2))
    wait_attach(cluster, "a8", own_namespace, "Attaching", check=lambda st: bool(st.get("instances")))
    own_operator.kill()
    own_operator.start()
    obj = wait_attach(cluster, "a8", own_namespace, "Available", timeout=120, check=lambda st: st.get("ready") == "2/2")
    assert fake_aws.calls()["CreateDBInstance"] == 2, json.dumps(obj["status"])
