"""Shared bits of the tenancy tests: teams of users with the built-in edit role in their own namespace,
and what the fake AWS was asked to create."""

from __future__ import annotations

from typing import Any

from tests.support.fakeaws_fixture import FakeAWS
from tests.support.kube import ROOT, Cluster
from tests.support.operator import Operator

# What a user holding `edit` in a namespace may do with dbops objects there: the built-in edit role, and
# the roles dbops ships for the built-in ones to aggregate (the test server runs no controller manager,
# so no aggregation happens: they are bound beside it, as aggregation would add them).
USER_ROLES = ("edit", "dbops-edit", "dbops-view")
CREATES = (
    "RestoreDBInstanceFromDBSnapshot",
    "RestoreDBInstanceToPointInTime",
    "RestoreDBClusterFromSnapshot",
    "RestoreDBClusterToPointInTime",
    "CreateDBInstance",
)


def install_user_roles(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "manifests" / "base" / "rbac-aggregated.yaml"))


def team_namespace(cluster: Cluster, user: str, prefix: str) -> str:
    """A namespace where `user` holds edit (and nothing else anywhere), labelled dbops-test/team=<name>."""
    namespace = cluster.create_namespace(prefix)
    cluster.kubectl("label", "namespace", namespace, f"dbops-test/team={namespace}")
    for role in USER_ROLES:
        binding = f"--clusterrole={role}"
        cluster.kubectl("create", "rolebinding", f"{user}-{role}", "-n", namespace, binding, f"--user={user}")
    return namespace


def creates(fake: FakeAWS) -> dict[str, int]:
    """The create calls the fake AWS received (restores, instances)."""
    return {action: n for action, n in fake.calls().items() if action in CREATES}


def tag_snapshot(rds: Any, snapshot: str, **tags: str) -> None:
    """A snapshot's own tags (what DBPolicy sources.requiredTags looks at for a named snapshot)."""
    arn = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot)["DBSnapshots"][0]["DBSnapshotArn"]
    rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def start_enforcing(operator: Operator, fake: FakeAWS, namespaces: list[str], **env: str) -> None:
    """The shared operator for these namespaces with the policies enforced (and `env`: the webhook's
    settings, say), started with the fake AWS's call log emptied, so that a test counts only its own."""
    operator.env.update(env, DBOPS_NAMESPACE=",".join(namespaces), DBOPS_POLICY="enforce")
    operator.start()
    fake.reset_calls()
