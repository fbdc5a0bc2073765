"""One place where everything that happens to an object is told.

The reconcile core calls `Reporter.post` for each step and outcome; it posts the Kubernetes event and
hands the same record to every observer (the audit trail, metrics, notifications), so that none of
them can miss a step the others saw. Observers must not raise into a pass: a failing one is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from dbops.core.events import Recorder, Ref
from dbops.core.status import now

log = logging.getLogger(__name__)

# Stamped by the API server itself (the MutatingAdmissionPolicy dbops-requested-by, manifests/base) on
# create and on every change a user makes, from request.userInfo, overwriting whatever the request carried:
# JSON {"username": ..., "groups": [...]}. Trusted only while that policy is installed (else "unverified").
REQUESTED_BY = "dbops.dev/requested-by"
# Written by the validating webhook on each DELETE it admits, signed with the operator's key and bound to
# the object's UID: JSON {"username", "groups", "verified", "sig"}. Persisted with the object, so that the
# deletion records name the deleter after any restart; an unsigned or foreign one is shown "unverified".
DELETED_BY = "dbops.dev/deleted-by"
# Actions of a deletion: while the object is being deleted, their requester is whoever deleted it.
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
    requester: str | None = None  # the Kubernetes user who asked (from the API server; see REQUESTED_BY)
    requester_groups: tuple[str, ...] = ()
    requester_verified: bool = False  # False: the name could not be proven to come from the API server
    annotations: dict[str, str] = field(default_factory=dict)  # the object's dbops.dev/* annotations


@dataclass(frozen=True)
class Requester:
    username: str
    groups: tuple[str, ...] = ()
    verified: bool = False

    def to_annotation(self) -> str:
        return json.dumps({"username": self.username, "groups": list(self.groups)}, separators=(",", ":"))

    @classmethod
    def from_annotation(cls, text: str | None, verified: bool = False) -> Requester | None:
        try:
            data = json.loads(text or "")
            return cls(str(data["username"]), tuple(str(g) for g in data.get("groups") or ()), verified)
        except (ValueError, KeyError, TypeError):
            return None

    def shown(self) -> str:
        return self.username if self.verified else f"{self.username} (unverified)"


class Signer(Protocol):
    def sign(self, payload: dict[str, Any]) -> str: ...
    def verify(self, payload: dict[str, Any], signature: str) -> bool: ...


def _deletion(uid: str, who: Requester) -> dict[str, Any]:
    return {"uid": uid, "username": who.username, "groups": list(who.groups), "verified": who.verified}


def deleter_annotation(signer: Signer, uid: str, who: Requester) -> str:
    """DELETED_BY's value: who deleted the object with this UID, signed (`verified`: the webhook
    authenticated the API server that told it)."""
    payload = _deletion(uid, who)
    return json.dumps({**{k: v for k, v in payload.items() if k != "uid"}, "sig": signer.sign(payload)})


def deleter(signer: Signer | None, body: dict[str, Any]) -> Requester | None:
    """Who deleted the object, from DELETED_BY: verified only with a valid signature for this very UID."""
    meta = body.get("metadata") or {}
    claimed = Requester.from_annotation((meta.get("annotations") or {}).get(DELETED_BY))
    if claimed is None:
        return None
    try:
        data = json.loads((meta.get("annotations") or {})[DELETED_BY])
        vouched = Requester(claimed.username, claimed.groups, bool(data.get("verified")))
        valid = signer is not None and signer.verify(_deletion(str(meta.get("uid", "")), vouched), str(data["sig"]))
    except (KeyError, TypeError, ValueError):
        valid = False
    return vouched if valid else Requester(claimed.username, claimed.groups, False)


Observer = Callable[[Record], None]


class Reporter:
    """Events and records for every step; the process' observers subscribe here at startup."""

    def __init__(self, recorder: Recorder | None) -> None:
        self.recorder = recorder
        self.observers: list[Observer] = []
        self.signer: Signer | None = None  # the operator's keys (verifies DELETED_BY), when it has them
        self.stamped: Callable[[], bool] = lambda: False  # the API server stamps REQUESTED_BY (the MAP is in)

    def requester_of(self, body: dict[str, Any], action: str) -> Requester | None:
        meta = body.get("metadata", {})
        if action in DELETE_ACTIONS and meta.get("deletionTimestamp"):
            return deleter(self.signer, body)  # not the creator: nobody, when nobody is known
        return Requester.from_annotation((meta.get("annotations") or {}).get(REQUESTED_BY), self.stamped())

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
            requester_verified=requester.verified if requester else False,
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
