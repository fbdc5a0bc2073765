"""What one pass of a DBRestoreSchedule does: which runs start, which are skipped and why, which runs'
DBRestores go (replaced, or beyond the history limits). A Kubernetes CronJob's semantics.

Pure functions. A run is named after the time it was due (or the run-now value that asked for it), so that
the name says whether it was started: an operator that restarts finds the run's DBRestore and never makes
a second. Runs due before the schedule existed, or before the last one considered, never start.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dbops.core.status import timestamp
from dbops.models import GROUP, VERSION, DBRestoreScheduleSpec
from dbops.restore.source import parse_duration
from dbops.schedule import cron as cron_mod
from dbops.schedule import runs as runs_mod

RUN_NOW = "dbops.dev/run-now"  # annotation: each new value starts a run at once
NOTIFY_OFF = {"dbops.dev/notify-slack": "off", "dbops.dev/notify-email": "off"}  # the schedule tells of failures


@dataclass(frozen=True)
class NewRun:
    name: str
    suffix: str  # the part of the names the run adds: YYYYMMDDHHMM, or now-XXXXXXXX
    trigger: str  # schedule | run-now
    due: datetime


@dataclass
class Decision:
    create: list[NewRun] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)  # unfinished runs' DBRestores to delete (Replace)
    prune: list[str] = field(default_factory=list)  # finished runs' DBRestores beyond the history limits
    entries: list[dict[str, Any]] = field(default_factory=list)  # history entries of runs started or skipped now
    last_schedule_time: datetime | None = None
    run_now: str | None = None  # the run-now value acted on
    waiting: str | None = None  # why a run asked for waits
    next_time: datetime | None = None


def run_now_suffix(token: str) -> str:
    return "now-" + hashlib.sha256(token.encode()).hexdigest()[:8]


def decide(
    name: str,
    spec: DBRestoreScheduleSpec,
    cron: cron_mod.Cron,
    now: datetime,
    created: datetime,
    children: list[dict[str, Any]],
    memory: runs_mod.Memory,
    run_now: str | None,
    deleting: frozenset[str] = frozenset(),
) -> Decision:
    """`children`: the history entries (runs.entry) of the runs whose DBRestore exists; `deleting`: the names
    of those being deleted already."""
    out = Decision(last_schedule_time=memory.last_schedule_time, run_now=memory.last_run_now)
    active = [c for c in children if c.get("result") == "Running" and c["name"] not in deleting]
    _scheduled(name, spec, cron, now, _since(created, memory, children), active, out)
    if run_now and run_now != memory.last_run_now:
        _run_now(name, spec, now, run_now, active, children, memory, out)
    out.prune = _prune(spec, children, memory, deleting | set(out.replace))
    out.next_time = None if spec.suspend else cron_mod.after(cron, now)
    return out


def _since(created: datetime, memory: runs_mod.Memory, children: list[dict[str, Any]]) -> datetime:
    """Runs due after this may start: not before the schedule existed, nor again once considered."""
    seen = [
        runs_mod.parse_time(r.get("scheduledTime")) for r in [*children, *memory.runs] if r.get("trigger") != "run-now"
    ]
    return max([created, *(t for t in [memory.last_schedule_time, *seen] if t is not None)])


def _scheduled(
    name: str,
    spec: DBRestoreScheduleSpec,
    cron: cron_mod.Cron,
    now: datetime,
    since: datetime,
    active: list[dict[str, Any]],
    out: Decision,
) -> None:
    due = cron_mod.due(cron, since, now)
    if due.latest is None:
        return
    out.last_schedule_time = due.latest
    if spec.suspend:
        return  # suspended on purpose: the runs due meanwhile are neither made up nor told as skipped
    for when in due.missed:
        more = "" if due.missed_count <= len(due.missed) else f" ({due.missed_count} runs missed in all)"
        message = f"due at {timestamp(when)} while no run could start; only the latest run due starts{more}"
        out.entries.append(runs_mod.skipped(_name(name, when), "schedule", when, "Missed", message))
    latest = due.latest
    deadline = parse_duration(spec.starting_deadline) if spec.starting_deadline else None
    if deadline is not None and now - latest > deadline:
        message = f"due at {timestamp(latest)}, not started within startingDeadline {spec.starting_deadline}"
        out.entries.append(runs_mod.skipped(_name(name, latest), "schedule", latest, "MissedDeadline", message))
    elif active and spec.concurrency_policy == "Forbid":
        message = (
            f"due at {timestamp(latest)} while run {active[0]['name']} had not finished (concurrencyPolicy Forbid)"
        )
        out.entries.append(runs_mod.skipped(_name(name, latest), "schedule", latest, "ConcurrencyForbid", message))
    else:
        _start(name, spec, NewRun(_name(name, latest), cron_mod.run_suffix(latest), "schedule", latest), active, out)


def _name(schedule: str, when: datetime) -> str:
    return f"{schedule}-{cron_mod.run_suffix(when)}"


def _start(name: str, spec: DBRestoreScheduleSpec, run: NewRun, active: list[dict[str, Any]], out: Decision) -> None:
    """Start `run`; under Replace, the unfinished runs go first (recorded as skipped: they proved nothing)."""
    for other in active:
        out.replace.append(other["name"])
        message = f"replaced by run {run.name} before it finished (concurrencyPolicy Replace)"
        out.entries.append({**other, "result": "Skipped", "reason": "Replaced", "message": message})
    out.create.append(run)
    target = f"{spec.template.target.identifier}-{run.suffix}"
    out.entries.append(runs_mod.started(run.name, run.trigger, run.due, target, run.due))


def _run_now(
    name: str,
    spec: DBRestoreScheduleSpec,
    now: datetime,
    token: str,
    active: list[dict[str, Any]],
    children: list[dict[str, Any]],
    memory: runs_mod.Memory,
    out: Decision,
) -> None:
    suffix = run_now_suffix(token)
    run = NewRun(f"{name}-{suffix}", suffix, "run-now", now)
    if any(r.get("name") == run.name for r in [*children, *memory.runs]):
        out.run_now = token  # started before (the status that said so was not written, or was lost)
        return
    if out.create:
        out.waiting = "the run asked for with run-now starts after the run due now has started"
        return
    if active and spec.concurrency_policy == "Forbid":
        first = active[0]["name"]
        out.waiting = f"the run asked for with run-now waits for run {first} to finish (concurrencyPolicy Forbid)"
        return
    _start(name, spec, run, active, out)
    out.run_now = token


def _prune(
    spec: DBRestoreScheduleSpec, children: list[dict[str, Any]], memory: runs_mod.Memory, going: frozenset[str]
) -> list[str]:
    """Finished runs' DBRestores beyond the history limits, oldest first. Only runs whose result the history
    holds already: a result is recorded before its DBRestore (and the evidence in its status) goes."""
    recorded = [c for c in children if memory.final(c["name"]) and c["name"] not in going]
    recorded.sort(key=lambda c: str(c.get("scheduledTime") or ""), reverse=True)
    limits = {"Passed": spec.successful_runs_history_limit, "Failed": spec.failed_runs_history_limit, "Skipped": 0}
    kept: dict[str, int] = {}
    doomed = []
    for child in recorded:
        result = str(memory.final(child["name"]))
        kept[result] = kept.get(result, 0) + 1
        if kept[result] > limits[result]:
            doomed.append(child["name"])
    return doomed


def child(schedule: dict[str, Any], template: dict[str, Any], prefix: str, run: NewRun) -> dict[str, Any]:
    """The DBRestore of a run: the template as written, a target of its own, owned by the schedule."""
    meta = schedule["metadata"]
    spec = {**template, "target": {**template["target"], "identifier": f"{prefix}-{run.suffix}"}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DBRestore",
        "metadata": {
            "name": run.name,
            "namespace": meta["namespace"],
            "labels": {runs_mod.SCHEDULE_UID: meta["uid"]},
            "annotations": {
                runs_mod.RUN_TIME: timestamp(run.due),
                runs_mod.RUN_TRIGGER: run.trigger,
                **NOTIFY_OFF,
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "DBRestoreSchedule",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": spec,
    }
