"""A DBRestore in the policies' terms (dbops.policy): what it restores from and creates, with which
settings, and what a fresh read of AWS says of its source. Pure functions over the spec and AWS's data."""

from __future__ import annotations

from typing import Any

from dbops.core.types import tags_of
from dbops.models import DBRestoreSpec
from dbops.policy.request import Found, Ref, RefKind, Request
from dbops.policy.rules import Forced
from dbops.restore.plan import Source
from dbops.restore.source import instance_names, parse_endpoint, source_ref

_SOURCE_FIELD = {"snapshot": "spec.source.dbSnapshot", "cluster-snapshot": "spec.source.dbClusterSnapshot"}
_MODES = (("latestSnapshot", "latest"), ("pointInTime", "pit"))


def snapshot_name(ref: str) -> str:
    """A snapshot's identifier, also when named by ARN (…:snapshot:NAME, NAME may be rds:…)."""
    for marker in (":cluster-snapshot:", ":snapshot:"):
        if ref.startswith("arn:") and marker in ref:
            return ref.split(marker, 1)[1]
    return ref


def request(spec: DBRestoreSpec, namespace: str, default_region: str) -> Request:
    ref = source_ref(spec, default_region)
    t, src = spec.target, spec.source
    refs: list[Ref] = []
    region_field = "spec.region"
    for kind, value in (("snapshot", src.db_snapshot), ("cluster-snapshot", src.db_cluster_snapshot)):
        if value:
            refs.append(Ref(kind, snapshot_name(value), _SOURCE_FIELD[kind]))  # type: ignore[arg-type]
            region_field = _SOURCE_FIELD[kind] if value.startswith("arn:") and not spec.region else region_field
    for name, _ in _MODES:
        db = src.latest_snapshot if name == "latestSnapshot" else src.point_in_time
        if db is None:
            continue
        where = f"spec.source.{name}"
        if db.db_instance:
            refs.append(Ref("instance", db.db_instance, f"{where}.dbInstance"))
        if db.db_cluster:
            refs.append(Ref("cluster", db.db_cluster, f"{where}.dbCluster"))
        if db.endpoint:
            ep = parse_endpoint(db.endpoint)
            refs.append(Ref(ep.kind, None if ep.custom else ep.identifier, f"{where}.endpoint"))
            region_field = region_field if spec.region else f"{where}.endpoint"
    cluster = ref.kind == "cluster"
    instance_class = t.instances.db_instance_class if cluster and t.instances else t.db_instance_class
    return Request(
        kind="DBRestore",
        namespace=namespace,
        region=ref.region,
        paths={
            "region": region_field,
            "identifier": "spec.target.identifier",
            "instance_class": "spec.target.instances.dbInstanceClass" if cluster else "spec.target.dbInstanceClass",
            "subnet_group": "spec.target.dbSubnetGroupName",
            "security_groups": "spec.target.vpcSecurityGroupIds",
            "public": "spec.target.publiclyAccessible",
            "deletion_protection": "spec.target.deletionProtection",
            "deletion_policy": "spec.deletionPolicy",
            "tags": "spec.target.tags",
            "ttl": "spec.ttl",
        },
        sources=tuple(refs),
        identifiers=(t.identifier, *(instance_names(spec) if cluster else [])),
        instance_class=instance_class,
        subnet_group=t.db_subnet_group_name,
        security_groups=tuple(t.vpc_security_group_ids) if t.vpc_security_group_ids is not None else None,
        public=t.publicly_accessible,
        deletion_protection=t.deletion_protection,
        deletion_policy=spec.deletion_policy,
        tags=dict(t.tags or {}),
        ttl=spec.ttl,
    )


def with_forced(spec: DBRestoreSpec, forced: Forced) -> DBRestoreSpec:
    """The spec with the policies' forced settings where it leaves them out (the restore then uses them
    instead of copying the source's network), and their tags merged in."""
    t = spec.target
    update: dict[str, Any] = {}
    if t.db_subnet_group_name is None and forced.subnet_group:
        update["db_subnet_group_name"] = forced.subnet_group
    if t.vpc_security_group_ids is None and forced.security_groups is not None:
        update["vpc_security_group_ids"] = list(forced.security_groups)
    if forced.deletion_protection and t.deletion_protection is None:
        update["deletion_protection"] = True
    if forced.tags:
        update["tags"] = {**(t.tags or {}), **forced.tags}
    return spec.model_copy(update={"target": t.model_copy(update=update)}) if update else spec


def found(source: Source) -> list[Found]:
    """The snapshot and the DB a restore uses, as AWS describes them, with the field that leads to them."""
    ref = source.ref
    field = _source_field(source)
    out: list[Found] = []
    snap = source.snapshot
    if snap is not None:
        kind: RefKind = "snapshot" if ref.kind == "instance" else "cluster-snapshot"
        ident = snap.get("DBSnapshotIdentifier") or snap.get("DBClusterSnapshotIdentifier") or ""
        encrypted = snap.get("Encrypted", snap.get("StorageEncrypted"))
        out.append(
            Found(
                "source", kind, str(ident), field, tags_of(snap), _engine(snap), encrypted, ref.mode == "snapshot", True
            )
        )
    if source.source_id:
        db = source.source_db or {}
        out.append(
            Found(
                "source",
                ref.kind,
                source.source_id,
                field,
                tags_of(db),
                _engine(db),
                db.get("StorageEncrypted"),
                tagged=ref.mode != "snapshot",
                restored=ref.mode == "pit",
            )
        )
    return out


def _source_field(source: Source) -> str:
    ref = source.ref
    if ref.mode == "snapshot":
        return _SOURCE_FIELD["snapshot" if ref.kind == "instance" else "cluster-snapshot"]
    name = {mode: field for field, mode in _MODES}[ref.mode]
    if ref.endpoint is not None:
        return f"spec.source.{name}.endpoint"
    return f"spec.source.{name}.{'dbInstance' if ref.kind == 'instance' else 'dbCluster'}"


def _engine(obj: dict[str, Any]) -> str | None:
    engine = obj.get("Engine")
    return str(engine) if engine else None
