"""One place where everything that happens to a DBRestore or DBAttach is told.

Handlers call `post` for each step and failure; it posts the Kubernetes event and hands the same
record to every observer (the audit trail, metrics, notifications), so that none of them can miss
a step the others saw. Observers must not raise into the handlers: a failing observer is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kopf

from dbops.status import now

log = logging.getLogger(__name__)


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


Observer = Callable[[Record], None]
observers: list[Observer] = []


def post(body: kopf.Body, action: str, reason: str, message: str, *, warning: bool = False, **extra: Any) -> Record:
    meta = body.get("metadata", {})
    spec = body.get("spec", {})
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
    )
    (kopf.warn if warning else kopf.info)(body, reason=reason, message=message)
    for observer in list(observers):
        try:
            observer(record)
        except Exception:  # an observer's failure must never fail a restore
            log.exception("report observer %r failed", observer)
    return record
