"""The orphan sweep through the real API server: a database whose object vanished without its
finalizer running is found again (metric, audit record, log line) and, with DBOPS_ORPHANS=snapshot,
removed after the grace period with a final snapshot; a database kept on purpose (Retain) is not an
orphan, nor is one of a namespace this operator does not watch. A namespace whose DBPolicy names a role
has its orphans looked for, and removed, acting as that role."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.e2e.obs_helpers import audit_rows, eventually, scrape, value
from tests.e2e.restore_helpers import dbrestore, tags, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

Policies = Callable[..., str]


def test_an_orphan_is_reported_then_removed_and_a_retained_database_is_not(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "orph")
    # A database dbops made for an object of a namespace this operator does not watch: never its business.
    rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="elsewhere-copy",
        DBSnapshotIdentifier=src.snapshot_identifier,
        Tags=[
            {"Key": "dbops.dev/managed-by", "Value": "dbops"},
            {"Key": "dbops.dev/owner-uid", "Value": "uid-of-another-cluster"},
            {"Key": "dbops.dev/namespace", "Value": "not-watched-here"},
        ],
    )
    own_operator.env.update(DBOPS_RESYNC_INTERVAL="2", DBOPS_ORPHANS="snapshot", DBOPS_ORPHAN_GRACE="4")
    own_operator.start()
    snapshot = {"dbSnapshot": src.snapshot_identifier}
    cluster.apply(dbrestore("gone", own_namespace, snapshot, "orph-gone", deletionPolicy="Delete"))
    cluster.apply(dbrestore("kept", own_namespace, snapshot, "orph-kept"))  # Retain
    uid = wait_phase(cluster, "gone", own_namespace, "Available")["metadata"]["uid"]
    wait_phase(cluster, "kept", own_namespace, "Available")

    cluster.kubectl("delete", "dbrestore", "kept", "-n", own_namespace, "--timeout=60s")  # Retain: kept on purpose
    kept = rds.describe_db_instances(DBInstanceIdentifier="orph-kept")["DBInstances"][0]
    assert "dbops.dev/retained-at" in tags(kept)
    # The object vanishes without its finalizer running (stripped by hand): its database runs on.
    cluster.kubectl(
        "patch", "dbrestore", "gone", "-n", own_namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    cluster.kubectl("delete", "dbrestore", "gone", "-n", own_namespace, "--timeout=30s")

    orphaned = lambda: value(scrape(own_operator.metrics_port), "dbops_orphaned_databases", kind="DBRestore")  # noqa: E731
    eventually(lambda: orphaned() == 1, timeout=30, what="the orphan counted")
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"
    found = eventually(lambda: audit_rows(url, "--action", "orphan-found"), timeout=30, what="the orphan's record")
    assert [(r["uid"], r["target"], r["name"]) for r in found] == [(uid, "orph-gone", "gone")]
    assert "orphaned database" in own_operator.tail(10**6) and "orph-gone" in own_operator.tail(10**6)

    # After the grace period: a final snapshot, then the deletion, as deletionPolicy Snapshot would.
    eventually(
        lambda: (
            not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": ["orph-gone"]}])["DBInstances"]
        ),
        timeout=60,
        what="the orphan removed",
    )
    snaps = [
        s["DBSnapshotIdentifier"] for s in rds.describe_db_snapshots(DBInstanceIdentifier="orph-gone")["DBSnapshots"]
    ]
    assert f"orph-gone-final-{uid[:8]}" in snaps
    assert eventually(lambda: audit_rows(url, "--action", "orphan-removed"), timeout=30, what="the removal's record")
    eventually(lambda: orphaned() == 0, timeout=30, what="no orphan left")
    # Kept on purpose, or not this operator's namespace: untouched.
    assert rds.describe_db_instances(DBInstanceIdentifier="orph-kept")["DBInstances"]
    assert rds.describe_db_instances(DBInstanceIdentifier="elsewhere-copy")["DBInstances"]
    assert len(audit_rows(url, "--action", "orphan-found")) == 1


def force_delete_namespace(cluster: Cluster, namespace: str) -> None:
    """Delete a namespace and let it go at once, as `kubectl replace --raw .../finalize` does by hand (the
    test cluster has no namespace controller to finish the deletion)."""
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
    body = json.loads(cluster.kubectl("get", "namespace", namespace, "-o", "json").stdout)
    body["spec"]["finalizers"] = []
    raw = f"/api/v1/namespaces/{namespace}/finalize"
    cluster.kubectl("replace", "--raw", raw, "-f", "-", input=json.dumps(body))
    eventually(
        lambda: cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0,
        timeout=30,
        what=f"namespace {namespace} gone",
    )


def test_an_orphan_in_a_tenant_account_is_found_and_removed_signed_with_its_namespaces_role(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str, policies: Policies
) -> None:
    """The namespace's DBPolicy names a role in another account: its database is made there, so its
    orphan is found only by listing that account acting as the role (a session of the sweep's own, tagged
    with the namespace), and removed there with calls signed by it; the operator's own account, which
    holds a database of the same name, is untouched. The orphan is made the way they come about: the
    object's finalizer stripped and its namespace force-deleted, so that only the policy naming the
    namespace still says which role made the database."""
    ns, account, role = own_namespace, "222222222222", "arn:aws:iam::222222222222:role/dbops-tenant"
    policies(f"role-{ns}", namespaces=[ns], aws={"roleArn": role, "externalId": "dbops-tenant"})
    tenant = fake_aws.client("rds", account=account)
    seed_instance(tenant, f"{ns}-src", snapshot_identifier=f"{ns}-snap")
    rds = fake_aws.client("rds")
    seed_instance(rds, f"{ns}-copy")  # the same name in the operator's account: not dbops', never touched
    own_operator.env.update(
        DBOPS_POLICY="enforce", DBOPS_RESYNC_INTERVAL="2", DBOPS_ORPHANS="snapshot", DBOPS_ORPHAN_GRACE="4"
    )
    own_operator.start()
    cluster.apply(dbrestore("tenant", ns, {"dbSnapshot": f"{ns}-snap"}, f"{ns}-copy", deletionPolicy="Delete"))
    uid = wait_phase(cluster, "tenant", ns, "Available", timeout=60)["metadata"]["uid"]
    assert tenant.describe_db_instances(DBInstanceIdentifier=f"{ns}-copy")["DBInstances"]
    fake_aws.reset_calls()
    cluster.kubectl("patch", "dbrestore", "tenant", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    cluster.kubectl("delete", "dbrestore", "tenant", "-n", ns, "--timeout=30s")
    force_delete_namespace(cluster, ns)

    orphaned = lambda: value(scrape(own_operator.metrics_port), "dbops_orphaned_databases", kind="DBRestore")  # noqa: E731
    eventually(lambda: orphaned() == 1, timeout=60, what="the tenant's orphan counted")
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"
    found = eventually(lambda: audit_rows(url, "--action", "orphan-found"), timeout=30, what="the orphan's record")
    assert [(r["uid"], r["target"], r["name"]) for r in found] == [(uid, f"{ns}-copy", "tenant")]
    assert f"{ns}-copy (us-east-1, account {account})" in own_operator.tail(10**6)

    # After the grace period: a final snapshot and the deletion, in the tenant's account.
    eventually(
        lambda: (
            not tenant.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [f"{ns}-copy"]}])[
                "DBInstances"
            ]
        ),
        timeout=60,
        what="the tenant's orphan removed",
    )
    snaps = tenant.describe_db_snapshots(DBInstanceIdentifier=f"{ns}-copy")["DBSnapshots"]
    assert f"{ns}-copy-final-{uid[:8]}" in [s["DBSnapshotIdentifier"] for s in snaps]
    assert eventually(lambda: audit_rows(url, "--action", "orphan-removed"), timeout=30, what="the removal's record")
    eventually(lambda: orphaned() == 0, timeout=30, what="no orphan left")

    # Every call in the tenant's account was signed by the role, in the sweep's session for the namespace.
    calls, sessions = fake_aws.signed()
    deletes = {c["access_key"] for c in calls if c["action"] == "DeleteDBInstance"}
    assert len(deletes) == 1 and deletes <= set(sessions), (deletes, sessions)
    assert sessions[deletes.pop()] == {
        "role_arn": role,
        "external_id": "dbops-tenant",
        "session_name": f"dbops-{ns}-orphan-sweep",
        "tags": {
            "dbops.dev/namespace": ns,
            "dbops.dev/name": "orphan-sweep",
            "dbops.dev/kind": "OrphanSweep",
            "dbops.dev/requester": "dbops-operator",
        },
    }
    # The operator's own account: its database of the same name stands, with no final snapshot.
    assert rds.describe_db_instances(DBInstanceIdentifier=f"{ns}-copy")["DBInstances"]
    mine = rds.describe_db_snapshots(DBInstanceIdentifier=f"{ns}-copy")["DBSnapshots"]
    assert not [s for s in mine if "-final-" in s["DBSnapshotIdentifier"]]
