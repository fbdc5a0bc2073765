"""The restore decision: which calls create what the spec asks for, with which settings.

Pure functions over the spec and what AWS reported (plain dicts). Anything not set in the spec is
copied from the source (or the snapshot); settings that belong to one kind only are refused on the
other, so that no field is ever silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dbops.core.types import (
    KIND_TAG,
    MANAGED_BY_TAG,
    NAME_TAG,
    NAMESPACE_TAG,
    OWNER_TAG,
    RETAINED_TAG,
    SOURCE_TAG,
    Call,
    Kind,
    SpecError,
    clean,
    owned_by,
    ownership_tags,
    tags_of,
)
from dbops.models import TARGET_KIND_ONLY, DBRestoreSpec, Target
from dbops.restore.source import SourceRef, instance_names


@dataclass
class Source:
    """What AWS says about the source, as far as a restore needs it (read only to create)."""

    ref: SourceRef
    source_id: str | None = None
    source_db: dict[str, Any] | None = None  # None: the source no longer exists
    source_writer: dict[str, Any] | None = None  # an Aurora source's writer instance
    snapshot: dict[str, Any] | None = None


@dataclass
class Existing:
    """What exists under the names the spec creates: the target and, for Aurora, its instances."""

    target: dict[str, Any] | None = None
    members: dict[str, dict[str, Any] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    calls: list[Call]
    source: str  # for status.source and the source tag, e.g. "snapshot:orders-2026-11-20"
    source_arn: str | None
    restore_time: datetime | None


def collision(spec: DBRestoreSpec, kind: Kind, existing: Existing, uid: str) -> SpecError | None:
    """A name the spec creates that exists and is not this object's: it is never adopted nor touched."""
    if existing.target is not None and not owned_by(existing.target, uid):
        return SpecError(
            "NameCollision",
            f"spec.target.identifier: {kind} {spec.target.identifier} already exists and was not created by "
            "this DBRestore; dbops leaves it alone",
        )
    foreign = sorted(n for n, db in existing.members.items() if db is not None and not owned_by(db, uid))
    if foreign:
        return SpecError(
            "NameCollision",
            f"DB instance {foreign[0]} already exists and was not created by this DBRestore; dbops leaves it alone",
        )
    return None


@dataclass(frozen=True)
class Adoption:
    """Taking over a retained database: its former owner, and the calls that make it this object's."""

    former_uid: str
    former_name: str
    calls: list[Call]


def adoption(spec: DBRestoreSpec, kind: Kind, existing: Existing, owner: tuple[str, str, str]) -> Adoption:
    """spec.adopt: the calls that retag a database that a deleted DBRestore of this namespace retained
    (and, for Aurora, its instances of that same object) as this object's. Anything else under the
    name is refused in words: a database dbops did not make, another namespace's, or one not retained.
    Whether the former object is really gone is for the caller to check (it takes the API server)."""
    uid, namespace, name = owner
    db, what = existing.target, f"{kind} {spec.target.identifier}"
    tags = tags_of(db)
    former = tags.get(OWNER_TAG, "")
    why = "does not exist" if db is None else _not_adoptable(tags, namespace)
    if why:
        raise SpecError("NotAdoptable", f"spec.adopt: {what} {why}; dbops leaves it alone")
    calls = []
    for found in [db, *existing.members.values()]:
        if found is None or owned_by(found, uid):
            continue
        ident = found.get("DBInstanceIdentifier") if found is not db else spec.target.identifier
        if not owned_by(found, former):
            raise SpecError("NotAdoptable", f"spec.adopt: DB instance {ident} is not part of the retained {what}")
        arn = found.get("DBInstanceArn") or found.get("DBClusterArn")
        ours = ownership_tags(uid, namespace, name, "DBRestore", spec.target.tags, source=tags.get(SOURCE_TAG))
        calls.append(Call("add_tags_to_resource", {"ResourceName": arn, "Tags": ours}))
        calls.append(Call("remove_tags_from_resource", {"ResourceName": arn, "TagKeys": [RETAINED_TAG]}))
    return Adoption(former, tags.get(NAME_TAG, ""), calls)


def _not_adoptable(tags: dict[str, str], namespace: str) -> str:
    """Why a database with these tags may not be adopted from `namespace` ("" when it may)."""
    if tags.get(MANAGED_BY_TAG) != "dbops" or not tags.get(OWNER_TAG):
        return "was not created by dbops"
    if tags.get(KIND_TAG) != "DBRestore":
        return f"was created by a {tags.get(KIND_TAG) or 'other object'}, not a DBRestore"
    if tags.get(NAMESPACE_TAG) != namespace:
        return f"belongs to namespace {tags.get(NAMESPACE_TAG)}, not this one"
    if RETAINED_TAG not in tags:
        return f"was not retained (DBRestore {tags.get(NAME_TAG)} was not deleted with deletionPolicy Retain)"
    return ""


def plan(
    spec: DBRestoreSpec,
    source: Source,
    existing: Existing,
    restore_time: datetime | None,
    owner: tuple[str, str, str],
) -> Plan:
    """The calls that create whatever of the spec does not exist yet. `owner` is (uid, namespace, name)."""
    ref = source.ref
    check_kind_fields(spec.target, ref.kind)
    _check_restore_time(source, restore_time)
    label, arn = describe_source(source, restore_time)
    uid, namespace, name = owner
    tags = ownership_tags(uid, namespace, name, "DBRestore", spec.target.tags, source=label)
    calls: list[Call] = []
    if existing.target is None:
        calls.append(_restore_call(spec, source, tags, restore_time))
    if ref.kind == "cluster":
        calls += [c for c in _instance_calls(spec, source, tags) if existing.members.get(c.target) is None]
    return Plan(calls, source=label, source_arn=arn, restore_time=restore_time)


def describe_source(source: Source, restore_time: datetime | None) -> tuple[str, str | None]:
    db = source.source_db or {}
    if source.ref.mode == "pit":
        when = restore_time.strftime("%Y-%m-%dT%H:%M:%SZ") if restore_time else "latest"
        return f"pit:{source.source_id}@{when}", db.get("DBInstanceArn") or db.get("DBClusterArn")
    snap = source.snapshot or {}
    ident = snap.get("DBSnapshotIdentifier") or snap.get("DBClusterSnapshotIdentifier")
    return f"snapshot:{ident}", snap.get("DBSnapshotArn") or snap.get("DBClusterSnapshotArn")


def check_kind_fields(target: Target, kind: Kind) -> None:
    """Fields that RDS takes for one kind only: refused on the other, naming the field. The CRD's CEL
    rules refuse the same (TARGET_KIND_ONLY) at admission; this covers objects admitted before them."""
    written = target.model_dump(by_alias=True, exclude_none=True)
    for only in TARGET_KIND_ONLY:
        if not only.applies(kind, written):
            raise SpecError("InvalidSpec", only.message())


def _check_restore_time(source: Source, when: datetime | None) -> None:
    latest = (source.source_db or {}).get("LatestRestorableTime")
    if when is not None and isinstance(latest, datetime) and when > latest:
        raise SpecError(
            "RestoreTimeOutOfRange",
            f"spec.source.pointInTime.restoreTime is after the source's latest restorable time {latest.isoformat()}",
        )


def _copied(spec_value: Any, *fallbacks: Any) -> Any:
    """The spec's override when given, else the first setting the source (or snapshot) has."""
    if spec_value is not None:
        return spec_value
    return next((v for v in fallbacks if v not in (None, [], "")), None)


def _network(target: Target, db: dict[str, Any]) -> dict[str, Any]:
    # Instances describe their subnet group as an object, clusters as a bare name.
    group = db.get("DBSubnetGroup")
    group_name = group.get("DBSubnetGroupName") if isinstance(group, dict) else group
    return {
        "DBSubnetGroupName": _copied(target.db_subnet_group_name, group_name),
        "VpcSecurityGroupIds": _copied(
            target.vpc_security_group_ids, [g["VpcSecurityGroupId"] for g in db.get("VpcSecurityGroups", [])]
        ),
    }


def _snapshot_id(source: Source, arn_key: str, id_key: str) -> Any:
    snap = source.snapshot or {}
    return snap.get(arn_key) if (source.ref.snapshot or "").startswith("arn:") else snap[id_key]


def _restore_call(spec: DBRestoreSpec, source: Source, tags: list[dict[str, str]], when: datetime | None) -> Call:
    t, db, snap = spec.target, source.source_db or {}, source.snapshot or {}
    common = {
        **_network(t, db),
        "Port": _copied(t.port, db.get("DbInstancePort") or db.get("Port"), snap.get("Port")),
        "DeletionProtection": bool(t.deletion_protection),  # never copied: a copy must stay removable
        "EnableIAMDatabaseAuthentication": _copied(
            t.iam_database_authentication,
            db.get("IAMDatabaseAuthenticationEnabled"),
            snap.get("IAMDatabaseAuthenticationEnabled"),
        ),
        "Tags": tags,
        "CopyTagsToSnapshot": True,
    }
    if source.ref.kind == "instance":
        return _instance_restore(spec, source, common, when)
    params = {
        **common,
        "DBClusterIdentifier": t.identifier,
        "DBClusterParameterGroupName": _copied(
            t.db_cluster_parameter_group_name, _custom([db], "DBClusterParameterGroup")
        ),
        "StorageType": _copied(t.storage_type, db.get("StorageType")),
    }
    if source.ref.mode == "pit":
        params |= {"SourceDBClusterIdentifier": source.source_id, "RestoreType": "full-copy"}
        params |= {"RestoreToTime": when} if when else {"UseLatestRestorableTime": True}
        return Call("restore_db_cluster_to_point_in_time", clean(params))
    params |= {
        "SnapshotIdentifier": _snapshot_id(source, "DBClusterSnapshotArn", "DBClusterSnapshotIdentifier"),
        "Engine": snap.get("Engine") or db.get("Engine"),
        "EngineVersion": snap.get("EngineVersion") or db.get("EngineVersion"),
    }
    return Call("restore_db_cluster_from_snapshot", clean(params))


def _instance_restore(spec: DBRestoreSpec, source: Source, common: dict[str, Any], when: datetime | None) -> Call:
    t, db, snap = spec.target, source.source_db or {}, source.snapshot or {}
    params = {
        **common,
        "DBInstanceClass": _copied(t.db_instance_class, db.get("DBInstanceClass")),
        "DBParameterGroupName": _copied(
            t.db_parameter_group_name, _custom(db.get("DBParameterGroups", []), "DBParameterGroupName")
        ),
        "OptionGroupName": _copied(
            t.option_group_name,
            _custom(db.get("OptionGroupMemberships", []), "OptionGroupName"),
            _custom([snap], "OptionGroupName"),
        ),
        "MultiAZ": _copied(t.multi_az, db.get("MultiAZ")),
        "StorageType": _copied(t.storage_type, db.get("StorageType"), snap.get("StorageType")),
        "PubliclyAccessible": t.publicly_accessible,
    }
    if source.ref.mode == "pit":
        params |= {"SourceDBInstanceIdentifier": source.source_id, "TargetDBInstanceIdentifier": t.identifier}
        params |= {"RestoreTime": when} if when else {"UseLatestRestorableTime": True}
        return Call("restore_db_instance_to_point_in_time", clean(params))
    params |= {
        "DBInstanceIdentifier": t.identifier,
        "DBSnapshotIdentifier": _snapshot_id(source, "DBSnapshotArn", "DBSnapshotIdentifier"),
    }
    return Call("restore_db_instance_from_db_snapshot", clean(params))


def _instance_calls(spec: DBRestoreSpec, source: Source, tags: list[dict[str, str]]) -> list[Call]:
    """An Aurora cluster is useless without instances: the writer first, then readers. The spec's
    dbParameterGroupName applies to them (a cluster has none of its own), else the source writer's."""
    t, writer = spec.target, source.source_writer or {}
    cls = _copied(t.instances.db_instance_class if t.instances else None, writer.get("DBInstanceClass"))
    if cls is None:
        raise SpecError(
            "InvalidSpec",
            "spec.target.instances.dbInstanceClass: the source cluster has no writer to copy the class from; set it",
        )
    engine = (source.snapshot or {}).get("Engine") or (source.source_db or {}).get("Engine")
    group = _copied(t.db_parameter_group_name, _custom(writer.get("DBParameterGroups", []), "DBParameterGroupName"))
    return [
        Call(
            "create_db_instance",
            clean(
                {
                    "DBInstanceIdentifier": ident,
                    "DBClusterIdentifier": t.identifier,
                    "Engine": engine,
                    "DBInstanceClass": cls,
                    "PubliclyAccessible": t.publicly_accessible,
                    "DBParameterGroupName": group,
                    "PromotionTier": n,
                    "Tags": tags,
                }
            ),
        )
        for n, ident in enumerate(instance_names(spec))
    ]


def _custom(groups: list[dict[str, Any]], key: str) -> str | None:
    """The first non-default group name: RDS applies its default groups by itself, so copying one
    would only pin the restore to a name that may not exist for the restored engine version."""
    names = [g.get(key) for g in groups]
    return next((n for n in names if isinstance(n, str) and not n.startswith("default")), None)
