"""Tenancy against the real API server: two users with the built-in edit role in their own namespaces,
held to the DBPolicies of those namespaces at admission (the refusal in kubectl's output and in the
audit trail) and at every pass before any AWS call, with zero create calls in the fake AWS for anything
refused; limits that make the extra object wait, then run; policies that never touch what exists; a
webhook that is down blocking nothing; and bad policies refused at admission, naming the field."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from dbops import webhook
from tests.e2e.obs_helpers import audit_rows, eventually
from tests.e2e.restore_helpers import dbattach, dbrestore, ready, wait_phase
from tests.e2e.tenancy_helpers import creates, install_user_roles, start_enforcing, tag_snapshot, team_namespace
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import Cluster, free_port
from tests.support.operator import Operator

Policies = Callable[..., str]


def refused(proc: Any, *words: str) -> bool:
    """kubectl's apply failed, the API server saying the webhook denied it, in these words."""
    return proc.returncode != 0 and "denied the request" in proc.stderr and all(w in proc.stderr for w in words)


@pytest.fixture
def teams(cluster: Cluster, fake_aws: FakeAWS) -> tuple[str, str]:
    """alice edits namespace A, bob namespace B; what they may restore is in the fake AWS."""
    install_user_roles(cluster)
    ns_a, ns_b = team_namespace(cluster, "alice", "ta"), team_namespace(cluster, "bob", "tb")
    rds = fake_aws.client("rds")
    seed_instance(rds, f"{ns_a}-orders", snapshot_identifier=f"{ns_a}-snap")
    seed_instance(rds, f"{ns_b}-orders", snapshot_identifier=f"{ns_b}-snap")
    tag_snapshot(rds, f"{ns_b}-snap", env="staging")
    seed_instance(rds, f"{ns_b}-legacy", snapshot_identifier=f"{ns_b}-untagged")  # no env tag
    seed_instance(rds, "prod-orders", snapshot_identifier="prod-orders-snap", tags={"env": "prod"})
    seed_cluster(rds, "shared-orders")  # not restored by either team
    return ns_a, ns_b


def team_policies(policies: Policies, ns_a: str, ns_b: str) -> tuple[str, str]:
    """B's by label, with rules at admission and on AWS; A's by name, with the default attach rule."""
    pb = policies(
        f"pb-{ns_b}",
        namespaceSelector={"matchLabels": {"dbops-test/team": ns_b}},
        sources={"dbSnapshots": ["{namespace}-*"], "requiredTags": {"env": "staging"}},
        targets={"identifierPattern": "{namespace}-*", "publiclyAccessible": False, "tags": {"cost-centre": "b"}},
        attach={"clusters": ["{namespace}-*"]},
        limits={"restoresInFlight": 1},
    )
    pa = policies(
        f"pa-{ns_a}",
        namespaces=[ns_a],
        sources={"dbSnapshots": ["{namespace}-*"]},
        targets={"identifierPattern": "{namespace}-*"},
    )
    return pa, pb


def test_two_teams_are_held_to_their_policies_at_admission_and_before_any_aws_call(
    cluster: Cluster,
    own_operator: Operator,
    fake_aws: FakeAWS,
    teams: tuple[str, str],
    policies: Policies,
    admission_webhook: dict[str, str],
) -> None:
    ns_a, ns_b = teams
    _, pb = team_policies(policies, ns_a, ns_b)
    fake_aws.configure(create_seconds=6)
    start_enforcing(own_operator, fake_aws, [ns_a, ns_b], **admission_webhook, DBOPS_AUDIT_RETRY_INTERVAL="1")
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"

    # --- refused at admission: in kubectl apply's output, naming the field, the policy, what it allows ------
    by_b = f"DBPolicy {pb}"
    other = cluster.apply(dbrestore("theirs", ns_b, {"dbSnapshot": f"{ns_a}-snap"}, f"{ns_b}-x"), "bob", check=False)
    assert refused(other, f"spec.source.dbSnapshot: DB snapshot {ns_a}-snap is not allowed by {by_b}", f"{ns_b}-*")
    prod = cluster.apply(dbrestore("prod", ns_b, {"dbSnapshot": "prod-orders-snap"}, "prod-copy"), "bob", check=False)
    assert refused(prod, "DB snapshot prod-orders-snap is not allowed", "spec.target.identifier: identifier prod-copy")
    public = dbrestore(
        "public", ns_b, {"dbSnapshot": f"{ns_b}-snap"}, {"identifier": f"{ns_b}-p", "publiclyAccessible": True}
    )
    assert refused(
        cluster.apply(public, "bob", check=False), "spec.target.publiclyAccessible: true is not allowed", by_b
    )
    attach = dbattach("theirs", ns_b, {"dbCluster": f"{ns_a}-cluster"}, identifier=f"{ns_b}-reader")
    assert refused(cluster.apply(attach, "bob", check=False), f"spec.cluster.dbCluster: cluster {ns_a}-cluster", by_b)
    # Nor may bob write himself a policy: DBPolicy is cluster-scoped, and edit gives none.
    mine = {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DBPolicy",
        "metadata": {"name": f"bob-{ns_b}"},
        "spec": {"namespaces": [ns_b]},
    }
    forbidden = cluster.apply(mine, "bob", check=False)
    assert forbidden.returncode != 0 and "forbidden" in forbidden.stderr.lower(), forbidden.stderr
    assert cluster.kubectl("get", "dbrestores,dbattaches", "-n", ns_b, "-o", "name").stdout.split() == []

    # --- what needs AWS, at the first pass, before any create call: Failed, PolicyViolation ----------------
    untagged = dbrestore("untagged", ns_b, {"dbSnapshot": f"{ns_b}-untagged"}, f"{ns_b}-u")
    cluster.apply(untagged, "bob")
    failed = wait_phase(cluster, "untagged", ns_b, "Failed", timeout=60)
    assert ready(failed)["reason"] == "PolicyViolation"
    assert f"lacks the tags env=staging that {by_b} requires" in ready(failed)["message"]
    shared = dbattach("shared", ns_a, {"dbCluster": "shared-orders"}, identifier=f"{ns_a}-reader")
    cluster.apply(shared, "alice")  # A's policy sets no attach rules: only clusters A restored may get readers
    failed = cluster.wait_for("dbattach", "shared", ns_a, lambda o: (o.get("status") or {}).get("phase") == "Failed")
    assert ready(failed)["reason"] == "PolicyViolation"
    assert f"only clusters restored by a DBRestore of namespace {ns_a}" in ready(failed)["message"]
    assert creates(fake_aws) == {}

    # --- the in-flight limit: the second waits (Pending, QuotaExceeded), then runs -------------------------
    cluster.apply(
        dbrestore("first", ns_b, {"dbSnapshot": f"{ns_b}-snap"}, f"{ns_b}-one", deletionPolicy="Delete"), "bob"
    )
    wait_phase(cluster, "first", ns_b, "Restoring")
    time.sleep(1.1)  # a later creationTimestamp: the line is in creation order
    cluster.apply(
        dbrestore("second", ns_b, {"dbSnapshot": f"{ns_b}-snap"}, f"{ns_b}-two", deletionPolicy="Delete"), "bob"
    )
    waiting = cluster.wait_for(
        "dbrestore", "second", ns_b, lambda o: (ready(o) if o.get("status") else {}).get("reason") == "QuotaExceeded"
    )
    assert waiting["status"]["phase"] == "Pending"
    assert f"1 restores in flight in namespace {ns_b}, and {by_b} allows 1 at once" in ready(waiting)["message"]
    assert creates(fake_aws) == {"RestoreDBInstanceFromDBSnapshot": 1}
    wait_phase(cluster, "first", ns_b, "Available", timeout=60)
    wait_phase(cluster, "second", ns_b, "Available", timeout=60)
    assert creates(fake_aws) == {"RestoreDBInstanceFromDBSnapshot": 2}
    db = fake_aws.client("rds").describe_db_instances(DBInstanceIdentifier=f"{ns_b}-two")["DBInstances"][0]
    assert {t["Key"]: t["Value"] for t in db["TagList"]}["cost-centre"] == "b"  # the policy's tags, merged

    # --- a policy change never touches what exists ---------------------------------------------------------
    tighter = {"spec": {"sources": {"dbSnapshots": []}, "targets": {"instanceClasses": ["db.x2g.none"]}}}
    cluster.kubectl("patch", "dbpolicy", pb, "--type=merge", "-p", json.dumps(tighter))
    status = cluster.wait_for(
        "dbpolicy", pb, "default", lambda o: (o.get("status") or {}).get("observedGeneration") == 2, what="applied"
    )["status"]
    assert status["namespaces"] == [ns_b] and status["namespaceCount"] == 1 and status["appliedAt"]
    time.sleep(12)  # two resyncs of the settled objects
    for name in ("first", "second"):
        assert cluster.get("dbrestore", name, ns_b)["status"]["phase"] == "Available"
    assert not {a for a in fake_aws.calls() if a.startswith(("Delete", "Modify"))}
    # ...while a new request meets it at once.
    late = cluster.apply(dbrestore("late", ns_b, {"dbSnapshot": f"{ns_b}-snap"}, f"{ns_b}-late"), "bob", check=False)
    assert refused(late, f"DB snapshot {ns_b}-snap is not allowed by {by_b}: it allows DB snapshots none")

    # --- every refusal is in the audit trail, with its requester ------------------------------------------------
    def trail() -> list[dict[str, Any]] | None:
        rows = audit_rows(url, "-n", ns_b)
        return rows if len([r for r in rows if r["action"] == "create-refused"]) == 5 else None

    rows = eventually(trail, timeout=30, what="the refusals in the audit trail")
    refusals = [r for r in rows if r["action"] == "create-refused"]
    assert {r["name"] for r in refusals} == {"theirs", "prod", "public", "late"}  # theirs: a restore and an attach
    assert all(
        r["requester"] == "bob" and r["requester_verified"] and r["reason"] == "PolicyViolation" for r in refusals
    )
    assert all(by_b in r["message"] for r in refusals)
    failures = [r for r in rows if r["action"] == "failed" and r["name"] == "untagged"]
    assert [(r["reason"], r["requester"]) for r in failures] == [("PolicyViolation", "bob")]
    assert [r["action"] for r in audit_rows(url, "-n", ns_a) if r["name"] == "shared"].count("failed") == 1
    assert creates(fake_aws) == {"RestoreDBInstanceFromDBSnapshot": 2}  # none for anything refused


def test_with_the_webhook_down_every_pass_still_applies_the_policies(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, teams: tuple[str, str], policies: Policies
) -> None:
    """The webhook may be off or down: a configuration pointing at nobody blocks no request (not even a
    finalizer's removal), and the operator (no webhook) fails each violating object before any AWS call."""
    ns_a, ns_b = teams
    _, pb = team_policies(policies, ns_a, ns_b)
    nowhere = webhook.configuration({"url": f"https://127.0.0.1:{free_port()}"}, b"not a certificate")
    cluster.apply(nowhere)
    try:
        unselected = cluster.create_namespace("tc")
        start_enforcing(own_operator, fake_aws, [ns_a, ns_b, unselected])
        begun = time.monotonic()
        for name, source, target in (
            ("theirs", {"dbSnapshot": f"{ns_a}-snap"}, f"{ns_b}-x"),
            ("prod", {"dbSnapshot": "prod-orders-snap"}, f"{ns_b}-prod"),
            ("public", {"dbSnapshot": f"{ns_b}-snap"}, {"identifier": f"{ns_b}-p", "publiclyAccessible": True}),
        ):
            cluster.apply(dbrestore(name, ns_b, source, target), "bob")  # admitted: nobody answers the webhook
        cluster.apply(dbattach("theirs", ns_b, {"dbCluster": f"{ns_a}-cluster"}, identifier=f"{ns_b}-r"), "bob")
        cluster.apply(dbrestore("nobody", unselected, {"dbSnapshot": f"{ns_b}-snap"}, "anything"))
        assert time.monotonic() - begun < 20  # an unanswered webhook is not waited on for long
        for name, words in (
            ("theirs", f"DB snapshot {ns_a}-snap is not allowed by DBPolicy {pb}"),
            ("prod", "DB snapshot prod-orders-snap is not allowed"),
            ("public", "spec.target.publiclyAccessible: true is not allowed"),
        ):
            obj = wait_phase(cluster, name, ns_b, "Failed")
            assert ready(obj)["reason"] == "PolicyViolation" and words in ready(obj)["message"], ready(obj)
        obj = cluster.wait_for("dbattach", "theirs", ns_b, lambda o: (o.get("status") or {}).get("phase") == "Failed")
        assert f"cluster {ns_a}-cluster is not allowed by DBPolicy {pb}" in ready(obj)["message"]
        nobody = wait_phase(cluster, "nobody", unselected, "Failed")
        assert f"no DBPolicy selects namespace {unselected}" in ready(nobody)["message"]
        assert creates(fake_aws) == {}
        # With no operator at all: deletion, and a cluster admin's removal of the finalizer that holds the
        # object, go through the unanswered webhook too.
        own_operator.stop()
        held = ["--type=merge", "-p", '{"metadata":{"finalizers":["dbops.dev/finalizer"]}}']
        cluster.kubectl("patch", "dbrestore", "nobody", "-n", unselected, *held)
        cluster.kubectl("delete", "dbrestore", "nobody", "-n", unselected, "--wait=false")
        assert cluster.get("dbrestore", "nobody", unselected)["metadata"]["deletionTimestamp"]
        let_go = ["--type=merge", "-p", '{"metadata":{"finalizers":null}}']
        cluster.kubectl("patch", "dbrestore", "nobody", "-n", unselected, *let_go)
        assert cluster.kubectl("get", "dbrestore", "nobody", "-n", unselected, check=False).returncode != 0
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", webhook.CONFIGURATION, "--ignore-not-found")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"namespaces": ["x"], "sources": {"dbSnaphsots": ["a"]}}, 'unknown field "spec.sources.dbSnaphsots"'),
        (
            {"namespaces": ["x"], "sources": {"dbSnapshots": ["Prod-[0-9]"]}},
            "each of spec.sources.dbSnapshots must be a pattern",
        ),
        (
            {"namespaces": ["x"], "targets": {"identifierPattern": "{ns}-*"}},
            "spec.targets.identifierPattern must be a pattern",
        ),
        (
            {"namespaces": ["x"], "aws": {"roleArn": "arn:aws:iam::123:user/me"}},
            "spec.aws.roleArn must be an IAM role ARN",
        ),
        (
            {"namespaces": ["x"], "aws": {"roleArn": "arn:aws:iam::123456789012:role/r", "externalId": "x"}},
            "spec.aws.externalId must be 2 to 1224",
        ),
        (
            {"namespaces": ["x"], "targets": {"publiclyAccessible": True}},
            "spec.targets.publiclyAccessible can only be false",
        ),
        (
            {"namespaces": ["x"], "targets": {"deletionProtection": True, "maxTTL": "1d"}},
            "spec.targets.deletionProtection contradicts",
        ),
        ({"namespaces": ["x"], "targets": {"maxTTL": "5m"}}, "spec.targets.maxTTL must be at least 10m"),
        ({"namespaces": ["x"], "limits": {"restoresInFlight": 0}}, "spec.limits.restoresInFlight"),
        ({"sources": {}}, "spec must set namespaceSelector, namespaces or both"),
        (
            {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["a"]}]}},
            "must list values with In and NotIn",
        ),
        ({"namespaces": ["Team_B"]}, "each of spec.namespaces must be a namespace name"),
    ],
)
def test_bad_policies_are_refused_at_admission_naming_the_field(
    cluster: Cluster, spec: dict[str, Any], words: str
) -> None:
    bad = {"apiVersion": "dbops.dev/v1alpha1", "kind": "DBPolicy", "metadata": {"name": "bad-policy"}, "spec": spec}
    proc = cluster.apply(bad, check=False)
    assert proc.returncode != 0 and words in proc.stderr, proc.stderr
    assert cluster.kubectl("get", "dbpolicy", "bad-policy", check=False).returncode != 0


def test_team_bs_calls_are_signed_with_its_assumed_role_and_a_namespace_without_one_uses_the_operators(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, teams: tuple[str, str], policies: Policies
) -> None:
    """B's policy names a role in B's own account: every call for B's restore is signed with the
    credentials of assuming it (ExternalId, session tags naming namespace, object and requester), and B's
    database is made in B's account; A has no role, so A's calls are the operator's own."""
    ns_a, ns_b = teams
    account_b, role = "222222222222", "arn:aws:iam::222222222222:role/dbops-team-b"
    policies(f"role-{ns_b}", namespaces=[ns_b], aws={"roleArn": role, "externalId": "dbops-team-b"})
    policies(f"plain-{ns_a}", namespaces=[ns_a])
    seed_instance(fake_aws.client("rds", account=account_b), f"{ns_b}-own", snapshot_identifier=f"{ns_b}-own-snap")
    start_enforcing(own_operator, fake_aws, [ns_a, ns_b])

    cluster.apply(dbrestore("b1", ns_b, {"dbSnapshot": f"{ns_b}-own-snap"}, f"{ns_b}-copy"), "bob")
    cluster.apply(dbrestore("a1", ns_a, {"dbSnapshot": f"{ns_a}-snap"}, f"{ns_a}-copy"), "alice")
    wait_phase(cluster, "b1", ns_b, "Available", timeout=60)
    wait_phase(cluster, "a1", ns_a, "Available", timeout=60)

    calls, sessions = fake_aws.signed()
    restores = [c["access_key"] for c in calls if c["action"] == "RestoreDBInstanceFromDBSnapshot"]
    assumed = [k for k in restores if k in sessions]
    assert len(restores) == 2 and len(assumed) == 1, (restores, sessions)
    (key_b,) = assumed
    assert sessions[key_b] == {
        "role_arn": role,
        "external_id": "dbops-team-b",
        "session_name": f"dbops-{ns_b}-b1",
        "tags": {
            "dbops.dev/namespace": ns_b,
            "dbops.dev/name": "b1",
            "dbops.dev/kind": "DBRestore",
            "dbops.dev/requester": "bob",  # stamped by the API server, so verified
        },
    }
    assert set(restores) - {key_b} == {"testing"}  # A's: the operator's own credentials
    # Whatever else was signed by an assumed role was for B (A's namespace never assumed one): B's
    # restore's, or the orphan sweep's reads of B's account (a session of its own, tagged with B's
    # namespace); the AssumeRole itself was the operator's own.
    assumed = [c for c in calls if c["access_key"] in sessions]
    assert {sessions[c["access_key"]]["tags"]["dbops.dev/namespace"] for c in assumed} == {ns_b}
    sweeps = [c for c in assumed if c["access_key"] != key_b]
    assert {sessions[c["access_key"]]["tags"]["dbops.dev/kind"] for c in sweeps} <= {"OrphanSweep"}
    assert {c["action"] for c in sweeps} <= {"DescribeDBInstances", "DescribeDBClusters"}, sweeps
    assert {c["access_key"] for c in calls if c["action"] == "AssumeRole"} == {"testing"}
    # B's database is in B's account, not the operator's.
    in_b = fake_aws.client("rds", account=account_b).describe_db_instances(DBInstanceIdentifier=f"{ns_b}-copy")
    assert in_b["DBInstances"][0]["DBInstanceStatus"] == "available"
    mine = fake_aws.client("rds").describe_db_instances(
        Filters=[{"Name": "db-instance-id", "Values": [f"{ns_b}-copy"]}]
    )
    assert mine["DBInstances"] == []


def test_a_namespace_at_its_in_flight_limit_holds_back_only_itself_and_its_line_keeps_creation_order(
    cluster: Cluster,
    own_operator: Operator,
    fake_aws: FakeAWS,
    teams: tuple[str, str],
    policies: Policies,
    admission_webhook: dict[str, str],
) -> None:
    """Two teams on one operator: bob's namespace may restore one database at a time, alice's five. Bob
    applies three at once, then alice two: bob's run one after the other, in creation order (the names
    break the tie of one second), each waiting (Pending, QuotaExceeded, its place in line said); alice's
    start at once, never in bob's line."""
    ns_a, ns_b = teams
    pb = policies(f"one-{ns_b}", namespaces=[ns_b], limits={"restoresInFlight": 1})
    policies(f"five-{ns_a}", namespaces=[ns_a], limits={"restoresInFlight": 5})
    create_seconds = 4.0
    fake_aws.configure(create_seconds=create_seconds)
    start_enforcing(own_operator, fake_aws, [ns_a, ns_b], **admission_webhook)

    def many(ns: str, user: str, prefix: str, count: int) -> list[str]:
        snap = {"dbSnapshot": f"{ns}-snap"}
        names = [f"{prefix}{i}" for i in range(1, count + 1)]
        docs = [dbrestore(n, ns, snap, f"{ns}-{n}", deletionPolicy="Delete") for n in names]
        cluster.apply(yaml.safe_dump_all(docs), user)
        return names

    bobs = many(ns_b, "bob", "b", 3)
    alices = many(ns_a, "alice", "a", 2)
    third = cluster.wait_for(
        "dbrestore",
        "b3",
        ns_b,
        lambda o: "ahead of it in line" in (ready(o) if o.get("status") else {}).get("message", ""),
    )
    assert third["status"]["phase"] == "Pending" and ready(third)["reason"] == "QuotaExceeded"
    assert re.search(f"and DBPolicy {pb} allows 1 at once; [12] ahead of it in line$", ready(third)["message"])
    for name in bobs:
        wait_phase(cluster, name, ns_b, "Available", timeout=120)
    for name in alices:
        wait_phase(cluster, name, ns_a, "Available", timeout=60)
    assert creates(fake_aws) == {"RestoreDBInstanceFromDBSnapshot": 5}

    rds = fake_aws.client("rds")
    called = {
        db["DBInstanceIdentifier"]: db["InstanceCreateTime"].timestamp()
        for db in rds.describe_db_instances()["DBInstances"]
        if db["DBInstanceIdentifier"].startswith((f"{ns_a}-a", f"{ns_b}-b"))
    }
    b1, b2, b3 = (called[f"{ns_b}-{n}"] for n in bobs)
    # One at a time: each restore call waits for the one before it to be available in RDS.
    assert b1 < b2 < b3, called
    assert b2 - b1 >= create_seconds * 0.9 and b3 - b2 >= create_seconds * 0.9, called
    # Alice's were not held behind bob's line: both were called before bob's second.
    assert all(called[f"{ns_a}-{n}"] < b2 for n in alices), called
    for name in alices:
        assert "QuotaExceeded" not in {e.get("reason") for e in cluster.events(ns_a, name)}


def test_forced_settings_ttl_rules_and_the_databases_owned_limit(
    cluster: Cluster,
    own_operator: Operator,
    fake_aws: FakeAWS,
    teams: tuple[str, str],
    policies: Policies,
    admission_webhook: dict[str, str],
) -> None:
    """B's policy forces its network, deletion protection and a tag, and lets B own one database at a
    time; A is a preview namespace (ttl required, at most 1h). Each rule refuses at admission what breaks
    it, and the created database carries what the policy forces, not what the source had."""
    ns_a, ns_b = teams
    rds = fake_aws.client("rds")
    net = seed_instance(rds, f"{ns_b}-net", snapshot_identifier=f"{ns_b}-net-snap")  # the network B must use
    pb = policies(
        f"forced-{ns_b}",
        namespaces=[ns_b],
        targets={
            "dbSubnetGroupName": net.subnet_group,
            "vpcSecurityGroupIds": net.security_group_ids,
            "deletionProtection": True,
            "tags": {"cost-centre": "b"},
        },
        limits={"databasesOwned": 1},
    )
    pa = policies(f"preview-{ns_a}", namespaces=[ns_a], targets={"ttlRequired": True, "maxTTL": "1h"})
    start_enforcing(own_operator, fake_aws, [ns_a, ns_b], **admission_webhook)
    snap_a, snap_b = {"dbSnapshot": f"{ns_a}-snap"}, {"dbSnapshot": f"{ns_b}-snap"}

    # --- at admission, one refusal per rule -------------------------------------------------------------
    no_ttl = cluster.apply(dbrestore("nottl", ns_a, snap_a, f"{ns_a}-c"), "alice", check=False)
    assert refused(no_ttl, f"spec.ttl: is required by DBPolicy {pa} (at most 1h)")
    too_long = cluster.apply(
        dbrestore("long", ns_a, snap_a, f"{ns_a}-c", ttl="2h", deletionPolicy="Delete"), "alice", check=False
    )
    assert refused(too_long, f"spec.ttl: 2h is not allowed by DBPolicy {pa}: it allows at most 1h")
    deleting = dbrestore("del", ns_b, snap_b, f"{ns_b}-d", deletionPolicy="Delete")
    assert refused(
        cluster.apply(deleting, "bob", check=False), f"spec.deletionPolicy: Delete is not allowed by DBPolicy {pb}"
    )
    elsewhere = dbrestore(
        "net", ns_b, snap_b, {"identifier": f"{ns_b}-n", "dbSubnetGroupName": f"{ns_b}-orders-subnets"}
    )
    assert refused(
        cluster.apply(elsewhere, "bob", check=False),
        f"spec.target.dbSubnetGroupName: {ns_b}-orders-subnets is not allowed by DBPolicy {pb}",
        f"{net.subnet_group} only",
    )
    unprotected = dbrestore("unprot", ns_b, snap_b, {"identifier": f"{ns_b}-u", "deletionProtection": False})
    assert refused(cluster.apply(unprotected, "bob", check=False), "spec.target.deletionProtection: false")
    tagged = dbrestore("tag", ns_b, snap_b, {"identifier": f"{ns_b}-t", "tags": {"cost-centre": "a"}})
    assert refused(cluster.apply(tagged, "bob", check=False), "spec.target.tags.cost-centre: a is not allowed")
    assert creates(fake_aws) == {}

    # --- a ttl within bounds is admitted: the preview namespace works --------------------------------------
    cluster.apply(dbrestore("ok", ns_a, snap_a, f"{ns_a}-ok", ttl="30m", deletionPolicy="Delete"), "alice")
    wait_phase(cluster, "ok", ns_a, "Available", timeout=90)

    # --- what B leaves out, the policy fills in: its network, deletion protection, its tag ------------------
    cluster.apply(dbrestore("first", ns_b, snap_b, f"{ns_b}-one"), "bob")
    wait_phase(cluster, "first", ns_b, "Available", timeout=90)
    db = rds.describe_db_instances(DBInstanceIdentifier=f"{ns_b}-one")["DBInstances"][0]
    assert db["DBSubnetGroup"]["DBSubnetGroupName"] == net.subnet_group  # not the source's {ns_b}-orders-subnets
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == net.security_group_ids
    assert db["DeletionProtection"] is True
    assert {t["Key"]: t["Value"] for t in db["TagList"]}["cost-centre"] == "b"

    # --- the databases-owned limit: the second waits, never failed, and runs once room frees ---------------
    cluster.apply(dbrestore("second", ns_b, snap_b, f"{ns_b}-two"), "bob")
    waiting = cluster.wait_for(
        "dbrestore", "second", ns_b, lambda o: (ready(o) if o.get("status") else {}).get("reason") == "QuotaExceeded"
    )
    assert waiting["status"]["phase"] == "Pending"
    assert f"namespace {ns_b} owns 1 databases, and DBPolicy {pb} allows 1" in ready(waiting)["message"]
    assert creates(fake_aws) == {"RestoreDBInstanceFromDBSnapshot": 2}  # A's preview and B's first
    cluster.kubectl("delete", "dbrestore", "first", "-n", ns_b)  # Retain: its database is no longer B's
    wait_phase(cluster, "second", ns_b, "Available", timeout=90)
    assert creates(fake_aws) == {"RestoreDBInstanceFromDBSnapshot": 3}
