"""Uninstalling the operator never deletes a database, and a reinstalled one picks everything up.

The operator is installed from an overlay as a user installs it (`kubectl apply -k`, into a namespace of
this test's own) and runs with that install's ServiceAccount token and RBAC. With a DBRestore in every
deletionPolicy Available, the install is removed as `kubectl delete -k` removes it: the CRDs are not in
it (manifests/crds is installed apart), so every DBRestore stays, untouched, with its finalizer, and the
fake AWS keeps every database. Reinstalled, the operator reconciles each one again (a status
overwritten meanwhile is written back) without a single create call, and then applies each deletionPolicy
when the objects are deleted: it manages them as before.

(The test API server runs no namespace controller: the deleted install namespace stays Terminating, so
the reinstall goes into another one, which is what the ServiceAccount's identity changes, nothing else.)
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from dbops.core.kube import FINALIZER
from tests.e2e.manifest_helpers import install_third_party_crds, into_namespace, render
from tests.e2e.restore_helpers import dbrestore, phase_is, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import ROOT, Cluster
from tests.support.operator import Operator

OVERLAY = ROOT / "manifests" / "overlays" / "eks"
POLICIES = {"keep": "Retain", "snap": "Snapshot", "del": "Delete"}
DESTRUCTIVE = ("DeleteDBInstance", "CreateDBSnapshot", "RestoreDBInstanceFromDBSnapshot")


def install(cluster: Cluster, workdir: pathlib.Path, op: Operator, namespace: str) -> pathlib.Path:
    """`kubectl apply -k` of the overlay into `namespace`; the operator gets its ServiceAccount's token."""
    tree = into_namespace(workdir, OVERLAY, namespace)
    cluster.kubectl("apply", "--server-side", "-k", str(tree))
    token = cluster.service_account_token(namespace, "dbops")
    op.env["KUBECONFIG"] = str(cluster.kubeconfig_for(f"dbops-{namespace}", token=token))
    return tree


def uninstall(cluster: Cluster, tree: pathlib.Path, op: Operator) -> None:
    """What `kubectl delete -k` does: every object of the install goes (the pod with its Deployment)."""
    op.stop()
    # --wait=false: the install namespace never finishes terminating here (no namespace controller).
    cluster.kubectl("delete", "-k", str(tree), "--wait=false", timeout=120)
    for doc in render(cluster, tree):
        kind, name = doc["kind"], doc["metadata"]["name"]
        ns = ["-n", doc["metadata"]["namespace"]] if "namespace" in doc["metadata"] else []
        left = cluster.kubectl("get", kind, name, *ns, "-o", "json", check=False)
        assert left.returncode != 0 or (
            kind == "Namespace" and json.loads(left.stdout)["metadata"].get("deletionTimestamp")
        ), f"{kind}/{name} survived the uninstall"


def instance(fake_aws: FakeAWS, identifier: str) -> dict[str, Any] | None:
    rds = fake_aws.client("rds")
    found = rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [identifier]}])["DBInstances"]
    return found[0] if found else None


def test_uninstall_keeps_every_database_and_a_reinstall_picks_them_up(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str, tmp_path: pathlib.Path
) -> None:
    install_third_party_crds(cluster)  # the overlay's ServiceMonitor
    src = seed_instance(fake_aws.client("rds"), "orders")
    fake_aws.configure(create_seconds=2)
    first = install(cluster, tmp_path / "first", own_operator, cluster.create_namespace("dbops"))
    own_operator.start()
    for name, policy in POLICIES.items():
        target = f"{name}-copy"
        cluster.apply(
            dbrestore(name, own_namespace, {"dbSnapshot": src.snapshot_identifier}, target, deletionPolicy=policy)
        )
    before = {name: wait_phase(cluster, name, own_namespace, "Available", timeout=120) for name in POLICIES}
    assert all(FINALIZER in o["metadata"]["finalizers"] for o in before.values())

    fake_aws.reset_calls()
    uninstall(cluster, first, own_operator)

    # Nothing is deleted: the CRDs, every object as it was (finalizer kept, no deletion), every database.
    for crd in ("dbrestores.dbops.dev", "dbattaches.dbops.dev"):
        served = json.loads(cluster.kubectl("get", "crd", crd, "-o", "json").stdout)
        assert not served["metadata"].get("deletionTimestamp"), crd
    for name in POLICIES:
        obj = cluster.get("dbrestore", name, own_namespace)
        assert obj["metadata"]["uid"] == before[name]["metadata"]["uid"]
        assert not obj["metadata"].get("deletionTimestamp") and FINALIZER in obj["metadata"]["finalizers"]
        db = instance(fake_aws, f"{name}-copy")
        assert db is not None and db["DBInstanceStatus"] == "available", (name, db)
    assert not set(DESTRUCTIVE) & set(fake_aws.calls()), fake_aws.calls()

    # Meanwhile the status is overwritten: a reinstalled operator that looks at the objects writes it back.
    for name in POLICIES:
        cluster.kubectl(
            "patch", "dbrestore", name, "-n", own_namespace, "--subresource=status", "--type=merge",
            "-p", '{"status":{"phase":"Pending","endpoint":null}}',
        )  # fmt: skip

    install(cluster, tmp_path / "second", own_operator, cluster.create_namespace("dbops"))
    own_operator.start()
    for name in POLICIES:
        obj = cluster.wait_for(
            "dbrestore", name, own_namespace,
            lambda o: phase_is("Available")(o) and bool(o["status"].get("endpoint")),
            timeout=120, what="Available again, with its endpoint",
        )  # fmt: skip
        assert obj["metadata"]["uid"] == before[name]["metadata"]["uid"]
    assert not set(DESTRUCTIVE) & set(fake_aws.calls()), fake_aws.calls()  # picked up, not created again

    # And it manages them as before: each deletionPolicy is applied by the reinstalled operator.
    fake_aws.configure(delete_seconds=2)
    cluster.kubectl("delete", "dbrestores", "--all", "-n", own_namespace, "--timeout=120s", timeout=150)
    assert instance(fake_aws, "keep-copy") is not None
    for name in ("snap", "del"):
        db = instance(fake_aws, f"{name}-copy")
        assert db is None or db["DBInstanceStatus"] == "deleting", (name, db)
    snaps = fake_aws.client("rds").describe_db_snapshots(DBInstanceIdentifier="snap-copy")["DBSnapshots"]
    uid = before["snap"]["metadata"]["uid"]
    assert f"snap-copy-final-{uid[:8]}" in [s["DBSnapshotIdentifier"] for s in snaps]
