"""Removing what a DBRestore created, per its deletionPolicy (on deletion, or when its ttl is up).

Pure functions. Only resources carrying this object's UID tag are ever deleted; anything else under
the same names is left alone and said so. Each step is decided from what AWS reports now, never from
the object's status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbops.core.types import Call, Kind, SpecError, owned_by, retain_calls


@dataclass(frozen=True)
class Removal:
    calls: list[Call]
    done: bool
    reason: str  # the record's reason: Deleting, Deleted, Retained, NothingToDelete, LeftAlone
    message: str


def final_snapshot_name(identifier: str, uid: str) -> str:
    """Deterministic, so that a retried delete after a restart cannot make a second snapshot."""
    return f"{identifier}-final-{uid[:8]}"


def removal(
    kind: Kind,
    policy: str,
    identifier: str,
    db: dict[str, Any] | None,
    members: dict[str, dict[str, Any] | None],
    uid: str,
    when: str = "",
) -> Removal:
    """The next step of removing what this object created. `members`: the Aurora instances found under
    the spec's names and among the cluster's members (only ours are ever touched). With Retain, what is
    ours is tagged as retained (at `when`) and kept."""
    if policy == "Retain":
        calls = retain_calls([db, *members.values()], uid, when)
        return Removal(calls, True, "Retained", f"{kind} {identifier} left in place (deletionPolicy Retain)")
    ours = {i: d for i, d in members.items() if d is not None and owned_by(d, uid)}
    target = db if owned_by(db, uid) else None
    if target is None and not ours:
        if db is not None:
            return Removal([], True, "LeftAlone", f"{kind} {identifier} was not created by this object: left alone")
        return Removal([], True, "NothingToDelete", f"nothing to delete: no {kind} {identifier} exists")
    if target is not None and target.get("DeletionProtection"):
        raise SpecError(
            "DeletionProtected",
            f"{kind} {identifier} has deletion protection on: turn it off in RDS, or set deletionPolicy to Retain",
        )
    if ours:
        # Aurora: the member instances go first; RDS refuses to delete a cluster that still has any.
        calls = [
            Call("delete_db_instance", {"DBInstanceIdentifier": i})
            for i, d in sorted(ours.items())
            if _status(d) != "deleting"
        ]
        return Removal(calls, False, "Deleting", f"deleting instances {', '.join(sorted(ours))}")
    assert target is not None
    if _status(target) == "deleting":
        return Removal([], False, "Deleting", f"{kind} {identifier} is deleting")
    final: dict[str, Any] = (
        {"SkipFinalSnapshot": True}
        if policy == "Delete"
        else {"SkipFinalSnapshot": False, "FinalDBSnapshotIdentifier": final_snapshot_name(identifier, uid)}
    )
    op, key = (
        ("delete_db_instance", "DBInstanceIdentifier")
        if kind == "instance"
        else ("delete_db_cluster", "DBClusterIdentifier")
    )
    how = "without a final snapshot" if policy == "Delete" else f"final snapshot {final['FinalDBSnapshotIdentifier']}"
    return Removal([Call(op, {key: identifier, **final})], False, "Deleting", f"deleting {kind} {identifier} ({how})")


def _status(db: dict[str, Any]) -> str:
    return str(db.get("DBInstanceStatus") or db.get("Status") or "")


def gone_message(kind: Kind, identifier: str, policy: str, uid: str) -> str:
    """The words of a finished removal, for the event and the audit trail."""
    if policy == "Snapshot":
        return f"{kind} {identifier} deleted; final snapshot {final_snapshot_name(identifier, uid)} kept"
    return f"{kind} {identifier} deleted"
