"""What a DBRestore spec asks for, before any AWS call: the source, its kind and region, the names of
what will be created, durations. Pure functions over the pydantic spec."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from dbops.core.types import Kind, SpecError
from dbops.models import RDS_HOSTNAME, DBReference, DBRestoreSpec

Mode = Literal["snapshot", "latest", "pit"]
_HOST = re.compile(RDS_HOSTNAME)


@dataclass(frozen=True)
class Endpoint:
    identifier: str
    kind: Kind
    region: str
    custom: bool  # a custom cluster endpoint's first label names the endpoint, not the cluster
    host: str

    @property
    def account_hash(self) -> str:
        """The second label without its cluster prefix: RDS's per-account, per-region hash."""
        second = self.host.split(".")[1]
        for prefix in ("cluster-custom-", "cluster-ro-", "cluster-"):
            if second.startswith(prefix):
                return second[len(prefix) :]
        return second


def parse_endpoint(host: str) -> Endpoint:
    """Split an RDS endpoint hostname; it is never resolved through DNS nor connected to."""
    host = host.strip().lower().rstrip(".")
    if not _HOST.match(host):
        raise SpecError("InvalidEndpoint", f"{host!r} is not an RDS endpoint hostname (*.rds.amazonaws.com)")
    first, second, region = host.split(".")[:3]
    is_cluster = second.startswith("cluster-")
    return Endpoint(first, "cluster" if is_cluster else "instance", region, second.startswith("cluster-custom-"), host)


def same_account(given: Endpoint, actual_address: str | None) -> bool:
    """Whether the database found answers at the hostname given: the hash label (the account's) must
    match, so that a hostname copied from another account never resolves to this account's namesake."""
    if not actual_address:
        return True  # still creating: no address yet to compare
    try:
        return parse_endpoint(actual_address).account_hash == given.account_hash
    except SpecError:
        return False


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


def kind_of(spec: DBRestoreSpec, default_region: str) -> tuple[Kind, str]:
    """The kind and region of what this spec creates (from the spec alone)."""
    ref = source_ref(spec, default_region)
    return ref.kind, ref.region


def instance_names(spec: DBRestoreSpec) -> list[str]:
    """Aurora: the instances dbops creates in the restored cluster (the first is the writer)."""
    count = spec.target.instances.count if spec.target.instances else 1
    return [f"{spec.target.identifier}-{n}" for n in range(1, count + 1)]


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


def latest_snapshot(snapshots: list[dict[str, Any]], snapshot_type: str) -> dict[str, Any] | None:
    """The newest available snapshot of the wanted type ("any": automated or manual)."""
    wanted = {"automated", "manual"} if snapshot_type == "any" else {snapshot_type}
    usable = [s for s in snapshots if s.get("Status") == "available" and s.get("SnapshotType") in wanted]
    return max(usable, key=lambda s: s.get("SnapshotCreateTime") or datetime.min.replace(tzinfo=UTC), default=None)


def no_snapshot_message(kind: Kind, source: str | None, snapshot_type: str) -> str:
    which = "" if snapshot_type == "any" else f"{snapshot_type} "
    return f"spec.source.latestSnapshot: {kind} {source} has no available {which}snapshot"
