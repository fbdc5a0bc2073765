"""DBAttach decisions: which reader instance to create or remove next, and what the status says.

Pure functions. Every pass, `decide` compares the spec with what RDS reports and returns at most one
call (instances are added and removed one at a time), plus the status to write. Only instances tagged
with this object's UID are ever touched; the cluster and its writer never are.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dbops.core.status import View
from dbops.core.types import Call, SpecError, owned_by, retain_calls
from dbops.models import DBAttachSpec

MAX_INSTANCES = 15


def desired_names(spec: DBAttachSpec) -> list[str]:
    if spec.identifier:
        return [spec.identifier]
    return [f"{spec.identifier_prefix}-{n}" for n in range(1, spec.count + 1)]


def candidate_names(spec: DBAttachSpec) -> list[str]:
    """Every name this object may have created: the desired ones and any left from a larger count."""
    if spec.identifier:
        return [spec.identifier]
    return [f"{spec.identifier_prefix}-{n}" for n in range(1, MAX_INSTANCES + 1)]


def _index(name: str) -> int:
    match = re.search(r"-(\d+)$", name)
    return int(match.group(1)) if match else 0


@dataclass
class Seen:
    """What the poll saw: the cluster, its writer, and every candidate instance name."""

    cluster: dict[str, Any] | None
    instances: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    writer: dict[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    call: Call | None
    view: View


def writer_id(cluster: dict[str, Any]) -> str | None:
    return next(
        (m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")), None
    )


def decide(spec: DBAttachSpec, seen: Seen, uid: str, cluster_id: str, tags: list[dict[str, str]]) -> Decision:
    cluster = seen.cluster
    if cluster is None:
        raise SpecError("ClusterNotFound", f"spec.cluster: Aurora cluster {cluster_id} does not exist")
    engine = str(cluster.get("Engine", ""))
    if not engine.startswith("aurora"):
        raise SpecError("NotAurora", f"spec.cluster: cluster {cluster_id} runs {engine}, not Aurora")
    desired = desired_names(spec)
    foreign = [n for n in desired if seen.instances.get(n) is not None and not owned_by(seen.instances[n], uid)]
    if foreign:
        raise SpecError(
            "NameCollision",
            f"DB instance {foreign[0]} already exists and was not created by this DBAttach; dbops leaves it alone",
        )
    ours = {n: db for n, db in seen.instances.items() if db is not None and owned_by(db, uid)}
    fields = _status_fields(spec, cluster, ours, desired)
    busy = sorted(n for n, db in ours.items() if db.get("DBInstanceStatus") != "available")
    if busy:
        states = ", ".join(f"{n} is {ours[n].get('DBInstanceStatus')}" for n in busy)
        return Decision(None, View("Attaching", "False", "Attaching", states, fields))
    missing = [n for n in desired if n not in ours]
    if missing:
        call = _create(spec, seen, cluster, cluster_id, missing[0], ours, tags)
        return Decision(call, View("Attaching", "False", "Attaching", f"creating {missing[0]}", fields))
    extra = sorted((n for n in ours if n not in desired), key=_index, reverse=True)
    writer = writer_id(cluster)
    removable = [n for n in extra if n != writer]
    if removable:
        call = Call("delete_db_instance", {"DBInstanceIdentifier": removable[0], "SkipFinalSnapshot": True})
        return Decision(call, View("Attaching", "False", "ScalingIn", f"removing {removable[0]}", fields))
    message = f"{len(desired)}/{len(desired)} instances available in {cluster_id}"
    if extra:
        message += f"; {extra[0]} is the writer now and is kept"
    return Decision(None, View("Available", "True", "Available", message, fields))


def connection_details(cluster: dict[str, Any], instances: list[dict[str, Any]]) -> dict[str, str]:
    """What applications need to reach the readers, as AWS reports it now (string values, for a Secret
    or ConfigMap). `instances`: this object's, as its status lists them (in identifier order)."""
    own = [str(i["endpoint"]) for i in instances if i.get("endpoint") and i.get("role") != "writer"]
    found = {
        "readerEndpoint": cluster.get("ReaderEndpoint"),
        "port": cluster.get("Port"),
        "engine": cluster.get("Engine"),
        "username": cluster.get("MasterUsername"),
        "database": cluster.get("DatabaseName"),
        "instanceEndpoints": ",".join(own),
    }
    return {k: str(v) for k, v in found.items() if v not in (None, "")}


def _status_fields(
    spec: DBAttachSpec, cluster: dict[str, Any], ours: dict[str, dict[str, Any]], desired: list[str]
) -> dict[str, Any]:
    writer = writer_id(cluster)
    ready = sum(1 for n in desired if (ours.get(n) or {}).get("DBInstanceStatus") == "available")
    return {
        "endpoint": cluster.get("ReaderEndpoint"),
        "engine": cluster.get("Engine"),
        "ready": f"{ready}/{len(desired)}",
        "instances": [
            {
                "identifier": n,
                "availabilityZone": db.get("AvailabilityZone"),
                "endpoint": (db.get("Endpoint") or {}).get("Address"),
                "role": "writer" if n == writer else "reader",
                "rdsStatus": db.get("DBInstanceStatus"),
            }
            for n, db in sorted(ours.items(), key=lambda item: _index(item[0]))
        ],
    }


def _zone(spec: DBAttachSpec, cluster: dict[str, Any], placed: list[str | None]) -> str | None:
    """The zone with the fewest of the cluster's instances (ours and the writer) in it."""
    zones: list[str] = [str(z) for z in spec.availability_zones or cluster.get("AvailabilityZones") or []]
    if not zones:
        return None
    count = Counter(z for z in placed if z)
    return min(zones, key=lambda z: (count[z], zones.index(z)))


def _create(
    spec: DBAttachSpec,
    seen: Seen,
    cluster: dict[str, Any],
    cluster_id: str,
    name: str,
    ours: dict[str, dict[str, Any]],
    tags: list[dict[str, str]],
) -> Call:
    """A reader in the cluster. Only instance-level settings: the engine comes from the cluster and
    cluster-owned settings (network, port, storage, credentials) are never set on a member."""
    writer = seen.writer or {}
    cls = spec.db_instance_class or writer.get("DBInstanceClass")
    if not cls:
        raise SpecError("InvalidSpec", "spec.dbInstanceClass: the cluster has no writer to copy the class from")
    params_group = spec.db_parameter_group_name or next(
        (
            g["DBParameterGroupName"]
            for g in writer.get("DBParameterGroups", [])
            if not str(g.get("DBParameterGroupName", "")).startswith("default")
        ),
        None,
    )
    placed = [writer.get("AvailabilityZone")] + [db.get("AvailabilityZone") for db in ours.values()]
    params: dict[str, Any] = {
        "DBInstanceIdentifier": name,
        "DBClusterIdentifier": cluster_id,
        "Engine": cluster["Engine"],
        "DBInstanceClass": cls,
        "AvailabilityZone": _zone(spec, cluster, placed),
        "PromotionTier": spec.promotion_tier,
        "DBParameterGroupName": params_group,
        "PubliclyAccessible": spec.publicly_accessible,
        "Tags": tags,
    }
    if spec.performance_insights:
        pi = spec.performance_insights
        params |= {
            "EnablePerformanceInsights": pi.enabled,
            "PerformanceInsightsRetentionPeriod": pi.retention_period,
            "PerformanceInsightsKMSKeyId": pi.kms_key_id,
        }
    if spec.monitoring:
        params |= {"MonitoringInterval": spec.monitoring.interval, "MonitoringRoleArn": spec.monitoring.role_arn}
    return Call("create_db_instance", {k: v for k, v in params.items() if v is not None})


def removal(
    spec: DBAttachSpec, instances: dict[str, dict[str, Any] | None], writers: set[str], uid: str, when: str = ""
) -> tuple[list[Call], bool, str]:
    """deletionPolicy Delete: remove this object's instances, never a cluster's writer (a failover may
    have made one of ours the writer). Retain: tag ours as retained on purpose, and keep them. Returns
    the calls, whether nothing is left to do, and what to say."""
    if spec.deletion_policy == "Retain":
        return (
            retain_calls(list(instances.values()), uid, when),
            True,
            "instances left in place (deletionPolicy Retain)",
        )
    ours = {n: db for n, db in instances.items() if db is not None and owned_by(db, uid)}
    kept = sorted(n for n in ours if n in writers)
    ours = {n: db for n, db in ours.items() if n not in writers}
    if not ours:
        note = f"; {kept[0]} is a cluster writer now and is kept" if kept else ""
        return [], True, ("instances deleted" if not kept else "nothing else to delete") + note
    calls = [
        Call("delete_db_instance", {"DBInstanceIdentifier": n, "SkipFinalSnapshot": True})
        for n, db in sorted(ours.items())
        if db.get("DBInstanceStatus") != "deleting"
    ]
    return calls, False, f"deleting {', '.join(sorted(ours))}"
