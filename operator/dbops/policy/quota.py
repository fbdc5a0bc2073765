"""How much a namespace holds and has in flight, from its objects as the reconcile core last saw them
(their status, as the watch brought it) and the room granted to creates whose status is not written
yet. Pure functions: the lock and the grants are the store's.

Status is the operator's own report here, and it can only ever make an object wait: a status that
claims less than AWS holds is corrected by the next pass of that object, and nothing is ever deleted or
failed for a limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dbops.core.status import condition
from dbops.policy.rules import Limits

QUOTA_REASON = "QuotaExceeded"


@dataclass(frozen=True)
class Grant:
    """Room given to an object for its create calls: what it will hold once they land."""

    kind: str
    databases: int
    restoring: bool  # a DBRestore's restore call: in flight until it is Available


def _uid(body: dict[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("uid", ""))


def _status(body: dict[str, Any]) -> dict[str, Any]:
    return dict(body.get("status") or {})


def holds(body: dict[str, Any]) -> int:
    """The databases an object holds, as its status says: a DBRestore's restored instance or cluster
    (until it expired or was found deleted outside dbops), a DBAttach's readers."""
    status = _status(body)
    if body.get("kind") == "DBAttach":
        return len(status.get("instances") or [])
    ready = condition(status.get("conditions")) or {}
    gone = status.get("phase") == "Expired" or ready.get("reason") == "NotFound"
    return 1 if status.get("restoreCallTime") and not gone else 0


def restoring(body: dict[str, Any]) -> bool:
    status = _status(body)
    return (
        body.get("kind") == "DBRestore" and bool(status.get("restoreCallTime")) and status.get("phase") == "Restoring"
    )


def waits(body: dict[str, Any]) -> bool:
    """In line for room: a DBRestore that has not made its restore call, or a DBAttach told to wait."""
    meta, status = body.get("metadata") or {}, _status(body)
    if meta.get("deletionTimestamp"):
        return False
    if body.get("kind") == "DBRestore":
        return not status.get("restoreCallTime") and status.get("phase") in (None, "Pending")
    return (condition(status.get("conditions")) or {}).get("reason") == QUOTA_REASON


def order(body: dict[str, Any]) -> tuple[str, str, str]:
    """Creation order (the API server's timestamps have seconds; the name breaks ties)."""
    meta = body.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or ""), str(body.get("kind") or ""), str(meta.get("name") or ""))


def room(
    me: dict[str, Any], bodies: list[dict[str, Any]], grants: dict[str, Grant], limits: Limits, wanted: Grant
) -> str | None:
    """None: `me` may make its create calls now; else why it waits. Objects created before it and
    waiting too go first."""
    uid = _uid(me)
    namespace = (me.get("metadata") or {}).get("namespace")
    others = [b for b in bodies if _uid(b) != uid]
    ahead = [b for b in others if waits(b) and _uid(b) not in grants and order(b) < order(me)]
    line = f"; {len(ahead)} ahead of it in line" if ahead else ""
    if wanted.restoring and limits.restores_in_flight:
        limit, by = limits.restores_in_flight
        flying = sum(1 for b in others if restoring(b) or (grants.get(_uid(b)) or _NONE).restoring)
        ahead_restores = sum(1 for b in ahead if b.get("kind") == "DBRestore")
        if flying + ahead_restores >= limit:
            return (
                f"{flying} restores in flight in namespace {namespace}, and DBPolicy {by} allows {limit} at once{line}"
            )
    if limits.databases_owned:
        limit, by = limits.databases_owned
        owned = sum(max(holds(b), (grants.get(_uid(b)) or _NONE).databases) for b in others)
        if owned + len(ahead) + wanted.databases > limit:
            return f"namespace {namespace} owns {owned} databases, and DBPolicy {by} allows {limit}{line}"
    return None


def settled(body: dict[str, Any] | None, grant: Grant) -> bool:
    """A grant no longer needed: the object is gone, or its status shows what the grant was for."""
    if body is None:
        return True
    if grant.restoring:
        return bool(_status(body).get("restoreCallTime")) or _status(body).get("phase") == "Failed"
    return holds(body) >= grant.databases or _status(body).get("phase") == "Failed"


_NONE = Grant("", 0, False)
