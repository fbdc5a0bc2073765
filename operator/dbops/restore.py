"""DBRestore decisions: what to restore from, with which settings, and what the status says.

Pure functions over the spec (pydantic) and what RDS reported (plain dicts); `observe` is the one
function here that asks AWS, and it only reads. The kopf handlers glue these together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from dbops import rds
from dbops.models import RDS_HOSTNAME, TARGET_KIND_ONLY, DBReference, DBRestoreSpec, Target
from dbops.rds import Kind

Mode = Literal["snapshot", "latest", "pit"]
_HOST = re.compile(RDS_HOSTNAME)
# RDS statuses after which a restore will not become available by itself.
FAILED_RDS_STATUSES = frozenset(
    {
        "failed",
        "incompatible-restore",
        "incompatible-parameters",
        "incompatible-network",
        "incompatible-option-group",
        "storage-full",
        "inaccessible-encryption-credentials",
        "inaccessible-encryption-credentials-recoverable",
        "restore-error",
    }
)


class SpecError(Exception):
    """The spec cannot be carried out as written; the message names the field."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    identifier: str
    kind: Kind
    region: str
    custom: bool  # a custom cluster endpoint's first label names the endpoint, not the cluster


def parse_endpoint(host: str) -> Endpoint:
    """Split an RDS endpoint hostname; it is never resolved through DNS nor connected to."""
    host = host.strip().lower().rstrip(".")
    if not _HOST.match(host):
        raise SpecError("InvalidEndpoint", f"{host!r} is not an RDS endpoint hostname (*.rds.amazonaws.com)")
    first, second, region = host.split(".")[:3]
    is_cluster = second.startswith("cluster-")
    return Endpoint(first, "cluster" if is_cluster else "instance", region, second.startswith("cluster-custom-"))


def parse_duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return timedelta(seconds=sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text)))


@dataclass(frozen=True)
class SourceRef:
    """What the spec asks for, before any AWS call."""

    mode: Mode
    kind: Kind
    region: str
    db_identifier: str | None = None  # the source DB (latest/pit, or from an endpoint)
    snapshot: str | None = None  # a named snapshot
    endpoint: Endpoint | None = None


def source_ref(spec: DBRestoreSpec, default_region: str) -> SourceRef:
    src = spec.source
    if src.db_snapshot or src.db_cluster_snapshot:
        kind: Kind = "instance" if src.db_snapshot else "cluster"
        region = spec.region or _arn_region(src.db_snapshot or src.db_cluster_snapshot) or default_region
        return SourceRef("snapshot", kind, region, snapshot=src.db_snapshot or src.db_cluster_snapshot)
    ref: DBReference | None = src.latest_snapshot or src.point_in_time
    if ref is None:  # the CRD's CEL rule makes this unreachable through the API server
        raise SpecError("InvalidSpec", "spec.source: set exactly one of the sources")
    mode: Mode = "latest" if src.latest_snapshot else "pit"
    if ref.endpoint:
        ep = parse_endpoint(ref.endpoint)
        if spec.region and spec.region != ep.region:
            raise SpecError("RegionMismatch", f"spec.region {spec.region} differs from the endpoint's {ep.region}")
        return SourceRef(mode, ep.kind, ep.region, None if ep.custom else ep.identifier, endpoint=ep)
    kind = "instance" if ref.db_instance else "cluster"
    return SourceRef(mode, kind, spec.region or default_region, ref.db_instance or ref.db_cluster)


def _arn_region(ref: str | None) -> str | None:
    return ref.split(":")[3] if ref and ref.startswith("arn:") else None


@dataclass
class Observed:
    """What RDS says, as far as the restore needs it."""

    ref: SourceRef
    source_id: str | None = None
    source_db: dict[str, Any] | None = None  # None: the source no longer exists
    source_writer: dict[str, Any] | None = None  # an Aurora source's writer instance
    snapshot: dict[str, Any] | None = None
    target: dict[str, Any] | None = None
    target_instances: dict[str, dict[str, Any]] = field(default_factory=dict)


def custom_endpoint_cluster(region: str, endpoint_id: str, field: str) -> str:
    """The cluster a custom endpoint belongs to (its hostname does not name it)."""
    eps = rds.call(region, "describe_db_cluster_endpoints", DBClusterEndpointIdentifier=endpoint_id)
    if not eps["DBClusterEndpoints"]:
        raise SpecError("EndpointNotFound", f"{field}: no cluster has the custom endpoint {endpoint_id}")
    return str(eps["DBClusterEndpoints"][0]["DBClusterIdentifier"])


def observe(spec: DBRestoreSpec, ref: SourceRef) -> Observed:
    """Read what the decision needs from RDS: the source, the snapshot, and the target's name."""
    seen = Observed(ref)
    region, kind = ref.region, ref.kind
    if ref.endpoint and ref.endpoint.custom:
        seen.source_id = custom_endpoint_cluster(region, ref.endpoint.identifier, "spec.source")
    else:
        seen.source_id = ref.db_identifier
    if ref.mode == "snapshot":
        seen.snapshot = _named_snapshot(region, kind, ref.snapshot or "")
        seen.source_id = seen.snapshot.get("DBInstanceIdentifier") or seen.snapshot.get("DBClusterIdentifier")
    elif ref.mode == "latest":
        assert spec.source.latest_snapshot is not None
        seen.snapshot = latest_snapshot(
            _snapshots(region, kind, seen.source_id or ""), spec.source.latest_snapshot.snapshot_type
        )
        if seen.snapshot is None:
            raise SpecError(
                "SnapshotNotFound",
                f"{kind} {seen.source_id} has no available {spec.source.latest_snapshot.snapshot_type} snapshot",
            )
    if seen.source_id:
        seen.source_db = rds.describe(region, kind, seen.source_id)
    if seen.source_db and kind == "cluster":
        seen.source_writer = _writer(region, seen.source_db)
    seen.target = rds.describe(region, kind, spec.target.identifier)
    if kind == "cluster":
        names = instance_names(spec)
        seen.target_instances = rds.describe_many(region, "instance", names) if names else {}
    return seen


def _named_snapshot(region: str, kind: Kind, ident: str) -> dict[str, Any]:
    if kind == "instance":
        found = rds.paginate(region, "describe_db_snapshots", "DBSnapshots", DBSnapshotIdentifier=ident)
    else:
        found = rds.paginate(
            region, "describe_db_cluster_snapshots", "DBClusterSnapshots", DBClusterSnapshotIdentifier=ident
        )
    if not found:
        field_name = "dbSnapshot" if kind == "instance" else "dbClusterSnapshot"
        raise SpecError("SnapshotNotFound", f"spec.source.{field_name}: snapshot {ident} not found")
    return found[0]


def _snapshots(region: str, kind: Kind, source: str) -> list[dict[str, Any]]:
    if kind == "instance":
        return rds.paginate(region, "describe_db_snapshots", "DBSnapshots", DBInstanceIdentifier=source)
    return rds.paginate(region, "describe_db_cluster_snapshots", "DBClusterSnapshots", DBClusterIdentifier=source)


def _writer(region: str, cluster: dict[str, Any]) -> dict[str, Any] | None:
    writer = next((m for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")), None)
    return rds.describe(region, "instance", writer["DBInstanceIdentifier"]) if writer else None


def latest_snapshot(snapshots: list[dict[str, Any]], snapshot_type: str) -> dict[str, Any] | None:
    """The newest available snapshot of the wanted type ("any": automated or manual)."""
    wanted = {"automated", "manual"} if snapshot_type == "any" else {snapshot_type}
    usable = [s for s in snapshots if s.get("Status") == "available" and s.get("SnapshotType") in wanted]
    return max(usable, key=lambda s: s.get("SnapshotCreateTime") or datetime.min.replace(tzinfo=UTC), default=None)


def instance_names(spec: DBRestoreSpec) -> list[str]:
    count = spec.target.instances.count if spec.target.instances else 1
    return [f"{spec.target.identifier}-{n}" for n in range(1, count + 1)]


@dataclass(frozen=True)
class Call:
    """One RDS call to make: the boto3 operation name and its parameters."""

    operation: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    """The decision: adopt what we already created (after a restart), or make these calls."""

    calls: list[Call]
    adopt: bool
    source: str  # for status.source, e.g. "snapshot:orders-2026-11-20"
    source_arn: str | None
    restore_time: datetime | None


def plan(spec: DBRestoreSpec, seen: Observed, uid: str, namespace: str, name: str, now: datetime) -> Plan:
    """Decide the restore. Raises SpecError when it cannot be done as asked (the name is taken, ...)."""
    ref = seen.ref
    owned_target = seen.target is not None and rds.owned_by(seen.target, uid)
    if seen.target is not None and not owned_target:
        raise SpecError(
            "NameCollision",
            f"spec.target.identifier: {ref.kind} {spec.target.identifier} already "
            "exists and was not created by this DBRestore; dbops leaves it alone",
        )
    foreign = [i for i, db in seen.target_instances.items() if not rds.owned_by(db, uid)]
    if foreign:
        raise SpecError(
            "NameCollision",
            f"DB instance {foreign[0]} already exists and was not created by this DBRestore; dbops leaves it alone",
        )
    _check_kind_fields(spec.target, ref.kind)
    restore_time = _restore_time(spec, seen, now)
    tags = rds.ownership_tags(uid, namespace, name, spec.target.tags)
    source, arn = describe_source(seen, restore_time)
    calls: list[Call] = []
    if seen.target is None:
        calls.append(_restore_call(spec, seen, tags, restore_time))
    if ref.kind == "cluster":
        calls += [
            c
            for c in _instance_calls(spec, seen, tags)
            if c.params["DBInstanceIdentifier"] not in seen.target_instances
        ]
    return Plan(calls, adopt=owned_target, source=source, source_arn=arn, restore_time=restore_time)


def describe_source(seen: Observed, restore_time: datetime | None) -> tuple[str, str | None]:
    if seen.ref.mode == "pit":
        when = restore_time.strftime("%Y-%m-%dT%H:%M:%SZ") if restore_time else "latest"
        return f"pit:{seen.source_id}@{when}", (seen.source_db or {}).get("DBInstanceArn") or (
            seen.source_db or {}
        ).get("DBClusterArn")
    snap = seen.snapshot or {}
    ident = snap.get("DBSnapshotIdentifier") or snap.get("DBClusterSnapshotIdentifier")
    return f"snapshot:{ident}", snap.get("DBSnapshotArn") or snap.get("DBClusterSnapshotArn")


def _check_kind_fields(target: Target, kind: Kind) -> None:
    """Fields that RDS takes for one kind only: refuse them on the other, naming the field. The CRD's CEL
    rules refuse the same (TARGET_KIND_ONLY) at admission; this covers objects admitted before them."""
    written = target.model_dump(by_alias=True, exclude_none=True)
    for only in TARGET_KIND_ONLY:
        if not only.applies(kind, written):
            raise SpecError("InvalidSpec", only.message())


def requested_time(spec: DBRestoreSpec, now: datetime) -> datetime | None:
    """The point in time asked for (UTC); a time in the future is refused before any AWS call.
    (CEL has no clock, so the CRD cannot refuse it at admission.)"""
    pit = spec.source.point_in_time
    if pit is None or pit.restore_time is None:
        return None
    when = pit.restore_time if pit.restore_time.tzinfo else pit.restore_time.replace(tzinfo=UTC)
    if when > now:
        raise SpecError(
            "RestoreTimeInFuture", f"spec.source.pointInTime.restoreTime {when.isoformat()} is in the future"
        )
    return when


def _restore_time(spec: DBRestoreSpec, seen: Observed, now: datetime) -> datetime | None:
    when = requested_time(spec, now)
    if when is None:
        return None
    latest = (seen.source_db or {}).get("LatestRestorableTime")
    if isinstance(latest, datetime) and when > latest:
        raise SpecError(
            "RestoreTimeOutOfRange",
            f"spec.source.pointInTime.restoreTime is after the source's latest restorable time {latest.isoformat()}",
        )
    return when


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


def _restore_call(spec: DBRestoreSpec, seen: Observed, tags: list[dict[str, str]], when: datetime | None) -> Call:
    t, db, snap = spec.target, seen.source_db or {}, seen.snapshot or {}
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
    if seen.ref.kind == "instance":
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
        if seen.ref.mode == "pit":
            params |= {"SourceDBInstanceIdentifier": seen.source_id, "TargetDBInstanceIdentifier": t.identifier}
            params |= {"RestoreTime": when} if when else {"UseLatestRestorableTime": True}
            return Call("restore_db_instance_to_point_in_time", _clean(params))
        params |= {
            "DBInstanceIdentifier": t.identifier,
            "DBSnapshotIdentifier": snap.get("DBSnapshotArn")
            if seen.ref.snapshot and seen.ref.snapshot.startswith("arn:")
            else snap["DBSnapshotIdentifier"],
        }
        return Call("restore_db_instance_from_db_snapshot", _clean(params))
    params = {
        **common,
        "DBClusterIdentifier": t.identifier,
        "DBClusterParameterGroupName": _copied(
            t.db_cluster_parameter_group_name, _custom([db], "DBClusterParameterGroup")
        ),
        "StorageType": _copied(t.storage_type, db.get("StorageType")),
    }
    if seen.ref.mode == "pit":
        params |= {"SourceDBClusterIdentifier": seen.source_id, "RestoreType": "full-copy"}
        params |= {"RestoreToTime": when} if when else {"UseLatestRestorableTime": True}
        return Call("restore_db_cluster_to_point_in_time", _clean(params))
    params |= {
        "SnapshotIdentifier": snap.get("DBClusterSnapshotArn")
        if (seen.ref.snapshot or "").startswith("arn:")
        else snap["DBClusterSnapshotIdentifier"],
        "Engine": snap.get("Engine") or db.get("Engine"),
        "EngineVersion": snap.get("EngineVersion") or db.get("EngineVersion"),
    }
    return Call("restore_db_cluster_from_snapshot", _clean(params))


def _instance_calls(spec: DBRestoreSpec, seen: Observed, tags: list[dict[str, str]]) -> list[Call]:
    """An Aurora cluster is useless without instances: the writer first, then readers."""
    t, writer = spec.target, seen.source_writer or {}
    cls = _copied(
        t.instances.db_instance_class if t.instances else None, t.db_instance_class, writer.get("DBInstanceClass")
    )
    if cls is None:
        raise SpecError(
            "InvalidSpec",
            "spec.target.instances.dbInstanceClass: the source cluster has no writer to copy the class from; set it",
        )
    engine = (seen.snapshot or {}).get("Engine") or (seen.source_db or {}).get("Engine")
    return [
        Call(
            "create_db_instance",
            _clean(
                {
                    "DBInstanceIdentifier": ident,
                    "DBClusterIdentifier": t.identifier,
                    "Engine": engine,
                    "DBInstanceClass": cls,
                    "PubliclyAccessible": t.publicly_accessible,
                    "DBParameterGroupName": _custom(writer.get("DBParameterGroups", []), "DBParameterGroupName"),
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


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


# --- progress -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    phase: str
    ready: str
    reason: str
    message: str
    fields: dict[str, Any]


def progress(
    kind: Kind, identifier: str, db: dict[str, Any] | None, instances: dict[str, dict[str, Any] | None]
) -> Progress:
    """Status from what the batched poll saw of the target (and, for Aurora, its instances)."""
    if db is None:
        return Progress(
            "Failed", "False", "NotFound", f"{kind} {identifier} no longer exists in RDS", {"rdsStatus": None}
        )
    raw = str(db.get("DBInstanceStatus") or db.get("Status") or "unknown")
    fields = _db_fields(kind, db)
    if raw in FAILED_RDS_STATUSES:
        return Progress("Failed", "False", "RDS" + _camel(raw), f"RDS reports {kind} {identifier} as {raw}", fields)
    missing = [i for i, inst in instances.items() if inst is None]
    if missing:
        return Progress("Failed", "False", "InstanceNotFound", f"DB instance {missing[0]} no longer exists", fields)
    waiting = {
        i: str(inst["DBInstanceStatus"])
        for i, inst in instances.items()
        if inst and inst["DBInstanceStatus"] != "available"
    }
    if raw != "available" or waiting:
        detail = f"{kind} is {raw}" + "".join(f"; {i} is {s}" for i, s in sorted(waiting.items()))
        return Progress("Restoring", "False", "Restoring", detail, fields)
    return Progress(
        "Available", "True", "Available", f"{kind} {identifier} is available at {fields.get('endpoint')}", fields
    )


def _db_fields(kind: Kind, db: dict[str, Any]) -> dict[str, Any]:
    if kind == "instance":
        ep = db.get("Endpoint") or {}
        return {
            "rdsStatus": db.get("DBInstanceStatus"),
            "endpoint": ep.get("Address"),
            "port": ep.get("Port"),
            "engine": db.get("Engine"),
            "engineVersion": db.get("EngineVersion"),
        }
    return {
        "rdsStatus": db.get("Status"),
        "endpoint": db.get("Endpoint"),
        "readerEndpoint": db.get("ReaderEndpoint"),
        "port": db.get("Port"),
        "engine": db.get("Engine"),
        "engineVersion": db.get("EngineVersion"),
    }


def _camel(text: str) -> str:
    return "".join(part.capitalize() for part in text.split("-"))


# --- removal (deletionPolicy, ttl) ------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    calls: list[Call]
    done: bool
    message: str


def final_snapshot_name(identifier: str, uid: str) -> str:
    """Deterministic, so that a retried delete after a restart cannot make a second snapshot."""
    return f"{identifier}-final-{uid[:8]}"


def removal(
    kind: Kind,
    policy: str,
    identifier: str,
    db: dict[str, Any] | None,
    instances: dict[str, dict[str, Any] | None],
    uid: str,
) -> Removal:
    """The next step of removing what this DBRestore created, per its deletionPolicy.

    Only resources tagged with this object's UID are ever deleted; anything else is left alone.
    """
    theirs = [d for d in [db, *instances.values()] if d is not None and not rds.owned_by(d, uid)]
    if theirs:
        return Removal([], True, f"{identifier} was not created by this DBRestore: left alone")
    live = {i: d for i, d in instances.items() if d is not None}
    if db is None and not live:
        return Removal([], True, f"{kind} {identifier} is deleted")
    if db is not None and db.get("DeletionProtection"):
        raise SpecError(
            "DeletionProtected",
            f"{kind} {identifier} has deletion protection on: turn it off in RDS, or set deletionPolicy to Retain",
        )
    final: dict[str, Any] = (
        {"SkipFinalSnapshot": True}
        if policy == "Delete"
        else {"SkipFinalSnapshot": False, "FinalDBSnapshotIdentifier": final_snapshot_name(identifier, uid)}
    )
    if kind == "cluster" and live:
        # Aurora: the member instances go first; RDS refuses to delete a cluster that still has any.
        calls = [
            Call("delete_db_instance", {"DBInstanceIdentifier": i})
            for i, d in sorted(live.items())
            if d.get("DBInstanceStatus") != "deleting"
        ]
        return Removal(calls, False, f"deleting instances {', '.join(sorted(live))}")
    assert db is not None
    if (db.get("DBInstanceStatus") or db.get("Status")) == "deleting":
        return Removal([], False, f"{kind} {identifier} is deleting")
    op, key = (
        ("delete_db_instance", "DBInstanceIdentifier")
        if kind == "instance"
        else ("delete_db_cluster", "DBClusterIdentifier")
    )
    return Removal([Call(op, {key: identifier, **final})], False, f"deleting {kind} {identifier} ({policy})")
