"""The runs of a DBRestoreSchedule: each one's result and evidence, read from its DBRestore, and the bounded
history in the schedule's status.

Pure functions over plain dicts: a run's DBRestore as the API server has it, the schedule's status. A run's
DBRestore is the authority on its result while it exists; once the history holds a run's final result, that
entry stands (it has been recorded in the audit trail), including after its DBRestore is deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dbops.core.status import condition, duration_words, parse_timestamp, timestamp
from dbops.restore.verify import VERIFIED

HISTORY = 20  # runs kept in status.runs (the audit trail keeps every one)
FINAL = frozenset({"Passed", "Failed", "Skipped"})
SCHEDULE_UID = "dbops.dev/schedule-uid"  # label on a run's DBRestore: its schedule, by UID (never by name)
RUN_TIME = "dbops.dev/run-time"  # annotation: when the run was due (or asked for), RFC 3339
RUN_TRIGGER = "dbops.dev/run-trigger"  # annotation: schedule | run-now


@dataclass(frozen=True)
class Memory:
    """What the schedule's previous status recorded: at most a reason not to act again, never one to act."""

    last_schedule_time: datetime | None = None
    last_run_now: str | None = None
    last_successful_time: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)

    def final(self, name: str) -> str | None:
        """The result recorded for a run, when it is final."""
        found = next((r for r in self.runs if r.get("name") == name), None)
        result = (found or {}).get("result")
        return str(result) if result in FINAL else None


def memory(status: dict[str, Any]) -> Memory:
    runs = [r for r in status.get("runs") or [] if isinstance(r, dict) and r.get("name")]
    return Memory(
        parse_time(status.get("lastScheduleTime")),
        status.get("lastRunNow"),
        status.get("lastSuccessfulTime"),
        runs,
    )


def parse_time(value: Any) -> datetime | None:
    try:
        return parse_timestamp(str(value)) if value else None
    except ValueError:
        return None


def seconds_between(start: Any, end: Any) -> int | None:
    a, b = parse_time(start), parse_time(end)
    return None if a is None or b is None else max(0, round((b - a).total_seconds()))


# --- one run, from its DBRestore ------------------------------------------------------------------------


def entry(child: dict[str, Any]) -> dict[str, Any]:
    """A run's history entry (a DrillRun of the status model): result, RPO, RTO and probes."""
    meta = child.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    st = child.get("status") or {}
    result, reason, message = result_of(child)
    started = meta.get("creationTimestamp")
    verification = st.get("verification") or {}
    verified = verification.get("completedAt") if verification.get("result") else None
    data_time = st.get("snapshotTime") or st.get("restoreTime")
    probes = [{"name": p["name"], "result": p["result"]} for p in verification.get("probes") or [] if p.get("name")]
    found = {
        "name": meta.get("name"),
        "trigger": annotations.get(RUN_TRIGGER) or "schedule",
        "scheduledTime": annotations.get(RUN_TIME) or started,
        "result": result,
        "reason": reason,
        "message": message[:1024] if message else None,
        "target": ((child.get("spec") or {}).get("target") or {}).get("identifier"),
        "source": st.get("source"),
        "snapshotTime": data_time,
        "startedAt": started,
        "availableAt": st.get("completionTime"),
        "verifiedAt": verified,
        "rpoSeconds": seconds_between(data_time, st.get("restoreCallTime") or started),
        "rtoAvailableSeconds": seconds_between(started, st.get("completionTime")),
        "rtoVerifiedSeconds": seconds_between(started, verified),
        "probes": probes or None,
    }
    return {k: v for k, v in found.items() if v is not None}


def result_of(child: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """Running, Passed or Failed, with the reason and message: a run with probes passes when they pass; one
    without, when its database became available (and its password, if asked, was set)."""
    st = child.get("status") or {}
    generation = (child.get("metadata") or {}).get("generation")
    ready = condition(st.get("conditions")) or {}
    verified = condition(st.get("conditions"), VERIFIED) or {}
    checks = bool((child.get("spec") or {}).get("verify"))
    if checks and verified.get("observedGeneration") == generation and verified.get("status") in ("True", "False"):
        passed = verified["status"] == "True"
        return ("Passed" if passed else "Failed"), verified.get("reason"), verified.get("message")
    phase = st.get("phase")
    if not checks and phase == "Available":
        return "Passed", "Available", ready.get("message")
    if phase == "Failed":
        return "Failed", ready.get("reason"), ready.get("message")
    gone = phase in ("Expired", "Deleting") or (child.get("metadata") or {}).get("deletionTimestamp")
    if gone and not checks and st.get("completionTime"):
        return "Passed", "Available", "the drill database became available"
    if gone:
        return "Failed", "NotVerified", "the drill database was removed before the run finished"
    return "Running", ready.get("reason"), ready.get("message")


def rto(run: dict[str, Any]) -> int | None:
    """A run's recovery time: to verified, or to available for a run without probes."""
    value = run.get("rtoVerifiedSeconds", run.get("rtoAvailableSeconds"))
    return int(value) if isinstance(value, int | float) else None


# --- the history ----------------------------------------------------------------------------------------


def merge(
    previous: list[dict[str, Any]], children: list[dict[str, Any]], new: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The history: final entries stand, the rest follow their DBRestore; a run whose DBRestore went before it
    finished failed; `new` entries (runs started or skipped by this pass) are added. Newest first, bounded."""
    runs = {str(r["name"]): r for r in previous}
    for child in children:
        if runs.get(child["name"], {}).get("result") not in FINAL:
            runs[child["name"]] = child
    present = {c["name"] for c in children} | {n["name"] for n in new}
    for name, run in list(runs.items()):
        if run.get("result") not in FINAL and name not in present:
            message = "the run's DBRestore was deleted before the run finished"
            runs[name] = {**run, "result": "Failed", "reason": "RunDeleted", "message": message}
    runs.update({str(n["name"]): n for n in new})
    ordered = sorted(runs.values(), key=lambda r: (str(r.get("scheduledTime") or ""), str(r["name"])), reverse=True)
    return ordered[:HISTORY]


def newly_final(previous: Memory, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries whose result is final now and was not recorded before: each is told once (audit, metrics)."""
    return [r for r in history if r.get("result") in FINAL and previous.final(str(r["name"])) != r.get("result")]


def summary(history: list[dict[str, Any]], previous: Memory) -> dict[str, Any]:
    """The status fields of the latest runs (the printer columns)."""
    started = [r for r in history if r.get("result") != "Skipped"]
    finished = [r for r in history if r.get("result") in ("Passed", "Failed")]
    passed = [r for r in history if r.get("result") == "Passed"]
    successes = [t for t in [previous.last_successful_time] if t]
    if passed:
        successes.append(str(passed[0].get("verifiedAt") or passed[0].get("availableAt") or ""))
    last = finished[0] if finished else {}
    seconds = rto(last)
    return {
        "lastRunTime": (started[0].get("startedAt") or started[0].get("scheduledTime")) if started else None,
        "lastResult": history[0].get("result") if history else None,
        "lastSuccessfulTime": max((s for s in successes if s), default=None),
        "lastRto": duration_words(seconds) if seconds is not None else None,
        "lastRtoSeconds": seconds,
        "lastRpoSeconds": last.get("rpoSeconds"),
    }


def _new(name: str, trigger: str, when: datetime, result: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "name": name,
        "trigger": trigger,
        "scheduledTime": timestamp(when),
        "result": result,
        "reason": reason,
        "message": message,
    }


def skipped(name: str, trigger: str, when: datetime, reason: str, message: str) -> dict[str, Any]:
    return _new(name, trigger, when, "Skipped", reason, message)


def started(name: str, trigger: str, when: datetime, target: str, now: datetime) -> dict[str, Any]:
    entry = _new(name, trigger, when, "Running", "Started", f"restore of {target} requested")
    return {**entry, "target": target, "startedAt": timestamp(now)}


# --- the records --------------------------------------------------------------------------------------------

ACTIONS = {"Passed": "drill-passed", "Failed": "drill-failed", "Skipped": "drill-skipped"}


def record(run: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    """(action, reason, message, details) of a run's record: what an auditor reads, RTO and RPO included."""
    result = str(run["result"])
    reason = str(run.get("reason") or result)
    seconds = rto(run)
    parts = [f"run {run['name']} {result.lower()}"]
    if run.get("source"):
        parts.append(f"from {run['source']}")
    if run.get("rpoSeconds") is not None:
        parts.append(f"RPO {duration_words(run['rpoSeconds'])}")
    if seconds is not None:
        parts.append(f"RTO {duration_words(seconds)}")
    message = ", ".join(parts) + (f": {run['message']}" if run.get("message") else "")
    probes = run.get("probes") or []
    details = {
        "run": run["name"],
        "trigger": run.get("trigger"),
        "scheduled_time": run.get("scheduledTime"),
        "target": run.get("target"),
        "source": run.get("source"),
        "snapshot_time": run.get("snapshotTime"),
        "rpo_seconds": run.get("rpoSeconds"),
        "rto_seconds": seconds,
        "rto_available_seconds": run.get("rtoAvailableSeconds"),
        "rto_verified_seconds": run.get("rtoVerifiedSeconds"),
        "probes": "; ".join(f"{p['name']}={p['result']}" for p in probes) or None,
    }
    return ACTIONS[result], reason, message[:1024], {k: v for k, v in details.items() if v is not None}
