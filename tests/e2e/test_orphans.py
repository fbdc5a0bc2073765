"""The orphan sweep through the real API server: a database whose object vanished without its
finalizer running is found again (metric, audit record, log line) and, with DBOPS_ORPHANS=snapshot,
removed after the grace period with a final snapshot; a database kept on purpose (Retain) is not an
orphan, nor is one of a namespace this operator does not watch."""

from __future__ import annotations

from tests.e2e.obs_helpers import audit_rows, eventually, scrape, value
from tests.e2e.restore_helpers import dbrestore, tags, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator


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
