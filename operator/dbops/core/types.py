"""Plain types shared by the decisions of every kind: no AWS or Kubernetes client here (the import
contract in pyproject.toml keeps it so), so that decisions stay pure functions easy to test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["instance", "cluster"]

# Tags on everything dbops creates: ownership is proven by the owner UID, never by the name.
OWNER_TAG = "dbops.dev/owner-uid"
MANAGED_BY_TAG = "dbops.dev/managed-by"
NAMESPACE_TAG = "dbops.dev/namespace"
NAME_TAG = "dbops.dev/name"
KIND_TAG = "dbops.dev/kind"
SOURCE_TAG = "dbops.dev/source"  # what a restore was made from: status reads it back from AWS
# Set when the object goes with deletionPolicy Retain: the database was kept on purpose (the orphan
# sweep leaves it alone; adoption can take it back).
RETAINED_TAG = "dbops.dev/retained-at"


class SpecError(Exception):
    """The spec cannot be carried out as written; the message names the field. The object is Failed
    until its spec changes or a user asks for a retry (the dbops.dev/retry annotation)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Call:
    """One AWS call to make: the boto3 operation name and its parameters."""

    operation: str
    params: dict[str, Any]

    @property
    def target(self) -> str:
        p = self.params
        return str(
            p.get("DBInstanceIdentifier") or p.get("TargetDBInstanceIdentifier") or p.get("DBClusterIdentifier") or ""
        )


def ownership_tags(
    uid: str, namespace: str, name: str, kind: str, extra: dict[str, str] | None = None, source: str | None = None
) -> list[dict[str, str]]:
    """The tags of everything an object creates: the user's, then dbops' own (which win)."""
    tags = {**(extra or {}), MANAGED_BY_TAG: "dbops", OWNER_TAG: uid, NAMESPACE_TAG: namespace, NAME_TAG: name}
    tags[KIND_TAG] = kind
    if source:
        tags[SOURCE_TAG] = source[:256]
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tags_of(obj: dict[str, Any] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in (obj or {}).get("TagList", [])}


def owned_by(obj: dict[str, Any] | None, uid: str) -> bool:
    return obj is not None and tags_of(obj).get(OWNER_TAG) == uid


def retain_calls(dbs: list[dict[str, Any] | None], uid: str, when: str) -> list[Call]:
    """Tag what this object created and keeps (deletionPolicy Retain) as retained on purpose."""
    calls = []
    for db in dbs:
        if db is None or not owned_by(db, uid) or RETAINED_TAG in tags_of(db):
            continue
        arn = db.get("DBInstanceArn") or db.get("DBClusterArn")
        if arn:
            tags = [{"Key": MANAGED_BY_TAG, "Value": "dbops"}, {"Key": RETAINED_TAG, "Value": when}]
            calls.append(Call("add_tags_to_resource", {"ResourceName": arn, "Tags": tags}))
    return calls


def clean(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters without the ones left unset (boto3 refuses None)."""
    return {k: v for k, v in params.items() if v is not None}
