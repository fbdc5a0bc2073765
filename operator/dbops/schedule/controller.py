"""DBRestoreSchedule on the reconcile core: restore drills on a schedule, each run a DBRestore of its own.

A pass, in order:
1. A new object is Pending at once (its schedule read and put in words), and gets dbops' finalizer.
2. Its runs' DBRestores are listed (by the schedule's UID label) and each one's result read (runs.py).
3. plan.py decides: runs due start (each a DBRestore from the template, named after its time, owned by
   the schedule), runs that cannot start are recorded as skipped, unfinished runs are replaced (Replace),
   finished runs beyond the history limits are deleted (their databases go per deletionPolicy).
4. The status carries the latest runs' evidence; each run's result is told once (drill-passed,
   drill-failed, drill-skipped): event, audit record, metrics, and notifications of failures.

The runs are DBRestores reconciled by the DBRestore controller: every guarantee of a DBRestore holds for
them (never clobbers, never creates twice, removal per deletionPolicy and ttl, verification).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from dbops.core.reconciler import Note, Outcome, Pass, accepted
from dbops.core.status import View, now, parse_timestamp, timestamp
from dbops.models import DBRestoreScheduleSpec, DBRestoreScheduleStatus
from dbops.schedule import cron as cron_mod
from dbops.schedule import plan
from dbops.schedule import runs as runs_mod

RESTORES = "dbrestores"
# Settled runs are read on the schedule's resync; while one is on its way, at least this often (its changes
# also wake the schedule at once: app.py nudges it).
ACTIVE_POLL = 30.0
StateObserver = Callable[[str, float], None]  # (schedule UID, last success or creation, epoch seconds)


class ScheduleController:
    kind = "DBRestoreSchedule"
    plural = "dbrestoreschedules"
    status_model: type[BaseModel] = DBRestoreScheduleStatus
    known_conditions: tuple[str, ...] = ()
    # The evidence stays through a failure of the spec (the status of a Failed schedule still shows it).
    keep: tuple[str, ...] = (
        "lastScheduleTime",
        "lastRunTime",
        "lastResult",
        "lastSuccessfulTime",
        "lastRto",
        "lastRtoSeconds",
        "lastRpoSeconds",
        "lastRunNow",
        "runs",
    )

    def __init__(
        self,
        poll: float,
        observe: StateObserver | None = None,
        forget_state: Callable[[str], None] | None = None,
    ) -> None:
        self.poll = poll
        self.observe = observe
        self.forget_state = forget_state

    # --- the pass -------------------------------------------------------------------------------------

    def reconcile(self, p: Pass) -> Outcome:
        spec = DBRestoreScheduleSpec.model_validate(p.spec)
        cron = cron_mod.parse(spec.schedule, spec.time_zone)
        if not p.status.get("phase"):
            message = f"schedule accepted: {cron.words}"
            view = View("Pending", "Unknown", "Accepted", message, {"scheduleDescription": cron.words})
            return accepted(view)
        moment = now()
        children = self._children(p)
        entries = [runs_mod.entry(c) for c in children]
        deleting = frozenset(c["metadata"]["name"] for c in children if c["metadata"].get("deletionTimestamp"))
        memory = runs_mod.memory(p.status)
        created = parse_timestamp(p.body["metadata"]["creationTimestamp"])
        token = p.annotations.get(plan.RUN_NOW)
        decided = plan.decide(p.name, spec, cron, moment, created, entries, memory, token, deleting)
        self._act(p, spec, decided, children)
        history = runs_mod.merge(memory.runs, entries, decided.entries)
        for run in runs_mod.newly_final(memory, history):
            action, reason, message, details = runs_mod.record(run)
            p.note(action, reason, message, warning=run["result"] != "Passed", **details)
        summary = runs_mod.summary(history, memory)
        self._observe(p, summary, created)
        return Outcome(
            self._view(spec, cron, decided, history, summary), requeue=self._requeue(decided, history, moment)
        )

    def _children(self, p: Pass) -> list[dict[str, Any]]:
        """The runs' DBRestores: labelled with this schedule's UID and owned by it (a label alone proves nothing)."""
        found = p.services.kube.list_in(RESTORES, p.namespace, f"{runs_mod.SCHEDULE_UID}={p.uid}")
        return [c for c in found if any(o.get("uid") == p.uid for o in c["metadata"].get("ownerReferences") or [])]

    def _act(
        self, p: Pass, spec: DBRestoreScheduleSpec, decided: plan.Decision, children: list[dict[str, Any]]
    ) -> None:
        uids = {c["metadata"]["name"]: c["metadata"]["uid"] for c in children}
        for name in decided.replace:
            p.services.kube.delete(RESTORES, p.namespace, name, uids[name])
            p.note(
                "run-replaced", "Replaced", f"deleting run {name}: a new run replaces it (concurrencyPolicy Replace)"
            )
        if decided.create:
            p.confirm_current()  # not being deleted, same spec, finalizer on: only then start runs
        template = dict(p.spec["template"])
        for run in decided.create:
            body = plan.child(p.body, template, spec.template.target.identifier, run)
            if p.services.kube.create(RESTORES, p.namespace, body):
                p.note("run-started", "RunStarted", f"run {run.name} started ({run.trigger}, due {timestamp(run.due)})")
        for name in decided.prune:
            p.services.kube.delete(RESTORES, p.namespace, name, uids[name])
            p.note("run-pruned", "RunDeleted", f"deleting run {name}: beyond the history limits")

    def _view(
        self,
        spec: DBRestoreScheduleSpec,
        cron: cron_mod.Cron,
        decided: plan.Decision,
        history: list[dict[str, Any]],
        summary: dict[str, Any],
    ) -> View:
        active = [r["name"] for r in history if r.get("result") == "Running"]
        finished = next((r for r in history if r.get("result") in ("Passed", "Failed")), None)
        fields = {
            **summary,
            "scheduleDescription": cron.words,
            "lastScheduleTime": timestamp(decided.last_schedule_time) if decided.last_schedule_time else None,
            "nextScheduleTime": timestamp(decided.next_time) if decided.next_time else None,
            "active": active or None,
            "lastRunNow": decided.run_now,
            "runs": history or None,
        }
        phase = "Running" if active else "Suspended" if spec.suspend else "Scheduled"
        waiting = f"; {decided.waiting}" if decided.waiting else ""
        if finished is None:
            return View(phase, "Unknown", "NoRunYet", f"no run has finished yet; {cron.words}{waiting}", fields)
        passed = finished["result"] == "Passed"
        message = f"latest finished run {finished['name']} {finished['result'].lower()}"
        message += f": {finished['message']}" if finished.get("message") else ""
        reason = "LastRunPassed" if passed else "LastRunFailed"
        return View(phase, "True" if passed else "False", reason, message[:1024] + waiting, fields)

    def _requeue(self, decided: plan.Decision, history: list[dict[str, Any]], moment: datetime) -> float:
        """At the next run's time (to the second), and while runs are on their way, every ACTIVE_POLL."""
        delays = [ACTIVE_POLL] if any(r.get("result") == "Running" for r in history) or decided.waiting else []
        if decided.next_time is not None:
            delays.append(max(0.0, (decided.next_time - moment).total_seconds()) + 0.2)
        return min(delays, default=3600.0)

    def _observe(self, p: Pass, summary: dict[str, Any], created: datetime) -> None:
        if self.observe is not None:
            last = runs_mod.parse_time(summary.get("lastSuccessfulTime")) or created
            self.observe(p.uid, last.timestamp())

    # --- deletion -------------------------------------------------------------------------------------

    def finalize(self, p: Pass) -> Outcome:
        """The runs' DBRestores go first (each applies its deletionPolicy); done when none is left."""
        children = self._children(p)
        for child in children:
            if not child["metadata"].get("deletionTimestamp"):
                p.services.kube.delete(RESTORES, p.namespace, child["metadata"]["name"], child["metadata"]["uid"])
        if not children:
            message = "schedule deleted; no run's DBRestore is left"
            return Outcome(
                View("Scheduled", "False", "Deleted", message), done=True, notes=[Note("deleted", "Deleted", message)]
            )
        message = (
            f"deleting the DBRestores of {len(children)} run(s): {', '.join(c['metadata']['name'] for c in children)}"
        )
        return Outcome(View("Scheduled", "False", "Deleting", message[:1024]), requeue=2.0)

    # --- records ------------------------------------------------------------------------------------

    def transition(self, previous: str | None, view: View, status: dict[str, Any]) -> Note | None:
        return None  # a schedule's records are its runs' results (drill-*), posted by the pass

    def identity(self, p: Pass) -> dict[str, Any]:
        spec = DBRestoreScheduleSpec.model_validate(p.spec)
        return {"scheduleDescription": cron_mod.parse(spec.schedule, spec.time_zone).words}

    def forget(self, uid: str) -> None:
        if self.forget_state is not None:
            self.forget_state(uid)
