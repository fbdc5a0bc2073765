"""Status conventions shared by every kind: standard conditions (KEP-1623), the phase, timestamps.

Pure functions over plain dicts and the pydantic status models: no AWS or Kubernetes client here
(the import contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # metav1.Time, as status fields carry it


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def timestamp(moment: datetime | None = None) -> str:
    return (moment or now()).astimezone(UTC).strftime(TIME_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Return the whole new list (merge patches replace lists whole).

    lastTransitionTime moves only when the status value changes, as the API conventions ask.
    """
    old = {c["type"]: c for c in conditions or [] if isinstance(c, dict) and c.get("type")}
    previous = old.get(type_)
    changed = previous is None or previous.get("status") != status or not previous.get("lastTransitionTime")
    old[type_] = {
        "type": type_,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": timestamp() if changed else previous["lastTransitionTime"],  # type: ignore[index]
        "reason": reason,
        "message": message[:32768],
    }
    return list(old.values())


def condition(conditions: list[dict[str, Any]] | None, type_: str = READY) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if isinstance(c, dict) and c.get("type") == type_), None)


@dataclass(frozen=True)
class Cond:
    """One condition a decision wants set."""

    type: str
    status: str  # True | False | Unknown
    reason: str
    message: str


@dataclass(frozen=True)
class View:
    """What a pass decided the status says: the phase, the Ready condition, other conditions, and the
    kind's own status fields (camelCase keys of its status model)."""

    phase: str
    ready: str
    reason: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    conditions: tuple[Cond, ...] = ()

    def with_fields(self, **fields: Any) -> View:
        return View(self.phase, self.ready, self.reason, self.message, {**self.fields, **fields}, self.conditions)


def held(status: dict[str, Any]) -> View:
    """The status as it is, as a view: for a pass that has nothing new to say yet."""
    ready = condition(status.get("conditions")) or {}
    fields = {k: v for k, v in status.items() if k not in ("phase", "conditions", "observedGeneration")}
    return View(
        str(status.get("phase") or "Pending"),
        str(ready.get("status") or "Unknown"),
        str(ready.get("reason") or "Waiting"),
        str(ready.get("message") or ""),
        fields,
    )


def render(
    view: View,
    previous: dict[str, Any],
    generation: int | None,
    known: tuple[str, ...] = (),
    keep: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The whole status for `view`: every field the decision set, the conditions of the `known` types
    carried over from `previous` (so that their transition times hold), and the `keep` fields.

    Nothing else of `previous` survives: whatever someone else wrote into status is overwritten."""
    conditions = [
        c for c in previous.get("conditions") or [] if isinstance(c, dict) and c.get("type") in (READY, *known)
    ]
    conditions = set_condition(conditions, READY, view.ready, view.reason, view.message, generation)
    for extra in view.conditions:
        conditions = set_condition(conditions, extra.type, extra.status, extra.reason, extra.message, generation)
    carried = {k: previous[k] for k in keep if previous.get(k) is not None}
    return {**carried, **view.fields, "phase": view.phase, "observedGeneration": generation, "conditions": conditions}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal as the API server would store them (None and absent are the same)."""
    return _canonical(a) == _canonical(b)


def _canonical(status: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in status.items() if v is not None}, sort_keys=True, default=str)


def fingerprint(status: dict[str, Any] | None) -> bytes:
    """A short digest of a status (16 bytes: the core keeps one per object, for 10,000 objects)."""
    return hashlib.blake2b(_canonical(status or {}).encode(), digest_size=16).digest()


def timing(status: dict[str, Any]) -> dict[str, Any]:
    """Seconds from status.startTime to now, for the record of an outcome (metrics, notifications)."""
    started = status.get("startTime")
    if not started:
        return {}
    try:
        return {"duration_seconds": (now() - parse_timestamp(str(started))).total_seconds()}
    except ValueError:
        return {}
