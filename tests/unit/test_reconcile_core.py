"""The reconcile core's pass over a new object, with a stand-in for the API server: Pending written and
the finalizer put on before the kind acts, then the create in that same pass (no second trip through
the queue, no second read of an object the pass has just written), each record posted once. What the
API server itself does with these writes is tested in tests/e2e."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from dbops.core.kube import FINALIZER
from dbops.core.reconciler import GoneError, Note, Outcome, Pass, Reconciler, accepted
from dbops.core.status import View
from dbops.models import DBRestoreStatus


class _Kube:
    """The object as the API server keeps it; every call noted."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.stored = copy.deepcopy(body)
        self.calls: list[str] = []

    def _bump(self) -> dict[str, Any]:
        meta = self.stored["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(self.stored)

    def patch_status(self, _plural: str, _ns: str, _name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("patch_status")
        status = {**(self.stored.get("status") or {}), **patch}
        self.stored["status"] = {k: v for k, v in status.items() if v is not None}
        return self._bump()

    def set_finalizer(self, _plural: str, body: dict[str, Any], present: bool) -> dict[str, Any]:
        if (FINALIZER in (body["metadata"].get("finalizers") or [])) == present:
            return body
        self.calls.append("set_finalizer")
        assert body["metadata"]["resourceVersion"] == self.stored["metadata"]["resourceVersion"]
        self.stored["metadata"]["finalizers"] = [FINALIZER] if present else []
        return self._bump()

    def get(self, _plural: str, _ns: str, _name: str) -> dict[str, Any]:
        self.calls.append("get")
        return copy.deepcopy(self.stored)


class _Reporter:
    def __init__(self) -> None:
        self.posted: list[str] = []

    def post(self, _body: dict[str, Any], action: str, *_args: Any, **_kw: Any) -> None:
        self.posted.append(action)


class _Kind:
    """A kind that restores: accepted first, then (confirmed current) the create."""

    kind, plural = "DBRestore", "dbrestores"
    status_model = DBRestoreStatus
    known_conditions: tuple[str, ...] = ()
    keep: tuple[str, ...] = ("startTime",)

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def reconcile(self, p: Pass) -> Outcome:
        if not p.status.get("phase"):
            self.log.append("accepted")
            return accepted(View("Pending", "Unknown", "Accepted", "requested"))
        p.confirm_current()
        self.log.append("create")
        p.note("aws-call", "RestoreCall", "restoring instance db")
        return Outcome(View("Restoring", "False", "Restoring", "started"), requeue=1.25)

    def finalize(self, p: Pass) -> Outcome:
        raise AssertionError("not deleting")

    def transition(self, previous: str | None, view: View, status: dict[str, Any]) -> Note | None:
        return None if previous == view.phase else Note(f"entered-{view.phase}", view.reason, view.message)

    def identity(self, p: Pass) -> dict[str, Any]:
        return {}

    def forget(self, uid: str) -> None:
        pass


def _body() -> dict[str, Any]:
    meta = {"name": "r1", "namespace": "team-a", "uid": "u-1", "generation": 1, "resourceVersion": "7"}
    return {"apiVersion": "dbops.dev/v1alpha1", "kind": "DBRestore", "metadata": meta, "spec": {}}


def _core(kube: _Kube, log: list[str]) -> tuple[Reconciler, _Reporter]:
    reporter = _Reporter()
    services = SimpleNamespace(kube=kube, reporter=reporter, settings=None)
    return Reconciler(services, [_Kind(log)], resync=600, workers=1), reporter


def test_a_new_object_is_shown_pending_then_created_in_the_same_pass() -> None:
    kube, log = _Kube(_body()), []
    core, reporter = _core(kube, log)
    core.wake("dbrestores", _body())
    delay = core.run(("dbrestores", "team-a", "r1"))
    assert log == ["accepted", "create"]
    # Pending, the finalizer, Restoring: the create trusted the answer to its own write (no GET).
    assert kube.calls == ["patch_status", "set_finalizer", "patch_status"]
    assert kube.stored["status"]["phase"] == "Restoring" and kube.stored["metadata"]["finalizers"] == [FINALIZER]
    assert delay == 1.25  # the create's requeue, not "at once"
    assert reporter.posted == ["entered-Pending", "aws-call", "entered-Restoring"]  # each once


def test_the_watch_event_of_its_own_finalizer_wakes_no_second_pass() -> None:
    kube, log = _Kube(_body()), []
    core, _ = _core(kube, log)
    core.wake("dbrestores", _body())
    key = core.queue.get(timeout=0)
    assert key == ("dbrestores", "team-a", "r1")
    core.run(key)
    core.queue.done(key)
    core.wake("dbrestores", kube.stored)  # the watch brings what the pass wrote
    assert core.queue.get(timeout=0) is None


def test_a_pass_that_did_not_write_reads_the_object_before_it_creates() -> None:
    """An object already Pending (its first pass ended before the create): the create step reads it
    fresh, and a deletion seen there stops the create."""
    body = _body()
    body["status"] = {"phase": "Pending"}
    kube, log = _Kube(body), []
    kube.stored["metadata"]["deletionTimestamp"] = "2026-12-02T10:00:00Z"
    p = Pass(SimpleNamespace(kube=kube), _Kind(log), body)
    with pytest.raises(GoneError):
        p.confirm_current()
    assert kube.calls == ["get"] and log == []
