"""A namespace-scoped install (manifests/overlays/namespaced): with nothing but its Role, the operator
reconciles in its own namespace, and nowhere else.

The overlay is installed into this test's namespace as a team would install it (`kubectl apply -k`),
and the operator runs with that ServiceAccount's token and DBOPS_NAMESPACE as the Deployment resolves it
(the pod's namespace). A DBRestore there becomes Available; one in another namespace is never touched;
the operator's log shows no permission error (kopf's watches, events), and the orphan sweep, which
lists the objects namespace by namespace here, finds the orphan it is shown.
"""

from __future__ import annotations

import pathlib
import time

from dbops.core.types import MANAGED_BY_TAG, NAMESPACE_TAG, OWNER_TAG
from tests.e2e.manifest_helpers import install_third_party_crds, into_namespace, one, render
from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.e2e.test_rbac import can_i
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import ROOT, Cluster
from tests.support.operator import Operator

OVERLAY = ROOT / "manifests" / "overlays" / "namespaced"


def test_namespaced_install_reconciles_in_its_namespace_only(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str, tmp_path: pathlib.Path
) -> None:
    install_third_party_crds(cluster)  # the overlay's ServiceMonitor
    tree = into_namespace(tmp_path / "install", OVERLAY, own_namespace)
    docs = render(cluster, tree)
    assert {d["kind"] for d in docs}.isdisjoint({"Namespace", "ClusterRole", "ClusterRoleBinding"})
    cluster.kubectl("apply", "--server-side", "-k", str(tree))
    env = one(docs, "Deployment", "dbops")["spec"]["template"]["spec"]["containers"][0]["env"]
    (watch,) = [e for e in env if e["name"] == "DBOPS_NAMESPACE"]
    assert watch["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"  # the pod's: own_namespace

    sa_config = cluster.kubeconfig_for("dbops-ns", token=cluster.service_account_token(own_namespace, "dbops"))
    assert can_i(cluster, sa_config, "watch", "dbrestores.dbops.dev", "-n", own_namespace)
    assert not can_i(cluster, sa_config, "list", "dbrestores.dbops.dev", "--all-namespaces")
    assert not can_i(cluster, sa_config, "list", "namespaces")

    src = seed_instance(fake_aws.client("rds"), "orders")
    fake_aws.configure(create_seconds=2)
    other = cluster.create_namespace("own")
    cluster.apply(dbrestore("elsewhere", other, {"dbSnapshot": src.snapshot_identifier}, "not-ours"))
    orphan_tags = {OWNER_TAG: "uid-of-an-object-long-gone", MANAGED_BY_TAG: "dbops", NAMESPACE_TAG: own_namespace}
    fake_aws.client("rds").restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="ghost-copy",
        DBSnapshotIdentifier=src.snapshot_identifier,
        Tags=[{"Key": k, "Value": v} for k, v in orphan_tags.items()],
    )
    fake_aws.reset_calls()  # the orphan's restore above is the test's, not the operator's
    assert {"name": "DBOPS_CLUSTER_SCAN", "value": "false"} in env
    # Tenancy: no DBPolicy is readable with the Role; the overlay says so rather than leaving it open.
    assert {"name": "DBOPS_POLICY", "value": "namespace"} in env
    assert not can_i(cluster, sa_config, "list", "dbpolicies.dbops.dev")
    own_operator.env.update(
        KUBECONFIG=str(sa_config), DBOPS_NAMESPACE=own_namespace, DBOPS_CLUSTER_SCAN="false", DBOPS_POLICY="namespace"
    )
    own_operator.start()
    cluster.apply(dbrestore("r", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "orders-team"))
    obj = wait_phase(cluster, "r", own_namespace, "Available", "Failed", timeout=120)
    assert obj["status"]["phase"] == "Available", obj["status"]
    assert "Restoring" in [e["reason"] for e in cluster.events(own_namespace, "r")]
    # The orphan sweep lists the objects with the Role (per namespace): it finds the one orphan here.
    deadline = time.monotonic() + 90
    while "orphaned database: " not in own_operator.tail(200_000) and time.monotonic() < deadline:
        time.sleep(0.5)
    log = own_operator.tail(200_000)
    assert "orphaned database: " in log and "ghost-copy" in log, log[-4000:]
    assert "Forbidden" not in log and "orphan sweep skipped" not in log, log[-4000:]
    assert "DBOPS_POLICY=namespace: no DBPolicy is read" in log, log[-4000:]
    untouched = cluster.get("dbrestore", "elsewhere", other)
    assert not untouched.get("status") and not untouched["metadata"].get("finalizers")
    assert fake_aws.calls()["RestoreDBInstanceFromDBSnapshot"] == 1
