"""The AWS reads of a DBRestore pass: what exists under the spec's names, and (only to create) the
source. Reads only; the decisions are in plan.py, progress.py and removal.py."""

from __future__ import annotations

from functools import partial
from typing import Any

from dbops.core.aws import Aws, StatusCache
from dbops.core.types import Kind, SpecError, owned_by
from dbops.models import DBRestoreSpec
from dbops.restore.plan import Existing, Source
from dbops.restore.source import SourceRef, instance_names, latest_snapshot, no_snapshot_message, same_account


def cached(cache: StatusCache, kind: Kind, region: str, spec: DBRestoreSpec, uid: str) -> Existing | None:
    """From the batched poll (progress only); None until the poll has seen every name."""
    ident = spec.target.identifier
    names = track(cache, kind, region, spec, uid)
    target = cache.get(region, kind, ident)
    members = {n: cache.get(region, "instance", n) for n in names}
    if not target.seen or not all(m.seen for m in members.values()):
        return None
    return Existing(target.db, {n: m.db for n, m in members.items()})


def track(cache: StatusCache, kind: Kind, region: str, spec: DBRestoreSpec, uid: str) -> list[str]:
    """Have the batched poll look at the spec's names for this object; returns the instance names."""
    names = instance_names(spec) if kind == "cluster" else []
    cache.track(region, kind, [spec.target.identifier], owner=uid)
    cache.track(region, "instance", names, owner=uid)
    return names


def fresh(aws: Aws, cache: StatusCache, kind: Kind, region: str, spec: DBRestoreSpec, uid: str) -> Existing:
    """Read now, for a decision to act on. For Aurora, the instances looked at are the spec's names and
    every member of the cluster that carries this object's tag (a smaller count left some behind)."""
    ident = spec.target.identifier
    target = aws.look_one(region, kind, ident)
    names = set(instance_names(spec)) if kind == "cluster" else set()
    if kind == "cluster" and (owned_by(target, uid) or spec.adopt):  # (adopt: the retained one's members)
        names |= {m["DBInstanceIdentifier"] for m in (target or {}).get("DBClusterMembers", [])}
    found = aws.look(region, "instance", names)
    members: dict[str, dict[str, Any] | None] = {n: found.get(n) for n in sorted(names)}
    cache.put(region, kind, {ident: target})
    cache.put(region, "instance", members)
    return Existing(target, members)


def source(aws: Aws, ref: SourceRef, spec: DBRestoreSpec) -> Source:
    """The source, the snapshot and (Aurora) the source's writer: read fresh, only to create."""
    seen = Source(ref)
    region, kind = ref.region, ref.kind
    if ref.endpoint and ref.endpoint.custom:
        seen.source_id = custom_endpoint_cluster(aws, region, ref.endpoint.identifier, "spec.source")
    else:
        seen.source_id = ref.db_identifier
    if ref.mode == "snapshot":
        seen.snapshot = _named_snapshot(aws, region, kind, ref.snapshot or "")
        seen.source_id = seen.snapshot.get("DBInstanceIdentifier") or seen.snapshot.get("DBClusterIdentifier")
    elif ref.mode == "latest":
        assert spec.source.latest_snapshot is not None
        wanted = spec.source.latest_snapshot.snapshot_type
        seen.snapshot = latest_snapshot(_snapshots(aws, region, kind, seen.source_id or ""), wanted)
        if seen.snapshot is None:
            raise SpecError("SnapshotNotFound", no_snapshot_message(kind, seen.source_id, wanted))
    if seen.source_id:
        ident = seen.source_id
        seen.source_db = aws.source(kind, region, ident, partial(aws.look_one, region, kind, ident))
    _check_endpoint_account(ref, seen)
    if seen.source_db and kind == "cluster":
        seen.source_writer = _writer(aws, region, seen.source_db)
    return seen


def _check_endpoint_account(ref: SourceRef, seen: Source) -> None:
    """A hostname names a database in one account: the database found by its first label must answer
    at that very hostname, or it is a namesake in this account and is not used."""
    if ref.endpoint is None or ref.endpoint.custom:
        return
    db = seen.source_db
    if ref.mode == "pit" and db is None:
        raise SpecError("SourceNotFound", f"spec.source.pointInTime.endpoint: no {ref.kind} {ref.endpoint.identifier}")
    address = (db or {}).get("Endpoint")
    address = address.get("Address") if isinstance(address, dict) else address
    if db is not None and not same_account(ref.endpoint, address):
        raise SpecError(
            "EndpointMismatch",
            f"spec.source: {ref.endpoint.host} is not the endpoint of {ref.kind} {ref.endpoint.identifier} in this "
            f"account (it answers at {address}); check the hostname",
        )


def custom_endpoint_cluster(aws: Aws, region: str, endpoint_id: str, field: str) -> str:
    """The cluster a custom endpoint belongs to (its hostname does not name it)."""
    eps = aws.call(region, "describe_db_cluster_endpoints", DBClusterEndpointIdentifier=endpoint_id)
    if not eps["DBClusterEndpoints"]:
        raise SpecError("EndpointNotFound", f"{field}: no cluster has the custom endpoint {endpoint_id}")
    return str(eps["DBClusterEndpoints"][0]["DBClusterIdentifier"])


def _named_snapshot(aws: Aws, region: str, kind: Kind, ident: str) -> dict[str, Any]:
    found: dict[str, Any] | None = aws.source(
        f"{kind}-snapshot", region, ident, lambda: aws.snapshots(region, kind, [ident]).get(ident)
    )
    if found is None:
        field_name = "dbSnapshot" if kind == "instance" else "dbClusterSnapshot"
        raise SpecError("SnapshotNotFound", f"spec.source.{field_name}: snapshot {ident} not found")
    return found


def _snapshots(aws: Aws, region: str, kind: Kind, source: str) -> list[dict[str, Any]]:
    if kind == "instance":
        op, key, by = "describe_db_snapshots", "DBSnapshots", "DBInstanceIdentifier"
    else:
        op, key, by = "describe_db_cluster_snapshots", "DBClusterSnapshots", "DBClusterIdentifier"
    found: list[dict[str, Any]] = aws.source(op, region, source, lambda: aws.paginate(region, op, key, **{by: source}))
    return found


def _writer(aws: Aws, region: str, cluster: dict[str, Any]) -> dict[str, Any] | None:
    writer = next((m for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")), None)
    if writer is None:
        return None
    ident = str(writer["DBInstanceIdentifier"])
    read = partial(aws.look_one, region, "instance", ident)
    found: dict[str, Any] | None = aws.source("instance", region, ident, read)
    return found
