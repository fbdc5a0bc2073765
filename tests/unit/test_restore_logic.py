"""The DBRestore decisions, without any server: spec + what RDS reported -> calls and status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbops.core import types
from dbops.core.types import Call, SpecError
from dbops.models import TARGET_KIND_ONLY, DBRestoreSpec, KindOnly
from dbops.restore import plan as restore_plan
from dbops.restore import progress, removal, source
from dbops.restore.plan import Existing, Plan, Source

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
UID = "uid-1"


def spec(**over: Any) -> DBRestoreSpec:
    body: dict[str, Any] = {"source": {"dbSnapshot": "orders-snap"}, "target": {"identifier": "orders-copy"}}
    body.update(over)
    return DBRestoreSpec.model_validate(body)


SOURCE_DB = {
    "DBInstanceIdentifier": "orders",
    "DBInstanceClass": "db.r6g.large",
    "Engine": "postgres",
    "DBSubnetGroup": {"DBSubnetGroupName": "private"},
    "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-0abc1234"}],
    "DBParameterGroups": [{"DBParameterGroupName": "orders-pg16"}],
    "MultiAZ": True,
    "StorageType": "gp3",
    "Endpoint": {"Address": "orders.x.us-east-1.rds.amazonaws.com", "Port": 5433},
    "DbInstancePort": 5433,
    "OptionGroupMemberships": [{"OptionGroupName": "default:postgres-16"}],
    "DeletionProtection": True,
    "IAMDatabaseAuthenticationEnabled": True,
    "DBInstanceArn": "arn:aws:rds:us-east-1:123456789012:db:orders",
}
SNAPSHOT = {
    "DBSnapshotIdentifier": "orders-snap",
    "DBInstanceIdentifier": "orders",
    "Port": 5432,
    "Engine": "postgres",
    "StorageType": "gp2",
    "Status": "available",
    "DBSnapshotArn": "arn:aws:rds:us-east-1:123456789012:snapshot:orders-snap",
}


def observed(s: DBRestoreSpec, **over: Any) -> Source:
    seen = Source(source.source_ref(s, "us-east-1"), source_id="orders", source_db=SOURCE_DB, snapshot=SNAPSHOT)
    for k, v in over.items():
        setattr(seen, k, v)
    return seen


def plan(s: DBRestoreSpec, seen: Source, existing: Existing | None = None) -> Plan:
    return restore_plan.plan(s, seen, existing or Existing(), source.requested_time(s, NOW), (UID, "ns", "r"))


def only_call(p: Plan) -> Call:
    assert len(p.calls) == 1
    return p.calls[0]


def test_settings_are_copied_from_the_source_when_not_given() -> None:
    s = spec()
    call = only_call(plan(s, observed(s)))
    assert call.operation == "restore_db_instance_from_db_snapshot"
    p = call.params
    assert p["DBInstanceIdentifier"] == "orders-copy" and p["DBSnapshotIdentifier"] == "orders-snap"
    assert p["DBInstanceClass"] == "db.r6g.large" and p["DBSubnetGroupName"] == "private"
    assert p["VpcSecurityGroupIds"] == ["sg-0abc1234"] and p["DBParameterGroupName"] == "orders-pg16"
    assert p["MultiAZ"] is True and p["StorageType"] == "gp3" and p["Port"] == 5433
    assert p["EnableIAMDatabaseAuthentication"] is True
    # Never copied: a restored copy stays private and removable unless the spec says otherwise.
    assert p["PubliclyAccessible"] is False and p["DeletionProtection"] is False
    tags = {t["Key"]: t["Value"] for t in p["Tags"]}
    assert tags[types.OWNER_TAG] == UID and tags[types.MANAGED_BY_TAG] == "dbops"


def test_overrides_win_over_the_source() -> None:
    s = spec(
        target={
            "identifier": "orders-copy",
            "dbInstanceClass": "db.t4g.micro",
            "multiAZ": False,
            "vpcSecurityGroupIds": ["sg-0def5678"],
            "port": 6543,
            "publiclyAccessible": True,
            "tags": {"team": "payments"},
        }
    )
    p = only_call(plan(s, observed(s))).params
    assert p["DBInstanceClass"] == "db.t4g.micro" and p["MultiAZ"] is False and p["Port"] == 6543
    assert p["VpcSecurityGroupIds"] == ["sg-0def5678"] and p["PubliclyAccessible"] is True
    assert {"Key": "team", "Value": "payments"} in p["Tags"]


def test_settings_come_from_the_snapshot_when_the_source_is_gone() -> None:
    s = spec()
    p = only_call(plan(s, observed(s, source_db=None))).params
    assert p["Port"] == 5432 and p["StorageType"] == "gp2"
    assert "DBInstanceClass" not in p and "DBSubnetGroupName" not in p  # RDS defaults apply


def test_a_target_name_that_is_not_ours_is_a_collision_and_left_alone() -> None:
    s = spec()
    theirs = {"DBInstanceIdentifier": "orders-copy", "TagList": [{"Key": "team", "Value": "x"}]}
    err = restore_plan.collision(s, "instance", Existing(target=theirs), UID)
    assert err is not None and err.reason == "NameCollision" and "spec.target.identifier" in err.message


def test_our_own_target_is_adopted_without_a_second_create() -> None:
    s = spec()
    ours = {"DBInstanceIdentifier": "orders-copy", "TagList": types.ownership_tags(UID, "ns", "r", "DBRestore")}
    assert restore_plan.collision(s, "instance", Existing(target=ours), UID) is None
    assert plan(s, observed(s), Existing(target=ours)).calls == []


def test_the_source_is_tagged_on_what_is_created() -> None:
    s = spec()
    tags = {t["Key"]: t["Value"] for t in only_call(plan(s, observed(s))).params["Tags"]}
    assert tags[types.SOURCE_TAG] == "snapshot:orders-snap" and tags[types.KIND_TAG] == "DBRestore"


def test_point_in_time_of_an_instance() -> None:
    when = NOW - timedelta(hours=2)
    s = spec(source={"pointInTime": {"dbInstance": "orders", "restoreTime": when.isoformat()}})
    seen = observed(s, snapshot=None, source_db={**SOURCE_DB, "LatestRestorableTime": NOW - timedelta(minutes=5)})
    p = plan(s, seen)
    call = only_call(p)
    assert call.operation == "restore_db_instance_to_point_in_time"
    assert call.params["SourceDBInstanceIdentifier"] == "orders"
    assert call.params["TargetDBInstanceIdentifier"] == "orders-copy" and call.params["RestoreTime"] == when
    assert p.source == "pit:orders@2026-11-23T10:00:00Z"


def test_latest_restorable_time_is_the_default_point() -> None:
    s = spec(source={"pointInTime": {"dbInstance": "orders"}})
    call = only_call(plan(s, observed(s, snapshot=None)))
    assert call.params["UseLatestRestorableTime"] is True and "RestoreTime" not in call.params


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(timedelta(hours=1), "RestoreTimeInFuture"), (timedelta(minutes=-1), "RestoreTimeOutOfRange")],
)
def test_restore_time_outside_the_window_fails(offset: timedelta, reason: str) -> None:
    s = spec(source={"pointInTime": {"dbInstance": "orders", "restoreTime": (NOW + offset).isoformat()}})
    seen = observed(s, snapshot=None, source_db={**SOURCE_DB, "LatestRestorableTime": NOW - timedelta(minutes=5)})
    with pytest.raises(SpecError) as err:
        plan(s, seen)
    assert err.value.reason == reason and "spec.source.pointInTime.restoreTime" in err.value.message


CLUSTER = {
    "DBClusterIdentifier": "orders-aurora",
    "Engine": "aurora-postgresql",
    "EngineVersion": "16.4",
    "DBSubnetGroup": "private",
    "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-0abc1234"}],
    "DBClusterParameterGroup": "aurora-pg16",
    "Port": 5432,
    "Status": "available",
}
WRITER = {
    "DBInstanceIdentifier": "orders-aurora-1",
    "DBInstanceClass": "db.r6g.xlarge",
    "DBParameterGroups": [{"DBParameterGroupName": "aurora-inst-pg16"}],
}
CSNAP = {
    "DBClusterSnapshotIdentifier": "aurora-snap",
    "DBClusterIdentifier": "orders-aurora",
    "Engine": "aurora-postgresql",
    "EngineVersion": "16.4",
    "Status": "available",
}


def test_aurora_cluster_gets_its_instances() -> None:
    s = spec(
        source={"dbClusterSnapshot": "aurora-snap"}, target={"identifier": "aurora-copy", "instances": {"count": 2}}
    )
    seen = Source(
        source.source_ref(s, "us-east-1"),
        source_id="orders-aurora",
        source_db=CLUSTER,
        source_writer=WRITER,
        snapshot=CSNAP,
    )
    p = plan(s, seen)
    ops = [c.operation for c in p.calls]
    assert ops == ["restore_db_cluster_from_snapshot", "create_db_instance", "create_db_instance"]
    cluster = p.calls[0].params
    assert cluster["Engine"] == "aurora-postgresql" and cluster["DBSubnetGroupName"] == "private"
    assert cluster["DBClusterParameterGroupName"] == "aurora-pg16"
    first, second = p.calls[1].params, p.calls[2].params
    assert first["DBInstanceIdentifier"] == "aurora-copy-1" and second["DBInstanceIdentifier"] == "aurora-copy-2"
    assert first["DBClusterIdentifier"] == "aurora-copy" and first["DBInstanceClass"] == "db.r6g.xlarge"
    assert first["DBParameterGroupName"] == "aurora-inst-pg16"
    # Cluster-owned settings are never set on member instances.
    assert not {"VpcSecurityGroupIds", "DBSubnetGroupName", "Port", "MultiAZ"} & set(first)


@pytest.mark.parametrize("field", [{"multiAZ": True}, {"dbInstanceClass": "db.r6g.large"}, {"optionGroupName": "og"}])
def test_instance_only_fields_are_refused_for_aurora(field: dict[str, Any]) -> None:
    s = spec(source={"dbClusterSnapshot": "aurora-snap"}, target={"identifier": "aurora-copy", **field})
    seen = Source(source.source_ref(s, "us-east-1"), snapshot=CSNAP, source_writer=WRITER)
    with pytest.raises(SpecError, match=rf"spec\.target\.{next(iter(field))}"):
        plan(s, seen)


def test_the_parameter_group_of_an_aurora_restore_goes_to_its_instances() -> None:
    s = spec(
        source={"dbClusterSnapshot": "aurora-snap"},
        target={"identifier": "aurora-copy", "dbParameterGroupName": "mine", "instances": {"count": 2}},
    )
    seen = Source(source.source_ref(s, "us-east-1"), source_db=CLUSTER, source_writer=WRITER, snapshot=CSNAP)
    p = plan(s, seen)
    assert [c.params.get("DBParameterGroupName") for c in p.calls[1:]] == ["mine", "mine"]
    assert "DBParameterGroupName" not in p.calls[0].params  # a cluster has a cluster parameter group


def test_cluster_only_fields_are_refused_for_instances() -> None:
    s = spec(target={"identifier": "orders-copy", "instances": {"count": 2}})
    with pytest.raises(SpecError, match=r"spec\.target\.instances"):
        plan(s, observed(s))


KIND_SAMPLES: dict[str, Any] = {
    "instances": {"count": 1},
    "dbClusterParameterGroupName": "aurora-pg16",
    "multiAZ": False,
    "dbInstanceClass": "db.r6g.large",
    "optionGroupName": "default:postgres-16",
}
SOURCES: dict[str, dict[str, Any]] = {"instance": {"dbSnapshot": "orders-snap"}, "cluster": {"dbClusterSnapshot": "s"}}


@pytest.mark.parametrize("only", TARGET_KIND_ONLY, ids=lambda o: f"{o.field}-{o.kind}")
def test_kind_only_settings_are_refused_for_the_other_kind_in_the_admission_words(only: KindOnly) -> None:
    """The operator's check and the CRD's CEL rules come from one table (TARGET_KIND_ONLY)."""
    setting = {only.field: only.values[0] if only.values else KIND_SAMPLES[only.field]}
    other = "cluster" if only.kind == "instance" else "instance"
    wrong = spec(source=SOURCES[other], target={"identifier": "copy", **setting})
    with pytest.raises(SpecError) as err:
        restore_plan.check_kind_fields(wrong.target, source.source_ref(wrong, "us-east-1").kind)
    assert err.value.message == only.message()
    right = spec(source=SOURCES[only.kind], target={"identifier": "copy", **setting})
    restore_plan.check_kind_fields(right.target, source.source_ref(right, "us-east-1").kind)


@pytest.mark.parametrize(
    ("host", "ident", "kind", "region", "custom"),
    [
        ("orders.abc123.eu-west-1.rds.amazonaws.com", "orders", "instance", "eu-west-1", False),
        ("Orders.cluster-abc.us-east-1.rds.amazonaws.com.", "orders", "cluster", "us-east-1", False),
        ("orders.cluster-ro-abc.cn-north-1.rds.amazonaws.com.cn", "orders", "cluster", "cn-north-1", False),
        ("rep.cluster-custom-abc.us-gov-west-1.rds.amazonaws.com", "rep", "cluster", "us-gov-west-1", True),
    ],
)
def test_endpoint_hostnames_resolve_without_any_connection(
    host: str, ident: str, kind: str, region: str, custom: bool
) -> None:
    ep = source.parse_endpoint(host)
    assert (ep.identifier, ep.kind, ep.region, ep.custom) == (ident, kind, region, custom)


def test_an_endpoint_of_another_account_is_not_this_accounts_namesake() -> None:
    given = source.parse_endpoint("orders.abc123.us-east-1.rds.amazonaws.com")
    assert source.same_account(given, "orders.abc123.us-east-1.rds.amazonaws.com")
    assert not source.same_account(given, "orders.zzz999.us-east-1.rds.amazonaws.com")
    cluster = source.parse_endpoint("pay.cluster-ro-abc123.us-east-1.rds.amazonaws.com")
    assert source.same_account(cluster, "pay.cluster-abc123.us-east-1.rds.amazonaws.com")


@pytest.mark.parametrize("host", ["db.example.com", "orders.abc.eu-west-1.rds.amazonaws.com.evil.net", "10.0.0.1"])
def test_non_rds_hostnames_are_refused(host: str) -> None:
    with pytest.raises(SpecError):
        source.parse_endpoint(host)


def test_latest_snapshot_picks_the_newest_available_of_the_type() -> None:
    def snap(name: str, kind: str, hours: int, status: str = "available") -> dict[str, Any]:
        return {
            "DBSnapshotIdentifier": name,
            "SnapshotType": kind,
            "Status": status,
            "SnapshotCreateTime": NOW - timedelta(hours=hours),
        }

    snaps = [
        snap("old-auto", "automated", 30),
        snap("new-auto", "automated", 6),
        snap("manual", "manual", 3),
        snap("creating", "manual", 1, "creating"),
    ]
    assert source.latest_snapshot(snaps, "any")["DBSnapshotIdentifier"] == "manual"  # type: ignore[index]
    assert source.latest_snapshot(snaps, "automated")["DBSnapshotIdentifier"] == "new-auto"  # type: ignore[index]
    assert source.latest_snapshot([snaps[3]], "any") is None


def test_progress_follows_rds_status() -> None:
    db = {"DBInstanceStatus": "backing-up", "Endpoint": {"Address": "h", "Port": 5432}, "Engine": "postgres"}
    p = progress.progress("instance", "x", db, {})
    assert (p.phase, p.ready, p.fields["rdsStatus"]) == ("Restoring", "False", "backing-up")
    p = progress.progress("instance", "x", {**db, "DBInstanceStatus": "available"}, {})
    assert (p.phase, p.ready, p.fields["endpoint"]) == ("Available", "True", "h")
    p = progress.progress("instance", "x", {**db, "DBInstanceStatus": "incompatible-restore"}, {})
    assert (p.phase, p.reason) == ("Failed", "RDSIncompatibleRestore")


def test_cluster_is_available_only_with_all_its_instances() -> None:
    cluster = {**CLUSTER, "Endpoint": "w", "ReaderEndpoint": "r"}
    p = progress.progress("cluster", "c", cluster, {"c-1": {"DBInstanceStatus": "creating"}})
    assert p.phase == "Restoring" and "c-1 is creating" in p.message
    p = progress.progress("cluster", "c", cluster, {"c-1": {"DBInstanceStatus": "available"}})
    assert p.phase == "Available" and p.fields["readerEndpoint"] == "r"


def test_the_ttl_counts_from_the_creation_in_rds_and_follows_the_spec() -> None:
    db = {"InstanceCreateTime": NOW - timedelta(hours=1)}
    assert progress.expires_at(spec(ttl="3h", deletionPolicy="Delete"), db) == NOW + timedelta(hours=2)
    assert progress.expires_at(spec(ttl="30m", deletionPolicy="Delete"), db) == NOW - timedelta(minutes=30)
    assert progress.expires_at(spec(), db) is None


def test_removal_touches_only_what_carries_our_tag() -> None:
    ours = {
        "DBInstanceIdentifier": "x",
        "DBInstanceStatus": "available",
        "TagList": types.ownership_tags(UID, "n", "r", "DBRestore"),
    }
    theirs = {"DBInstanceIdentifier": "x", "DBInstanceStatus": "available", "TagList": []}
    step = removal.removal("instance", "Delete", "x", theirs, {}, UID)
    assert step.done and step.reason == "LeftAlone" and not step.calls
    step = removal.removal("instance", "Snapshot", "x", ours, {}, UID)
    assert [c.params for c in step.calls] == [
        {"DBInstanceIdentifier": "x", "SkipFinalSnapshot": False, "FinalDBSnapshotIdentifier": f"x-final-{UID[:8]}"}
    ]
    step = removal.removal("instance", "Delete", "x", None, {}, UID)
    assert step.done and step.reason == "NothingToDelete" and "does not exist" not in step.message
    assert removal.removal("instance", "Retain", "x", ours, {}, UID).reason == "Retained"


def test_aurora_instances_go_before_their_cluster() -> None:
    tag = types.ownership_tags(UID, "n", "r", "DBRestore")
    cluster = {"DBClusterIdentifier": "c", "Status": "available", "TagList": tag}
    member = {"DBInstanceIdentifier": "c-1", "DBInstanceStatus": "available", "TagList": tag}
    step = removal.removal("cluster", "Delete", "c", cluster, {"c-1": member, "c-2": None}, UID)
    assert [c.operation for c in step.calls] == ["delete_db_instance"] and not step.done
    step = removal.removal("cluster", "Delete", "c", cluster, {"c-1": None}, UID)
    assert [c.operation for c in step.calls] == ["delete_db_cluster"]


def test_duration_parsing() -> None:
    assert source.parse_duration("1d12h30m") == timedelta(days=1, hours=12, minutes=30)


def test_connection_details_of_a_cluster_and_of_a_managed_password() -> None:
    cluster = {
        "Status": "available",
        "Endpoint": "c.cluster-x.us-east-1.rds.amazonaws.com",
        "ReaderEndpoint": "c.cluster-ro-x.us-east-1.rds.amazonaws.com",
        "Port": 5432,
        "Engine": "aurora-postgresql",
        "MasterUsername": "dbadmin",
        "DatabaseName": "",
        "MasterUserSecret": {"SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!c"},
    }
    assert progress.connection_details("cluster", cluster, None) == {
        "endpoint": "c.cluster-x.us-east-1.rds.amazonaws.com",
        "readerEndpoint": "c.cluster-ro-x.us-east-1.rds.amazonaws.com",
        "port": "5432",
        "engine": "aurora-postgresql",
        "username": "dbadmin",
        "masterUserSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!c",
    }
    instance = {"Endpoint": {"Address": "i.x.us-east-1.rds.amazonaws.com", "Port": 3306}, "DBName": "shop"}
    details = progress.connection_details("instance", instance, "pw")
    assert details == {
        "endpoint": "i.x.us-east-1.rds.amazonaws.com",
        "port": "3306",
        "database": "shop",
        "password": "pw",
    }


def _retained(
    uid: str = "old", namespace: str = "ns", kind: str = "DBRestore", retained: bool = True
) -> dict[str, Any]:
    tags = {
        types.MANAGED_BY_TAG: "dbops",
        types.OWNER_TAG: uid,
        types.NAMESPACE_TAG: namespace,
        types.NAME_TAG: "r-old",
        types.KIND_TAG: kind,
    } | ({types.RETAINED_TAG: "2026-11-20T00:00:00Z"} if retained else {})
    return {
        "DBInstanceIdentifier": "orders-copy",
        "DBInstanceArn": "arn:aws:rds:us-east-1:123456789012:db:orders-copy",
        "TagList": [{"Key": k, "Value": v} for k, v in tags.items()],
    }


def test_adoption_retags_a_retained_database_of_this_namespace() -> None:
    taken = restore_plan.adoption(spec(adopt=True), "instance", Existing(_retained()), (UID, "ns", "r"))
    assert (taken.former_uid, taken.former_name) == ("old", "r-old")
    add, remove = taken.calls
    assert add.operation == "add_tags_to_resource" and {"Key": types.OWNER_TAG, "Value": UID} in add.params["Tags"]
    assert remove.params == {"ResourceName": _retained()["DBInstanceArn"], "TagKeys": [types.RETAINED_TAG]}


@pytest.mark.parametrize(
    ("db", "words"),
    [
        (None, "does not exist"),
        ({"DBInstanceIdentifier": "orders-copy", "TagList": [{"Key": "team", "Value": "x"}]}, "not created by dbops"),
        (_retained(namespace="other"), "belongs to namespace other"),
        (_retained(kind="DBAttach"), "was created by a DBAttach"),
        (_retained(retained=False), "was not retained"),
    ],
)
def test_adoption_refuses_what_is_not_a_retained_database_of_this_namespace(db: Any, words: str) -> None:
    with pytest.raises(SpecError) as err:
        restore_plan.adoption(spec(adopt=True), "instance", Existing(db), (UID, "ns", "r"))
    assert err.value.reason == "NotAdoptable" and words in err.value.message


def test_adoption_refuses_a_cluster_member_of_another_object() -> None:
    member = _retained(uid="someone-else") | {"DBInstanceIdentifier": "orders-copy-1"}
    with pytest.raises(SpecError, match="orders-copy-1 is not part of the retained"):
        restore_plan.adoption(
            spec(adopt=True), "cluster", Existing(_retained(), {"orders-copy-1": member}), (UID, "ns", "r")
        )
