"""One place where everything that happens to an object is told.

The reconcile core calls `Reporter.post` for each step and outcome; it posts the Kubernetes event and
hands the same record to every observer (the audit trail, metrics, notifications), so that none of
them can miss a step the others saw. Observers must not raise into a pass: a failing one is logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dbops.core.events import Recorder, Ref
from dbops.core.status import now

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


Observer = Callable[[Record], None]


class Reporter:
    """Events and records for every step; the process' observers subscribe here at startup."""

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder
        self.observers: list[Observer] = []
        # Who asked for the deletion of an object (by UID), told by the validating webhook: the object's
        # own annotation names its creator, and a DELETE cannot change it.
        self._deleters: dict[str, Requester] = {}
        self._lock = threading.Lock()

    def deleted_by(self, uid: str, requester: Requester) -> None:
        with self._lock:
            self._deleters[uid] = requester

    def requester_of(self, body: dict[str, Any], action: str) -> Requester | None:
        meta = body.get("metadata", {})
        if action in DELETE_ACTIONS:
            uid = str(meta.get("uid", ""))
            with self._lock:  # "deleted" is the last record of an object: forget its deleter then
                deleter = self._deleters.pop(uid, None) if action == "deleted" else self._deleters.get(uid)
            if deleter is not None:
                return deleter
        return Requester.from_annotation((meta.get("annotations") or {}).get(REQUESTED_BY))

    def post(
        self, body: dict[str, Any], action: str, reason: str, message: str, *, warning: bool = False, **extra: Any
    ) -> Record:
        meta = body.get("metadata", {})
        spec = body.get("spec", {})
        requester = self.requester_of(body, action)
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
            target=extra.pop("target", None)
            or (spec.get("target") or {}).get("identifier")
            or spec.get("identifier")
            or spec.get("identifierPrefix"),
            aws_request_id=extra.pop("aws_request_id", None),
            details=extra,
            requester=requester.username if requester else None,
            requester_groups=requester.groups if requester else (),
            annotations={k: str(v) for k, v in (meta.get("annotations") or {}).items() if k.startswith("dbops.dev/")},
        )
        if self.recorder is not None:
            self.recorder.post(ref_of(body), "Warning" if warning else "Normal", reason, message)
        self.notify(record)
        return record

    def notify(self, record: Record) -> None:
        """Hand a record to every observer (also used for records that are not events: admission)."""
        for observer in list(self.observers):
            try:
                observer(record)
            except Exception:  # an observer's failure must never fail a pass
                log.exception("report observer %r failed", observer)


def ref_of(body: dict[str, Any]) -> Ref:
    meta = body.get("metadata", {})
    return Ref(
        str(body.get("apiVersion", "")),
        str(body.get("kind", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
        str(meta.get("uid", "")),
    )


def where(status: dict[str, Any]) -> dict[str, Any]:
    """Region, endpoint and port from the status an outcome writes, for the record's details: the
    notification of an Available object says where it is without reading the object back."""
    return {k: status[k] for k in ("region", "endpoint", "port") if status.get(k)}
