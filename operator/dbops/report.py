"""One place where everything that happens to a DBRestore or DBAttach is told.

Handlers call `post` for each step and failure; it posts the Kubernetes event and hands the same
record to every observer (the audit trail, metrics, notifications), so that none of them can miss
a step the others saw. Observers must not raise into the handlers: a failing observer is logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dbops.status import now, ready_patch, timestamp

if TYPE_CHECKING:  # kopf is imported when a record is posted: the audit CLI's start stays quick
    import kopf

    from dbops.rds import AWSError

log = logging.getLogger(__name__)

# Set by the mutating admission webhook on create and on every change a user makes (a user's own value
# is overwritten, so it cannot be forged): JSON {"username": ..., "groups": [...]}.
REQUESTED_BY = "dbops.dev/requested-by"
# Actions of a deletion: their requester is whoever asked for the deletion, when the webhook saw it.
DELETE_ACTIONS = frozenset({"deleting", "deleted", "delete-failed"})


@dataclass(frozen=True)
class Record:
    """A step or outcome. Never carries a secret: messages are written for events, which anyone
    with `get events` can read."""

    kind: str  # DBRestore | DBAttach
    namespace: str
    name: str
    uid: str
    action: str  # requested, restore-started, available, failed, retrying, deleting, deleted, expired, ...
    reason: str  # CamelCase, as in the event and the condition (an AWS error code for AWS failures)
    message: str
    warning: bool = False
    source: str | None = None
    target: str | None = None
    aws_request_id: str | None = None
    time: datetime = field(default_factory=now)
    details: dict[str, Any] = field(default_factory=dict)
    requester: str | None = None  # the Kubernetes user who asked (from the admission webhook)
    requester_groups: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)  # the object's dbops.dev/* annotations


@dataclass(frozen=True)
class Requester:
    username: str
    groups: tuple[str, ...] = ()

    def to_annotation(self) -> str:
        return json.dumps({"username": self.username, "groups": list(self.groups)}, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str | None) -> Requester | None:
        try:
            data = json.loads(text or "")
            return cls(str(data["username"]), tuple(str(g) for g in data.get("groups") or ()))
        except (ValueError, KeyError, TypeError):
            return None


# Who asked for the deletion of an object (by UID), told by the validating webhook: the object's own
# annotation names its creator, and a DELETE cannot change it.
_deleters: dict[str, Requester] = {}
_deleters_lock = threading.Lock()


def deleted_by(uid: str, requester: Requester) -> None:
    with _deleters_lock:
        _deleters[uid] = requester


def requester_of(body: kopf.Body, action: str) -> Requester | None:
    meta = body.get("metadata", {})
    if action in DELETE_ACTIONS:
        uid = str(meta.get("uid", ""))
        with _deleters_lock:  # "deleted" is the last record of an object: forget its deleter then
            deleter = _deleters.pop(uid, None) if action == "deleted" else _deleters.get(uid)
        if deleter is not None:
            return deleter
    return Requester.from_annotation((meta.get("annotations") or {}).get(REQUESTED_BY))


Observer = Callable[[Record], None]
observers: list[Observer] = []


def post(body: kopf.Body, action: str, reason: str, message: str, *, warning: bool = False, **extra: Any) -> Record:
    meta = body.get("metadata", {})
    spec = body.get("spec", {})
    requester = requester_of(body, action)
    record = Record(
        kind=str(body.get("kind", "")),
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        action=action,
        reason=reason,
        message=message,
        warning=warning,
        source=extra.pop("source", None) or (body.get("status") or {}).get("source"),
        target=extra.pop("target", None) or (spec.get("target") or {}).get("identifier") or spec.get("identifier"),
        aws_request_id=extra.pop("aws_request_id", None),
        details=extra,
        requester=requester.username if requester else None,
        requester_groups=requester.groups if requester else (),
        annotations={k: str(v) for k, v in (meta.get("annotations") or {}).items() if k.startswith("dbops.dev/")},
    )
    import kopf  # noqa: PLC0415 - see the TYPE_CHECKING import

    (kopf.warn if warning else kopf.info)(body, reason=reason, message=message)
    notify_observers(record)
    return record


def notify_observers(record: Record) -> None:
    """Hand a record to every observer (also used for records that are not k8s events: admission)."""
    for observer in list(observers):
        try:
            observer(record)
        except Exception:  # an observer's failure must never fail a restore
            log.exception("report observer %r failed", observer)


def aws_failure(body: kopf.Body, action: str, failure: AWSError, message: str) -> Record:
    """A warning about an AWS failure, with the error code as reason and the request id for the audit."""
    return post(
        body,
        action,
        failure.code,
        message,
        warning=True,
        aws_request_id=failure.request_id,
        operation=failure.operation,
    )


def accept(body: kopf.Body, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, message: str) -> None:
    """A new object is Pending at once, before any AWS call, so `kubectl get -w` shows it was seen; the
    start time is what an outcome's duration is measured from."""
    if status.get("phase"):
        return
    ready = ready_patch(
        dict(status), meta.get("generation"), "Pending", "Unknown", "Accepted", message, startTime=timestamp()
    )
    patch.status.update(ready)
    post(body, "requested", "Accepted", message)


def where(status: dict[str, Any]) -> dict[str, Any]:
    """Region, endpoint and port from the status an outcome writes, for the record's details: the
    notification of an Available object says where it is without reading the object back."""
    return {k: status[k] for k in ("region", "endpoint", "port") if status.get(k)}
