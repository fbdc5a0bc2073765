"""What a DBRestore's status says, from what AWS reports of the databases carrying its UID tag.

Pure functions. The status is derived each pass from the spec and AWS: nothing in the previous
status decides which database is this object's, nor what it shows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dbops.core.status import View, timestamp
from dbops.core.types import SOURCE_TAG, Kind, tags_of
from dbops.models import DBRestoreSpec
from dbops.restore.source import instance_names, parse_duration

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


def identity(spec: DBRestoreSpec, kind: Kind, region: str) -> dict[str, Any]:
    """The status fields that follow from the spec alone."""
    cluster = kind == "cluster"
    return {
        "kind": kind,
        "region": region,
        "dbInstanceIdentifier": None if cluster else spec.target.identifier,
        "dbClusterIdentifier": spec.target.identifier if cluster else None,
        "instanceIdentifiers": instance_names(spec) if cluster else None,
    }


def progress(kind: Kind, identifier: str, db: dict[str, Any], members: dict[str, dict[str, Any] | None]) -> View:
    """Status from what AWS reports of the target (ours) and, for Aurora, its instances."""
    raw = str(db.get("DBInstanceStatus") or db.get("Status") or "unknown")
    fields = db_fields(kind, db)
    if raw in FAILED_RDS_STATUSES:
        return View("Failed", "False", "RDS" + _camel(raw), f"RDS reports {kind} {identifier} as {raw}", fields)
    missing = sorted(i for i, inst in members.items() if inst is None)
    if missing:
        return View(
            "Restoring", "False", "CreatingInstances", f"cluster is {raw}; creating {', '.join(missing)}", fields
        )
    waiting = {
        i: str(inst["DBInstanceStatus"])
        for i, inst in members.items()
        if inst and inst.get("DBInstanceStatus") != "available"
    }
    if raw != "available" or waiting:
        detail = f"{kind} is {raw}" + "".join(f"; {i} is {s}" for i, s in sorted(waiting.items()))
        return View("Restoring", "False", "Restoring", detail, fields)
    return View(
        "Available", "True", "Available", f"{kind} {identifier} is available at {fields.get('endpoint')}", fields
    )


def db_fields(kind: Kind, db: dict[str, Any]) -> dict[str, Any]:
    source = tags_of(db).get(SOURCE_TAG)
    if kind == "instance":
        ep = db.get("Endpoint") or {}
        return {
            "rdsStatus": db.get("DBInstanceStatus"),
            "endpoint": ep.get("Address"),
            "port": ep.get("Port"),
            "engine": db.get("Engine"),
            "engineVersion": db.get("EngineVersion"),
            "source": source,
        }
    return {
        "rdsStatus": db.get("Status"),
        "endpoint": db.get("Endpoint"),
        "readerEndpoint": db.get("ReaderEndpoint"),
        "port": db.get("Port"),
        "engine": db.get("Engine"),
        "engineVersion": db.get("EngineVersion"),
        "source": source,
    }


def expires_at(spec: DBRestoreSpec, db: dict[str, Any] | None) -> datetime | None:
    """When the database goes per spec.ttl: its creation time in RDS plus the ttl. Read from AWS each
    pass, so that a ttl set or shortened later takes effect, and no status field can move it."""
    if not spec.ttl or db is None:
        return None
    created = db.get("InstanceCreateTime") or db.get("ClusterCreateTime")
    if not isinstance(created, datetime):
        return None
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    return (created + parse_duration(spec.ttl)).replace(microsecond=0)


def expiry_field(when: datetime | None) -> dict[str, Any]:
    return {"expiresAt": timestamp(when) if when else None}


def until(when: datetime | None, now: datetime) -> float | None:
    return None if when is None else max(0.0, (when - now) / timedelta(seconds=1))


def _camel(text: str) -> str:
    return "".join(part.capitalize() for part in text.split("-"))


def connection_details(kind: Kind, db: dict[str, Any], password: str | None) -> dict[str, str]:
    """What applications need to reach the database, as AWS reports it now (string values, for a
    Secret or ConfigMap). `password`: the one dbops set from the user's Secret, if it is to be written."""
    fields = db_fields(kind, db)
    secret = db.get("MasterUserSecret") or {}
    found = {
        "endpoint": fields.get("endpoint"),
        "readerEndpoint": fields.get("readerEndpoint"),
        "port": fields.get("port"),
        "engine": fields.get("engine"),
        "username": db.get("MasterUsername"),
        "database": db.get("DBName") or db.get("DatabaseName"),
        "masterUserSecretArn": secret.get("SecretArn"),
        "password": password,
    }
    return {k: str(v) for k, v in found.items() if v not in (None, "")}
