"""Status conventions shared by DBRestore and DBAttach: standard conditions and the phase.

Pure functions over plain dicts (the shape kopf hands us), so that they are easy to test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

READY = "Ready"


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # metav1.Time, as status fields carry it


def timestamp(moment: datetime | None = None) -> str:
    return (moment or now()).strftime(TIME_FORMAT)


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
    """Return the whole new list (kopf's merge patches replace lists whole).

    lastTransitionTime moves only when the status value changes, as the API conventions ask.
    """
    old = {c["type"]: c for c in conditions or []}
    previous = old.get(type_)
    changed = previous is None or previous.get("status") != status
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
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def ready_patch(
    status: dict[str, Any],
    generation: int | None,
    phase: str,
    ready_status: str,
    reason: str,
    message: str,
    **fields: Any,
) -> dict[str, Any]:
    """A status patch: phase, the Ready condition, observedGeneration and any other fields."""
    return {
        "phase": phase,
        "observedGeneration": generation,
        "conditions": set_condition(status.get("conditions"), READY, ready_status, reason, message, generation),
        **fields,
    }


def unchanged(
    status: dict[str, Any], phase: str, message: str, fields: dict[str, Any], generation: int | None = None
) -> bool:
    """True when writing this phase, Ready message and fields would change nothing.

    Handlers run on every poll; skipping no-op patches keeps the API server and the watchers quiet.
    """
    ready = condition(status.get("conditions")) or {}
    return (
        status.get("phase") == phase
        and ready.get("message") == message
        and (generation is None or status.get("observedGeneration") == generation)
        and all(status.get(k) == v for k, v in fields.items())
    )


def timing(status: dict[str, Any]) -> dict[str, Any]:
    """Seconds from status.startTime to now, for the record of an outcome (metrics, notifications)."""
    started = status.get("startTime")
    if not started:
        return {}
    return {"duration_seconds": (now() - parse_timestamp(str(started))).total_seconds()}
