"""The DBPolicy verdicts (dbops.policy): selection, each rule, how policies combine, what AWS says, the
create calls, the limits and the AWS identity. Pure functions: no API server, no AWS."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from dbops.attach import tenancy as attach_tenancy
from dbops.core.types import KIND_TAG, NAMESPACE_TAG, Call, SpecError
from dbops.models import DBAttachSpec, DBPolicySpec, DBRestoreSpec
from dbops.policy import quota, rules, select
from dbops.policy.request import Found
from dbops.policy.store import Tenancy, session_name, tag_value
from dbops.restore import tenancy as restore_tenancy
from dbops.restore.plan import Source
from dbops.restore.source import source_ref

NS = "team-b"


def policy(name: str = "p", **spec: Any) -> rules.Policy:
    return rules.Policy(name, DBPolicySpec.model_validate({"namespaces": [NS], **spec}))


def restore(**spec: Any) -> DBRestoreSpec:
    body = {"source": {"dbSnapshot": "team-b-nightly"}, "target": {"identifier": "team-b-copy"}, **spec}
    return DBRestoreSpec.model_validate(body)


def asked(**spec: Any) -> Any:
    return restore_tenancy.request(restore(**spec), NS, "us-east-1")


def attach(**spec: Any) -> Any:
    body = {"cluster": {"dbCluster": "team-b-orders"}, "identifierPrefix": "team-b-reader", **spec}
    return attach_tenancy.request(DBAttachSpec.model_validate(body), NS, "us-east-1")


# --- patterns and selection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "value", "ok"),
    [
        ("{namespace}-*", "team-b-copy", True),
        ("{namespace}-*", "team-a-copy", False),
        ("{namespace}-*", "team-b", False),
        ("staging-?", "staging-1", True),
        ("staging-?", "staging-10", False),
        ("db.t4g.*", "db.t4g.medium", True),
        ("db.t4g.*", "db.t4gxmedium", False),  # a period is a period, not "any character"
        ("rds:{namespace}-*", "rds:team-b-2026-11-30", True),
        ("*", "anything", True),
    ],
)
def test_patterns_are_globs_with_the_namespace(pattern: str, value: str, ok: bool) -> None:
    assert rules.matches(pattern, value, NS) is ok


def test_a_policy_selects_by_name_or_by_labels() -> None:
    by_label = DBPolicySpec.model_validate(
        {
            "namespaceSelector": {
                "matchLabels": {"tier": "preview"},
                "matchExpressions": [{"key": "team", "operator": "In", "values": ["b", "c"]}],
            }
        }
    )
    assert select.selects(by_label, "x", {"tier": "preview", "team": "b"})
    assert not select.selects(by_label, "x", {"tier": "preview", "team": "a"})
    assert not select.selects(by_label, "x", {"team": "b"})
    everything = DBPolicySpec.model_validate({"namespaceSelector": {}})
    assert select.selects(everything, "any", {})
    by_name = DBPolicySpec.model_validate({"namespaces": ["team-b"]})
    assert select.selects(by_name, "team-b", {}) and not select.selects(by_name, "team-c", {})
    not_prod = DBPolicySpec.model_validate(
        {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}}
    )
    assert select.selects(not_prod, "x", {}) and not select.selects(not_prod, "x", {"env": "prod"})


# --- at admission -----------------------------------------------------------------------------------------


def test_a_good_request_has_no_violation() -> None:
    p = policy(
        sources={"dbSnapshots": ["{namespace}-*"], "regions": ["us-east-1"]},
        targets={"identifierPattern": "{namespace}-*", "publiclyAccessible": False, "instanceClasses": ["db.t4g.*"]},
    )
    assert rules.judge([p], asked(target={"identifier": "team-b-copy", "dbInstanceClass": "db.t4g.small"})) == []


def test_each_rule_names_the_field_the_policy_and_what_it_allows() -> None:
    p = policy(
        "team-b",
        sources={"dbSnapshots": ["{namespace}-*"], "regions": ["eu-west-1"]},
        targets={
            "identifierPattern": "{namespace}-*",
            "publiclyAccessible": False,
            "instanceClasses": ["db.t4g.*"],
            "dbSubnetGroupName": "team-b-private",
            "tags": {"cost-centre": "1234"},
            "maxTTL": "72h",
        },
    )
    target = {
        "identifier": "orders-copy",
        "publiclyAccessible": True,
        "dbInstanceClass": "db.r6g.4xlarge",
        "dbSubnetGroupName": "public-subnets",
        "tags": {"cost-centre": "9999"},
    }
    found = rules.judge(
        [p], asked(source={"dbSnapshot": "prod-orders-nightly"}, target=target, ttl="30d", deletionPolicy="Delete")
    )
    by = "is not allowed by DBPolicy team-b: it allows"
    assert found == [
        f"spec.source.dbSnapshot: DB snapshot prod-orders-nightly {by} DB snapshots team-b-*",
        f"spec.region: region us-east-1 {by} regions eu-west-1",
        f"spec.target.identifier: identifier orders-copy {by} identifiers matching team-b-*",
        f"spec.target.dbInstanceClass: db.r6g.4xlarge {by} instance classes db.t4g.*",
        f"spec.target.publiclyAccessible: true {by} false only (no public databases)",
        f"spec.target.dbSubnetGroupName: public-subnets {by} team-b-private only (leave it out)",
        f"spec.target.tags.cost-centre: 9999 {by} 1234 only (leave the tag out)",
        f"spec.ttl: 30d {by} at most 72h",
    ]


def test_sources_by_arn_endpoint_and_kind() -> None:
    p = policy(sources={"dbSnapshots": ["{namespace}-*"], "dbInstances": ["staging-*"], "dbClusters": []})
    arn = "arn:aws:rds:us-east-1:123456789012:snapshot:prod-nightly"
    (v,) = rules.judge([p], asked(source={"dbSnapshot": arn}))
    assert v.startswith("spec.source.dbSnapshot: DB snapshot prod-nightly is not allowed")
    host = "orders.abc123.us-east-1.rds.amazonaws.com"
    (v,) = rules.judge([p], asked(source={"latestSnapshot": {"endpoint": host}}))
    assert v.startswith("spec.source.latestSnapshot.endpoint: DB instance orders is not allowed")
    # An empty list allows none; a custom endpoint's cluster is known only from AWS (judged then).
    (v,) = rules.judge(
        [p], asked(source={"pointInTime": {"dbCluster": "staging-1"}}, target={"identifier": "team-b-x"})
    )
    assert "Aurora cluster staging-1 is not allowed" in v and v.endswith("it allows Aurora clusters none")
    custom = "reporting.cluster-custom-abc123.us-east-1.rds.amazonaws.com"
    assert rules.judge([p], asked(source={"latestSnapshot": {"endpoint": custom}})) == []


def test_deletion_protection_and_ttl_rules() -> None:
    protect = policy("keep", targets={"deletionProtection": True})
    assert rules.judge([protect], asked()) == []
    found = rules.judge(
        [protect], asked(target={"identifier": "team-b-copy", "deletionProtection": False}, deletionPolicy="Delete")
    )
    assert [v.split(":")[0] for v in found] == ["spec.target.deletionProtection", "spec.deletionPolicy"]
    preview = policy("preview", targets={"ttlRequired": True, "maxTTL": "2d"})
    (v,) = rules.judge([preview], asked())
    assert v == "spec.ttl: is required by DBPolicy preview (at most 2d): the namespace is for previews"
    assert rules.judge([preview], asked(ttl="1d12h", deletionPolicy="Delete")) == []


def test_attach_rules() -> None:
    p = policy("team-b", attach={"clusters": ["{namespace}-*"], "maxReaders": 2}, targets={"publiclyAccessible": False})
    assert rules.judge([p], attach(count=2)) == []
    found = rules.judge([p], attach(cluster={"dbCluster": "team-a-orders"}, count=3, publiclyAccessible=True))
    by = "is not allowed by DBPolicy team-b: it allows"
    assert found == [
        f"spec.publiclyAccessible: true {by} false only (no public databases)",
        f"spec.cluster.dbCluster: cluster team-a-orders {by} clusters team-b-*",
        f"spec.count: 3 readers {by} at most 2",
    ]
    # The cluster of a DBRestore is known only from AWS: nothing to say about it yet.
    assert rules.judge([p], attach(cluster={"dbRestoreRef": "orders"})) == []


def test_several_policies_combine_so_that_the_most_restrictive_wins() -> None:
    broad = policy("broad", sources={"dbSnapshots": ["*"]}, targets={"maxTTL": "30d"}, limits={"restoresInFlight": 5})
    narrow = policy(
        "narrow", sources={"dbSnapshots": ["{namespace}-*"]}, targets={"maxTTL": "1d"}, limits={"restoresInFlight": 2}
    )
    found = rules.judge([broad, narrow], asked(source={"dbSnapshot": "other-x"}, ttl="3d", deletionPolicy="Delete"))
    assert [v.split(" is not allowed by DBPolicy ")[1].split(":")[0] for v in found] == ["narrow", "narrow"]
    assert rules.limits([broad, narrow]) == rules.Limits((2, "narrow"), None)


def test_policies_that_force_different_values_refuse_until_settled() -> None:
    a = policy(
        "a",
        targets={"dbSubnetGroupName": "one", "tags": {"cost-centre": "1"}},
        aws={"roleArn": "arn:aws:iam::111111111111:role/x"},
    )
    b = policy(
        "b",
        targets={"dbSubnetGroupName": "two", "tags": {"cost-centre": "2"}},
        aws={"roleArn": "arn:aws:iam::222222222222:role/x"},
    )
    found = rules.conflicts([a, b], asked())
    assert [v.split(":")[0] for v in found] == [
        "spec.target.dbSubnetGroupName",
        "spec.target.tags.cost-centre",
        "metadata.namespace",
    ]
    assert all("DBPolicies disagree (a sets" in v for v in found)


# --- what AWS says, before the create calls ---------------------------------------------------------------


def test_required_tags_engines_and_encryption_are_judged_on_the_fresh_read() -> None:
    p = policy(
        "team-b",
        sources={"requiredTags": {"env": "staging"}, "dbInstances": ["staging-*"]},
        targets={"engines": ["postgres"], "storageEncrypted": True},
    )
    spec = restore()
    snap = {
        "DBSnapshotIdentifier": "team-b-nightly",
        "DBInstanceIdentifier": "prod-orders",
        "Engine": "mysql",
        "Encrypted": False,
        "TagList": [{"Key": "env", "Value": "prod"}],
    }
    found = restore_tenancy.found(Source(source_ref(spec, "us-east-1"), source_id="prod-orders", snapshot=snap))
    verdict = rules.judge_found([p], asked(), found)
    snapshot, by = "spec.source.dbSnapshot: DB snapshot team-b-nightly", "DBPolicy team-b"
    assert verdict == [
        f"{snapshot} lacks the tags env=staging that {by} requires (it has env=prod)",
        f"{snapshot} is not encrypted, and {by} requires storage encryption",
        f"spec.source.dbSnapshot: engine mysql of DB snapshot team-b-nightly is not allowed by {by}: it allows "
        "engines postgres",
        f"spec.source.dbSnapshot: DB instance prod-orders is not allowed by {by}: it allows DB instances staging-*",
    ]


def test_by_default_only_clusters_restored_in_the_namespace_get_readers() -> None:
    p = policy("team-b")  # no attach rules: the default
    ours = {
        "Engine": "aurora-postgresql",
        "TagList": [{"Key": NAMESPACE_TAG, "Value": NS}, {"Key": KIND_TAG, "Value": "DBRestore"}],
    }
    theirs = {
        "Engine": "aurora-postgresql",
        "TagList": [{"Key": NAMESPACE_TAG, "Value": "team-a"}, {"Key": KIND_TAG, "Value": "DBRestore"}],
    }
    req = attach()
    assert rules.judge_found([p], req, attach_tenancy.found("team-b-orders", ours, "spec.cluster.dbCluster")) == []
    (v,) = rules.judge_found([p], req, attach_tenancy.found("prod", theirs, "spec.cluster.dbCluster"))
    assert v == (
        "spec.cluster.dbCluster: cluster prod is not allowed by DBPolicy team-b: it allows only clusters restored by "
        "a DBRestore of namespace team-b (it sets no attach.clusters)"
    )
    tagged = policy("shared", attach={"clusterTags": {"shared": "yes"}})
    assert rules.judge_found([tagged], req, [Found("cluster", "cluster", "x", "f", {"shared": "yes"})]) == []


def test_the_create_calls_are_the_last_word() -> None:
    p = policy(
        "team-b",
        targets={
            "instanceClasses": ["db.t4g.*"],
            "dbSubnetGroupName": "private",
            "tags": {"cost-centre": "1"},
            "identifierPattern": "{namespace}-*",
        },
    )
    copied = Call(
        "restore_db_instance_from_db_snapshot",
        {
            "DBInstanceIdentifier": "team-b-copy",
            "DBInstanceClass": "db.r6g.8xlarge",
            "DBSubnetGroupName": "prod",
            "Tags": [],
        },
    )
    found = rules.judge_calls([p], asked(), [copied])
    assert [v.split(":")[0] for v in found] == [
        "spec.target.dbInstanceClass",
        "spec.target.dbSubnetGroupName",
        "spec.target.tags.cost-centre",
    ]
    assert "db.r6g.8xlarge (of team-b-copy)" in found[0] and "prod (copied from the source)" in found[1]
    delete = Call("delete_db_instance", {"DBInstanceIdentifier": "anything"})
    assert rules.judge_calls([p], asked(), [delete]) == []  # only creates are judged


def test_forced_settings_fill_what_the_request_leaves_out() -> None:
    p = policy(
        targets={
            "dbSubnetGroupName": "private",
            "vpcSecurityGroupIds": ["sg-0123abcd"],
            "deletionProtection": True,
            "tags": {"cost-centre": "1"},
        }
    )
    spec = restore_tenancy.with_forced(
        restore(target={"identifier": "team-b-copy", "tags": {"app": "orders"}}), rules.forced([p])
    )
    t = spec.target
    assert (t.db_subnet_group_name, t.vpc_security_group_ids, t.deletion_protection) == (
        "private",
        ["sg-0123abcd"],
        True,
    )
    assert t.tags == {"app": "orders", "cost-centre": "1"}
    readers = attach_tenancy.with_forced(
        DBAttachSpec.model_validate({"cluster": {"dbCluster": "c"}, "identifier": "r"}), rules.forced([p])
    )
    assert readers.tags == {"cost-centre": "1"}


# --- the store: enforce or open, identity ---------------------------------------------------------------------


def body(name: str, spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": generation}, "spec": spec, "status": {}}


def test_a_namespace_no_policy_selects_is_refused_when_enforced_and_allowed_when_open() -> None:
    enforced, open_ = Tenancy(enforce=True), Tenancy(enforce=False)
    with pytest.raises(SpecError) as err:
        enforced.admit(asked())
    assert err.value.reason == "PolicyViolation" and "no DBPolicy selects namespace team-b" in err.value.message
    open_.admit(asked())
    enforced.put_policy(body("b", {"namespaces": [NS]}))
    enforced.admit(asked())
    enforced.remove_policy("b")
    assert enforced.review(asked())


def test_selection_follows_namespace_labels() -> None:
    t = Tenancy()
    t.put_policy(body("previews", {"namespaceSelector": {"matchLabels": {"tier": "preview"}}}))
    assert t.policies_for(NS) == []
    t.put_namespace({"metadata": {"name": NS, "labels": {"tier": "preview"}}})
    assert [p.name for p in t.policies_for(NS)] == ["previews"]
    assert t.selections()["previews"][1] == [NS]
    t.put_namespace({"metadata": {"name": NS, "labels": {}}})
    assert t.policies_for(NS) == []


def test_the_identity_of_a_namespace_with_a_role() -> None:
    t = Tenancy()
    assert t.identity(NS, "DBRestore", "r", "bob") is None
    role = "arn:aws:iam::222222222222:role/dbops-team-b"
    t.put_policy(body("b", {"namespaces": [NS], "aws": {"roleArn": role, "externalId": "ext-b"}}))
    ident = t.identity(NS, "DBRestore", "orders", "bob")
    assert ident is not None and (ident.role_arn, ident.external_id) == (role, "ext-b")
    assert dict(ident.tags) == {
        "dbops.dev/namespace": NS,
        "dbops.dev/name": "orders",
        "dbops.dev/kind": "DBRestore",
        "dbops.dev/requester": "bob",
    }
    assert ident.session_name == "dbops-team-b-orders" and ident.scope.endswith(f"|{NS}")
    t.put_policy(body("c", {"namespaces": [NS], "aws": {"roleArn": "arn:aws:iam::333333333333:role/x"}}))
    with pytest.raises(SpecError, match="AWS roles"):
        t.identity(NS, "DBRestore", "orders", "bob")


def test_session_names_and_tag_values_are_what_iam_takes() -> None:
    long = session_name("n" * 63, "x" * 253)
    assert len(long) == 64 and long.startswith("dbops-nnn")
    assert tag_value("system:serviceaccount:ns:sa") == "system:serviceaccount:ns:sa"
    assert tag_value("o'brien#1" + "a" * 400) == ("o_brien_1" + "a" * 400)[:256]


# --- limits -------------------------------------------------------------------------------------------------------


def obj(name: str, created: str, kind: str = "DBRestore", **status: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "creationTimestamp": created},
        "status": status,
    }


def test_the_in_flight_limit_lets_objects_in_in_creation_order() -> None:
    limits = rules.Limits((1, "team-b"), None)
    flying = obj("a", "2026-01-01T00:00:00Z", phase="Restoring", restoreCallTime="t")
    first = obj("b", "2026-01-01T00:00:01Z", phase="Pending")
    second = obj("c", "2026-01-01T00:00:02Z", phase="Pending")
    want = quota.Grant("DBRestore", 1, restoring=True)
    everyone = [flying, first, second]
    assert quota.room(first, everyone, {}, limits, want) == (
        "1 restores in flight in namespace team-b, and DBPolicy team-b allows 1 at once"
    )
    done = obj("a", "2026-01-01T00:00:00Z", phase="Available", restoreCallTime="t")
    assert quota.room(second, [done, first, second], {}, limits, want) is not None  # b is ahead of it
    assert quota.room(first, [done, first, second], {}, limits, want) is None
    # Once b is granted (its status not written yet), c still waits: the grant counts as in flight.
    grants = {"uid-b": want}
    assert "1 restores in flight" in (quota.room(second, [done, first, second], grants, limits, want) or "")


def test_the_databases_owned_limit_counts_restores_and_readers() -> None:
    limits = rules.Limits(None, (3, "team-b"))
    held = [
        obj("a", "1", phase="Available", restoreCallTime="t"),
        obj("gone", "2", phase="Expired", restoreCallTime="t"),
        obj("readers", "3", kind="DBAttach", instances=[{"identifier": "r-1"}, {"identifier": "r-2"}]),
    ]
    me = obj("b", "4", phase="Pending")
    assert quota.room(me, [*held, me], {}, limits, quota.Grant("DBRestore", 1, True)) is not None
    assert quota.room(me, [*held[:2], me], {}, limits, quota.Grant("DBRestore", 1, True)) is None
    assert quota.settled(None, quota.Grant("DBRestore", 1, True))  # gone: the grant goes too


def test_policy_namespace_only_for_a_namespace_scoped_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """DBOPS_POLICY=namespace reads no DBPolicy: a cluster-wide operator with it would open every namespace."""
    from dbops.settings import Settings

    for name in ("DBOPS_POLICY", "DBOPS_CLUSTER_SCAN", "DBOPS_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    ok = Settings(policy="namespace", cluster_scan=False, namespace="team-a")
    assert ok.policy == "namespace"
    for bad, words in (
        ({"cluster_scan": True, "namespace": "team-a"}, "DBOPS_CLUSTER_SCAN=false"),
        ({"cluster_scan": False, "namespace": ""}, "DBOPS_NAMESPACE"),
        ({"cluster_scan": False, "namespace": "team-*"}, "DBOPS_NAMESPACE"),
        ({"cluster_scan": False, "namespace": "team-a,team-b"}, "DBOPS_NAMESPACE"),
    ):
        with pytest.raises(ValidationError, match=words):
            Settings(policy="namespace", **bad)
