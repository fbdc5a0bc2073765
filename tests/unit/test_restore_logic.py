"""The DBRestore decisions, without any server: spec + what RDS reported -> calls and status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbops import rds, restore
from dbops.models import TARGET_KIND_ONLY, DBRestoreSpec, KindOnly

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


def observed(s: DBRestoreSpec, **over: Any) -> restore.Observed:
    seen = restore.Observed(
        restore.source_ref(s, "us-east-1"), source_id="orders", source_db=SOURCE_DB, snapshot=SNAPSHOT
    )
    for k, v in over.items():
        setattr(seen, k, v)
    return seen


def only_call(p: restore.Plan) -> restore.Call:
    assert len(p.calls) == 1
    return p.calls[0]


def test_settings_are_copied_from_the_source_when_not_given() -> None:
    s = spec()
    call = only_call(restore.plan(s, observed(s), UID, "ns", "r", NOW))
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
    assert tags[rds.OWNER_TAG] == UID and tags[rds.MANAGED_BY_TAG] == "dbops"


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
    p = only_call(restore.plan(s, observed(s), UID, "ns", "r", NOW)).params
    assert p["DBInstanceClass"] == "db.t4g.micro" and p["MultiAZ"] is False and p["Port"] == 6543
    assert p["VpcSecurityGroupIds"] == ["sg-0def5678"] and p["PubliclyAccessible"] is True
    assert {"Key": "team", "Value": "payments"} in p["Tags"]


def test_settings_come_from_the_snapshot_when_the_source_is_gone() -> None:
    s = spec()
    p = only_call(restore.plan(s, observed(s, source_db=None), UID, "ns", "r", NOW)).params
    assert p["Port"] == 5432 and p["StorageType"] == "gp2"
    assert "DBInstanceClass" not in p and "DBSubnetGroupName" not in p  # RDS defaults apply


def test_a_target_name_that_is_not_ours_is_a_collision_and_left_alone() -> None:
    s = spec()
    theirs = {"DBInstanceIdentifier": "orders-copy", "TagList": [{"Key": "team", "Value": "x"}]}
    with pytest.raises(restore.SpecError) as err:
        restore.plan(s, observed(s, target=theirs), UID, "ns", "r", NOW)
    assert err.value.reason == "NameCollision" and "spec.target.identifier" in err.value.message


def test_our_own_target_is_adopted_without_a_second_create() -> None:
    s = spec()
    ours = {"DBInstanceIdentifier": "orders-copy", "TagList": rds.ownership_tags(UID, "ns", "r")}
    p = restore.plan(s, observed(s, target=ours), UID, "ns", "r", NOW)
    assert p.adopt and p.calls == []


def test_point_in_time_of_an_instance() -> None:
    when = NOW - timedelta(hours=2)
    s = spec(source={"pointInTime": {"dbInstance": "orders", "restoreTime": when.isoformat()}})
    seen = observed(s, snapshot=None, source_db={**SOURCE_DB, "LatestRestorableTime": NOW - timedelta(minutes=5)})
    p = restore.plan(s, seen, UID, "ns", "r", NOW)
    call = only_call(p)
    assert call.operation == "restore_db_instance_to_point_in_time"
    assert call.params["SourceDBInstanceIdentifier"] == "orders"
    assert call.params["TargetDBInstanceIdentifier"] == "orders-copy" and call.params["RestoreTime"] == when
    assert p.source == "pit:orders@2026-11-23T10:00:00Z"


def test_latest_restorable_time_is_the_default_point() -> None:
    s = spec(source={"pointInTime": {"dbInstance": "orders"}})
    call = only_call(restore.plan(s, observed(s, snapshot=None), UID, "ns", "r", NOW))
    assert call.params["UseLatestRestorableTime"] is True and "RestoreTime" not in call.params


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(timedelta(hours=1), "RestoreTimeInFuture"), (timedelta(minutes=-1), "RestoreTimeOutOfRange")],
)
def test_restore_time_outside_the_window_fails(offset: timedelta, reason: str) -> None:
    s = spec(source={"pointInTime": {"dbInstance": "orders", "restoreTime": (NOW + offset).isoformat()}})
    seen = observed(s, snapshot=None, source_db={**SOURCE_DB, "LatestRestorableTime": NOW - timedelta(minutes=5)})
    with pytest.raises(restore.SpecError) as err:
        restore.plan(s, seen, UID, "ns", "r", NOW)
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
    seen = restore.Observed(
        restore.source_ref(s, "us-east-1"),
        source_id="orders-aurora",
        source_db=CLUSTER,
        source_writer=WRITER,
        snapshot=CSNAP,
    )
    p = restore.plan(s, seen, UID, "ns", "r", NOW)
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


def test_instance_only_fields_are_refused_for_aurora() -> None:
    s = spec(source={"dbClusterSnapshot": "aurora-snap"}, target={"identifier": "aurora-copy", "multiAZ": True})
    seen = restore.Observed(restore.source_ref(s, "us-east-1"), snapshot=CSNAP, source_writer=WRITER)
    with pytest.raises(restore.SpecError, match=r"spec\.target\.multiAZ"):
        restore.plan(s, seen, UID, "ns", "r", NOW)


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
    with pytest.raises(restore.SpecError) as err:
        restore._check_kind_fields(wrong.target, restore.source_ref(wrong, "us-east-1").kind)
    assert err.value.message == only.message()
    right = spec(source=SOURCES[only.kind], target={"identifier": "copy", **setting})
    restore._check_kind_fields(right.target, restore.source_ref(right, "us-east-1").kind)


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
    assert restore.parse_endpoint(host) == restore.Endpoint(ident, kind, region, custom)  # type: ignore[arg-type]


@pytest.mark.parametrize("host", ["db.example.com", "orders.abc.eu-west-1.rds.amazonaws.com.evil.net", "10.0.0.1"])
def test_non_rds_hostnames_are_refused(host: str) -> None:
    with pytest.raises(restore.SpecError):
        restore.parse_endpoint(host)


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
    assert restore.latest_snapshot(snaps, "any")["DBSnapshotIdentifier"] == "manual"  # type: ignore[index]
    assert restore.latest_snapshot(snaps, "automated")["DBSnapshotIdentifier"] == "new-auto"  # type: ignore[index]
    assert restore.latest_snapshot([snaps[3]], "any") is None


def test_progress_follows_rds_status() -> None:
    db = {"DBInstanceStatus": "backing-up", "Endpoint": {"Address": "h", "Port": 5432}, "Engine": "postgres"}
    p = restore.progress("instance", "x", db, {})
    assert (p.phase, p.ready, p.fields["rdsStatus"]) == ("Restoring", "False", "backing-up")
    p = restore.progress("instance", "x", {**db, "DBInstanceStatus": "available"}, {})
    assert (p.phase, p.ready, p.fields["endpoint"]) == ("Available", "True", "h")
    p = restore.progress("instance", "x", {**db, "DBInstanceStatus": "incompatible-restore"}, {})
    assert (p.phase, p.reason) == ("Failed", "RDSIncompatibleRestore")
    assert restore.progress("instance", "x", None, {}).reason == "NotFound"


def test_cluster_is_available_only_with_all_its_instances() -> None:
    cluster = {**CLUSTER, "Endpoint": "w", "ReaderEndpoint": "r"}
    p = restore.progress("cluster", "c", cluster, {"c-1": {"DBInstanceStatus": "creating"}})
    assert p.phase == "Restoring" and "c-1 is creating" in p.message
    p = restore.progress("cluster", "c", cluster, {"c-1": {"DBInstanceStatus": "available"}})
    assert p.phase == "Available" and p.fields["readerEndpoint"] == "r"


def test_duration_parsing() -> None:
    assert restore.parse_duration("1d12h30m") == timedelta(days=1, hours=12, minutes=30)
