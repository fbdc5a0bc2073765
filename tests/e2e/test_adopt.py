"""Adopting a retained database (spec.adopt) end to end: a DBRestore deleted with deletionPolicy Retain
leaves its database; a new DBRestore with adopt takes it back without restoring again, and from then on
its own deletionPolicy applies. Never a foreign database, another namespace's, or a living object's."""

from __future__ import annotations

from typing import Any

from tests.e2e.restore_helpers import dbrestore, event_reasons, instances, ready, tags, wait_phase
from tests.support import kube
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

RETAINED = "dbops.dev/retained-at"
CREATES = ("RestoreDBInstanceFromDBSnapshot", "RestoreDBInstanceToPointInTime", "CreateDBInstance")


def retain_and_delete(cluster: Cluster, rds: Any, namespace: str, name: str, snapshot: str, target: str) -> str:
    """A DBRestore made Available, then deleted with deletionPolicy Retain; returns its UID."""
    cluster.apply(dbrestore(name, namespace, {"dbSnapshot": snapshot}, target, deletionPolicy="Retain"))
    uid = wait_phase(cluster, name, namespace, "Available", timeout=90)["metadata"]["uid"]
    cluster.kubectl("delete", "dbrestore", name, "-n", namespace, "--timeout=60s")
    (db,) = instances(rds, target)
    assert tags(db)["dbops.dev/owner-uid"] == uid and RETAINED in tags(db)
    return str(uid)


def test_a_retained_database_is_adopted_once_and_then_follows_the_new_policy(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "keep")
    old_uid = retain_and_delete(cluster, rds, namespace, "orders", src.snapshot_identifier, "keep-copy")

    fake_aws.reset_calls()
    again = dbrestore(
        "orders", namespace, {"dbSnapshot": src.snapshot_identifier}, "keep-copy", adopt=True, deletionPolicy="Delete"
    )
    cluster.apply(again)
    obj = wait_phase(cluster, "orders", namespace, "Available", "Failed", timeout=90)
    assert obj["status"]["phase"] == "Available", obj["status"]
    assert obj["metadata"]["uid"] != old_uid
    calls = fake_aws.calls()
    assert not [c for c in CREATES if calls.get(c)], calls  # taken back, never restored again
    assert calls.get("RemoveTagsFromResource") == 1, calls
    (db,) = instances(rds, "keep-copy")
    assert tags(db)["dbops.dev/owner-uid"] == obj["metadata"]["uid"] and RETAINED not in tags(db)
    assert tags(db)["dbops.dev/name"] == "orders" and tags(db)["dbops.dev/namespace"] == namespace
    assert len(rds.describe_db_instances()["DBInstances"]) == 2  # the source and the one copy
    assert obj["status"]["source"] == f"snapshot:{src.snapshot_identifier}" and obj["status"]["endpoint"]
    assert "Adopted" in event_reasons(cluster, namespace, "orders")

    # Now the new object's deletionPolicy (Delete) applies to it.
    fake_aws.configure(delete_seconds=1)
    cluster.kubectl("delete", "dbrestore", "orders", "-n", namespace, "--timeout=90s")
    assert not instances(rds, "keep-copy")
    assert instances(rds, "keep")  # the source is untouched


def test_never_a_foreign_database_another_namespaces_or_a_living_objects(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "src")
    seed_instance(rds, "foreign", tags={"owner": "dba"})
    other = cluster.create_namespace("t")
    try:
        retain_and_delete(cluster, rds, other, "elsewhere", src.snapshot_identifier, "other-ns-copy")
        # Retained, but its object still exists: held by someone else's finalizer after dbops let go.
        held = dbrestore("held", namespace, {"dbSnapshot": src.snapshot_identifier}, "held-copy")
        held["metadata"]["finalizers"] = ["example.com/hold"]
        cluster.apply(held)
        wait_phase(cluster, "held", namespace, "Available", timeout=90)
        cluster.kubectl("delete", "dbrestore", "held", "-n", namespace, "--wait=false")
        cluster.wait_for(
            "dbrestore",
            "held",
            namespace,
            lambda o: "dbops.dev/finalizer" not in o["metadata"].get("finalizers", []),
            timeout=60,
            what="dbops' finalizer gone",
        )
        assert RETAINED in tags(instances(rds, "held-copy")[0])

        before = {i: tags(instances(rds, i)[0]) for i in ("foreign", "other-ns-copy", "held-copy")}
        fake_aws.reset_calls()
        cases = {"a1": "foreign", "a2": "other-ns-copy", "a3": "held-copy"}
        for name, target in cases.items():
            cluster.apply(dbrestore(name, namespace, {"dbSnapshot": src.snapshot_identifier}, target, adopt=True))
        words = {
            "a1": "was not created by dbops",
            "a2": f"belongs to namespace {other}, not this one",
            "a3": "belongs to DBRestore held, which still exists",
        }
        for name, expected in words.items():
            obj = wait_phase(cluster, name, namespace, "Failed", timeout=60)
            cond = ready(obj)
            assert cond["reason"] == "NotAdoptable" and expected in cond["message"], cond
            assert cond["message"].startswith("spec.adopt: ")
        calls = fake_aws.calls()
        assert not calls.get("AddTagsToResource") and not calls.get("RemoveTagsFromResource"), calls
        assert not [c for c in CREATES if calls.get(c)], calls
        assert {i: tags(instances(rds, i)[0]) for i in before} == before
    finally:
        cluster.kubectl(
            "patch",
            "dbrestore",
            "held",
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kube.delete_all(cluster, other, "dbrestores.dbops.dev")
