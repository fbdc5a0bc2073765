"""The reconcile core: one level-triggered pass per object, the same for every kind.

kopf watches the objects and calls `Reconciler.wake` for each watch event (and lists them all at
start); nothing else. Worker threads take due keys from the work queue and run one pass each:

    observe AWS (resources found by this object's UID tag; fresh before any create or delete)
    -> decide (the kind's pure functions) -> act -> write the whole status (the kind's pydantic
    status model) -> requeue.

A failed step is not remembered as "handler failed": the next pass simply observes again. An API
server or AWS outage only delays passes (with backoff), it never stops them; nothing depends on a
handler having run once. Status is written, never read as a command: decisions rest on the spec, on
AWS, and on the object's metadata (deletionTimestamp); a status value can at most keep the operator
from acting again (it never makes it delete, nor makes a database this object's).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from dbops.core import kube as kube_mod
from dbops.core import logs
from dbops.core.aws import AWSError, paced_seconds
from dbops.core.queue import WorkQueue
from dbops.core.status import Cond, View, condition, fingerprint, render, same
from dbops.core.types import SpecError

log = logging.getLogger(__name__)

RETRY_ANNOTATION = "dbops.dev/retry"
THROTTLED = "Throttled"  # a condition the core sets on any kind
K8S_BACKOFF = 10.0  # seconds: the longest wait between passes that failed on the API server
Key = tuple[str, str, str]  # (plural, namespace, name)


class GoneError(Exception):
    """The object was deleted, is being deleted, or changed under the pass: act on nothing."""


@dataclass(frozen=True)
class Note:
    """A record to post (event, audit, metrics, notifications)."""

    action: str
    reason: str
    message: str
    warning: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    view: View
    requeue: float | None = None  # seconds to the next pass; None: the slow resync
    notes: list[Note] = field(default_factory=list)
    done: bool = False  # deletion: nothing of ours is left, the finalizer may go
    finalizer: bool = False  # put dbops' finalizer on (after the status: a watcher sees Pending first)
    # Written: go on in this same pass (a new object shows Pending, then gets its create at once rather
    # than queueing again behind every other object of its burst).
    go_on: bool = False


def accepted(view: View) -> Outcome:
    """A new object's first step, the same for every kind: Pending shown and the finalizer on before
    any AWS call, then the rest of the pass."""
    return Outcome(view, finalizer=True, go_on=True)


class Controller(Protocol):
    kind: str
    plural: str
    status_model: type[BaseModel]
    known_conditions: tuple[str, ...]
    keep: tuple[str, ...]

    def reconcile(self, p: Pass) -> Outcome: ...
    def finalize(self, p: Pass) -> Outcome: ...
    def transition(self, previous: str | None, view: View, status: dict[str, Any]) -> Note | None: ...
    def identity(self, p: Pass) -> dict[str, Any]: ...
    def forget(self, uid: str) -> None: ...


class Services(Protocol):
    """What a pass uses (dbops.app.Services): only the parts the core itself needs are listed."""

    kube: kube_mod.Kube
    reporter: Any
    settings: Any


class Pass:
    """One pass over one object: its body as last seen, and the helpers a kind acts through."""

    def __init__(self, services: Any, controller: Controller, body: dict[str, Any]) -> None:
        self.services = services
        self.controller = controller
        self.body = body
        meta = body["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.generation: int | None = meta.get("generation")
        self.notes: list[Note] = []
        self.fresh = False  # `body` is the API server's answer to this pass's own write: current

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.body.get("spec") or {})

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.body["metadata"].get("annotations") or {})

    @property
    def deleting(self) -> bool:
        return bool(self.body["metadata"].get("deletionTimestamp"))

    def confirm_current(self) -> None:
        """Before any call that creates: read the object fresh and make sure it still wants it (not
        deleted nor being deleted, same spec), and that dbops' finalizer is on it, so that whatever is
        created is removed per deletionPolicy when the object goes. Raises GoneError otherwise."""
        kube = self.services.kube
        # What this pass's own write got back is as current as a read (a GET spared in a burst).
        fresh = self.body if self.fresh else kube.get(self.controller.plural, self.namespace, self.name)
        meta = (fresh or {}).get("metadata") or {}
        if fresh is None or meta.get("uid") != self.uid or meta.get("deletionTimestamp"):
            raise GoneError("the object is gone or being deleted")
        if meta.get("generation") != self.generation:
            raise GoneError("the spec changed during the pass")
        self.wrote(kube.set_finalizer(self.controller.plural, fresh, present=True))

    def wrote(self, body: dict[str, Any]) -> None:
        """The object as the API server answered a write (or a read) of this pass."""
        self.body, self.fresh = body, True

    def note(self, action: str, reason: str, message: str, warning: bool = False, **details: Any) -> None:
        self.notes.append(Note(action, reason, message, warning, details))


@dataclass
class _Memory:
    """What the core remembers of an object between passes (never a reason to act)."""

    status: bytes = b""  # fingerprint of the status last written (or seen) by this process
    trigger: bytes = b""  # digest of what in the object, besides status, wakes a pass
    failed: tuple[int | None, str] | None = None  # (generation, retry token) of a permanent failure
    failure: dict[str, Any] | None = None  # the status written for it
    attempts: int = 0  # consecutive transient failures, for the backoff
    body: bytes = b""  # the object as last seen by the watch (compact JSON, trimmed)
    version: str | None = None  # that object's resourceVersion (kept apart: read on every pass)
    # The object as this process last wrote (or read) it, and the watch's version it is newer than: until
    # the watch brings anything past that version, the next pass starts from this one, not from the
    # older version (which would do again what the pass just did: Pending written and told twice).
    written: tuple[str, bytes] | None = None


class Reconciler:
    def __init__(
        self,
        services: Any,
        controllers: Iterable[Controller],
        resync: float,
        workers: int,
        is_leader: Callable[[], bool] = lambda: True,
        max_backoff: float = 60.0,
        observe_pass: Callable[[str, float], None] | None = None,
        scope: Callable[[Pass], AbstractContextManager[None]] | None = None,
    ) -> None:
        self.services = services
        self.controllers = {c.plural: c for c in controllers}
        self.resync = resync
        self.queue: WorkQueue[Key] = WorkQueue()
        self.memory: dict[Key, _Memory] = {}
        self._lock = threading.Lock()
        self.workers = workers
        self.is_leader = is_leader
        self.max_backoff = max_backoff
        self._threads: list[threading.Thread] = []
        self.heartbeat = time.monotonic()  # the last time a worker finished a pass or found none due
        self._stop = threading.Event()
        self.passes = 0
        self.observe_pass = observe_pass
        # Around each pass's own work (reconcile or finalize): the AWS identity its calls are signed with.
        self.scope = scope or (lambda _p: contextlib.nullcontext())

    # --- waking -----------------------------------------------------------------------------------------

    def wake(self, plural: str, body: dict[str, Any], deleted: bool = False) -> None:
        """A watch event: remember the object as seen, and queue a pass when something that matters
        changed (a status this process did not write counts: it is corrected at once)."""
        meta = body.get("metadata") or {}
        key = (plural, str(meta.get("namespace")), str(meta.get("name")))
        if deleted:
            self._gone(key, str(meta.get("uid", "")))
            return
        trigger = _trigger(body)
        status = fingerprint(body.get("status"))
        with self._lock:
            mem = self.memory.setdefault(key, _Memory())
            changed = mem.trigger != trigger or mem.status != status
            mem.trigger = trigger
            mem.body = _compact(body)
            mem.version = str(meta["resourceVersion"]) if meta.get("resourceVersion") else None
            if mem.written is not None and mem.written[0] != mem.version:
                mem.written = None  # the watch moved past the version the write was newer than
        if changed:
            self.queue.add(key)

    def nudge(self, plural: str, namespace: str, name: str) -> None:
        """Queue a pass of an object this process has seen, for a change elsewhere that its pass reads (a
        schedule reads its runs' DBRestores)."""
        key = (plural, namespace, name)
        with self._lock:
            known = key in self.memory
        if known:
            self.queue.add(key)

    def _gone(self, key: Key, uid: str) -> None:
        with self._lock:
            self.memory.pop(key, None)
        self.queue.forget(key)
        controller = self.controllers.get(key[0])
        if controller is not None and uid:
            controller.forget(uid)

    # --- workers ------------------------------------------------------------------------------------------

    def start(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"dbops-reconcile-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 0.0) -> bool:
        """Take no more passes, and wait up to `timeout` seconds for those in flight: a replica that
        stops hands the Lease back only after its last pass has written (else the next leader runs a
        pass of the same object beside it) and closes the audit trail after that pass's records (else
        they stay in the spool of a pod that is gone). True when no pass is still running."""
        self._stop.set()
        self.queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        while not self._stop.is_set():
            if not self.is_leader():
                self.heartbeat = time.monotonic()
                self._stop.wait(0.5)
                continue
            key = self.queue.get(timeout=1.0)
            self.heartbeat = time.monotonic()
            if key is None:
                continue
            begun = time.monotonic()
            try:
                with logs.about(self.controllers[key[0]].kind, key[1], key[2]):
                    delay = self._logged_run(key)
            finally:
                self.queue.done(key)
                self.heartbeat = time.monotonic()
                if self.observe_pass is not None:
                    self.observe_pass(self.controllers[key[0]].kind, self.heartbeat - begun)
            if delay is not None:
                self.queue.add(key, delay)

    def _logged_run(self, key: Key) -> float | None:
        try:
            return self.run(key)
        except Exception:  # a bug in a pass: log it, and try again later rather than die
            log.exception("reconcile of %s/%s/%s failed", *key)
            return self._backoff(key)

    def regions(self) -> set[str]:
        """The regions the objects name (spec.region): where the orphan sweep looks, besides the default."""
        with self._lock:
            bodies = [m.body for m in self.memory.values()]
        found = {str((json.loads(b).get("spec") or {}).get("region") or "") for b in bodies if b}
        return found - {""}

    def stalled(self, limit: float) -> bool:
        """True when passes are due and no worker got to any for `limit` seconds (liveness)."""
        return time.monotonic() - self.heartbeat > limit and self.queue.due_within(0) > 0

    # --- one pass -----------------------------------------------------------------------------------------

    def run(self, key: Key) -> float | None:
        """One pass; returns the seconds until the next one (None: the object is gone)."""
        with self._lock:
            mem = self.memory.get(key)
            raw = (mem.written[1] if mem.written else mem.body) if mem else b""
            watched = mem.version if mem else None
        if not raw:
            return None
        body = json.loads(raw)
        controller = self.controllers[key[0]]
        p = Pass(self.services, controller, body)
        self.passes += 1
        paced_seconds(reset=True)
        try:
            return self._run(key, p)
        finally:
            self._remember_body(key, watched, body, p.body)

    def _run(self, key: Key, p: Pass) -> float | None:
        try:
            if p.deleting:
                return self._finalize(key, p)
            if self._still_failed(key, p):
                return self.resync
            outcome = self._step(key, p)
            if outcome.go_on:  # once: the rest of a new object's pass
                outcome = self._step(key, p)
        except (GoneError, SpecError, ValidationError, AWSError, kube_mod.K8sError) as exc:
            return self._on_error(key, p, exc)
        return self._next(key, 0.0 if outcome.go_on else outcome.requeue)

    def _step(self, key: Key, p: Pass) -> Outcome:
        with self.scope(p):
            outcome = p.controller.reconcile(p)
        self._clear_failure(key)
        self._write(key, p, outcome)  # a status the API server did not take is written by the next pass
        if outcome.finalizer:  # (else the next pass puts it on, before any create at the latest)
            self._finalizer_on(key, p)
        return outcome

    def _finalizer_on(self, key: Key, p: Pass) -> None:
        """Its own watch event wakes no pass: this one goes on from the answer."""
        body = self.services.kube.set_finalizer(p.controller.plural, p.body, present=True)
        if body is not p.body:
            p.wrote(body)
            with self._lock:
                mem = self.memory.get(key)
                if mem is not None:
                    mem.trigger = _trigger(body)

    def _on_error(self, key: Key, p: Pass, exc: Exception) -> float:
        """What a failed pass leaves: Failed for what the user must change, a retry for the rest."""
        if isinstance(exc, GoneError | kube_mod.ConflictError):
            return 0.5  # the object changed under the pass: the watch brings the new version shortly
        if isinstance(exc, SpecError):
            return self._failed(key, p, exc.reason, exc.message, {})
        if isinstance(exc, ValidationError):
            return self._failed(key, p, "InvalidSpec", _validation_message(exc), {})
        if isinstance(exc, AWSError):
            if exc.transient:
                return self._transient(key, p, exc)
            return self._failed(
                key, p, exc.code, str(exc), {"aws_request_id": exc.request_id, "operation": exc.operation}
            )
        log.warning(
            "%s %s/%s: the API server did not answer (%s); retrying", p.controller.kind, p.namespace, p.name, exc
        )
        return self._backoff(key, K8S_BACKOFF)

    def _finalize(self, key: Key, p: Pass) -> float | None:
        try:
            with self.scope(p):
                outcome = p.controller.finalize(p)
        except SpecError as err:
            outcome = Outcome(
                View("Deleting", "False", err.reason, err.message),
                notes=[Note("delete-failed", err.reason, err.message, True)],
            )
        except AWSError as failure:
            message = f"deleting: {failure}"
            view = View("Deleting", "Unknown" if failure.transient else "False", failure.code, message)
            note = Note("delete-failed", failure.code, message, True, {"aws_request_id": failure.request_id})
            outcome = Outcome(view, notes=[note], requeue=self._backoff(key))
        except kube_mod.K8sError:
            return self._backoff(key, K8S_BACKOFF)
        if outcome.done:
            self._post(p, outcome.notes)
            self.services.kube.set_finalizer(p.controller.plural, p.body, present=False)
            return None
        self._write(key, p, outcome)
        return self._next(key, outcome.requeue)

    def _write(self, key: Key, p: Pass, outcome: Outcome) -> None:
        """Write the whole status when it changed, then post what happened (so that a status that
        could not be written is retried with its records, never posted twice)."""
        previous = p.status
        status = self._render(p, outcome.view)
        transition = p.controller.transition(previous.get("phase"), outcome.view, status)
        if not same(status, previous):
            self._patch(key, p, status)
        notes = [*p.notes, *outcome.notes]
        if transition is not None and transition.action not in {n.action for n in notes}:
            notes.append(transition)
        self._post(p, notes)
        p.notes = []  # posted: a pass that goes on never posts them twice

    def _render(self, p: Pass, view: View) -> dict[str, Any]:
        throttled = _throttled(p.status, paced_seconds())
        if throttled is not None:  # the shared AWS budget delayed this object (or no longer does): say so
            view = view.with_conditions(throttled)
        known = (*p.controller.known_conditions, THROTTLED)
        status = render(view, p.status, p.generation, known, p.controller.keep)
        # The kind's typed status model checks every field name and type before anything is written.
        model = p.controller.status_model.model_validate(status)
        out: dict[str, Any] = model.model_dump(by_alias=True, mode="json")
        return out

    def _patch(self, key: Key, p: Pass, status: dict[str, Any]) -> None:
        # Every field of the previous status that is not in the new one is removed (merge patch null).
        patch = {**dict.fromkeys(p.status), **status}
        self._remember_status(key, status)  # before the PATCH: its own watch event may come first
        written = self.services.kube.patch_status(p.controller.plural, p.namespace, p.name, patch)
        with self._lock:
            mem = self.memory.get(key)
            if mem is not None:
                mem.status = fingerprint(written.get("status"))
        p.wrote(written)  # the whole object as stored now (its resourceVersion for the next write)

    def _remember_body(self, key: Key, watched: str | None, started: dict[str, Any], now: dict[str, Any]) -> None:
        """After a pass that wrote (or read fresh): the object as it is now, for the next pass, unless the
        watch brought a version meanwhile (then the watch is the one to trust)."""
        version = now.get("metadata", {}).get("resourceVersion")
        if version == started.get("metadata", {}).get("resourceVersion"):
            return
        with self._lock:
            mem = self.memory.get(key)
            if mem is not None and watched is not None and mem.version == watched != version:
                mem.written = (watched, _compact(now))

    def _remember_status(self, key: Key, status: dict[str, Any]) -> None:
        with self._lock:
            mem = self.memory.get(key)
            if mem is not None:
                mem.status = fingerprint(status)

    def _post(self, p: Pass, notes: list[Note]) -> None:
        for note in notes:  # each step in the log too (words written for events: never a secret)
            log.log(logging.WARNING if note.warning else logging.INFO, "%s: %s", note.reason, note.message)
            self.services.reporter.post(
                p.body, note.action, note.reason, note.message, warning=note.warning, **note.details
            )

    def _next(self, key: Key, requeue: float | None) -> float:
        with self._lock:
            mem = self.memory.get(key)
            if mem is not None:
                mem.attempts = 0
        return self.resync if requeue is None else min(requeue, self.resync)

    # --- failures -------------------------------------------------------------------------------------------

    def _failed(self, key: Key, p: Pass, reason: str, message: str, details: dict[str, Any]) -> float:
        """A permanent failure: phase Failed with the reason, until the spec changes or a retry. The
        record is posted once per failure, not on every pass (nor again after a restart)."""
        token = p.annotations.get(RETRY_ANNOTATION, "")
        ready = condition(p.status.get("conditions")) or {}
        again = p.status.get("phase") == "Failed" and (ready.get("reason"), ready.get("message")) == (reason, message)
        view = View("Failed", "False", reason, message, {**_identity(p), "retryToken": token or None})
        notes = [] if again else [Note("failed", reason, message, True, details)]
        try:
            self._write(key, p, Outcome(view, notes=notes))
        except kube_mod.K8sError:
            return self._backoff(key, K8S_BACKOFF)
        with self._lock:
            mem = self.memory.get(key)
            if mem is not None:
                mem.failed, mem.failure = (p.generation, token), p.status
        return self.resync

    def _still_failed(self, key: Key, p: Pass) -> bool:
        """Failed for this spec and retry token: nothing to do, but put back a status someone changed."""
        with self._lock:
            mem = self.memory.get(key)
            failed, failure = (mem.failed, mem.failure) if mem else (None, None)
        if failed != (p.generation, p.annotations.get(RETRY_ANNOTATION, "")):
            return False
        if failure is not None and not same(p.status, failure):
            self._patch(key, p, failure)
        return True

    def _clear_failure(self, key: Key) -> None:
        with self._lock:
            mem = self.memory.get(key)
            if mem is not None:
                mem.failed, mem.failure = None, None

    def _transient(self, key: Key, p: Pass, failure: AWSError) -> float:
        """AWS will likely answer later: keep the phase, say so in Ready (Unknown), back off."""
        delay = self._backoff(key)
        phase = p.status.get("phase") or "Pending"
        message = f"retrying in {delay:.0f}s: {failure}"
        view = View(phase, "Unknown", failure.code, message, _kept_fields(p))
        note = Note(
            "retrying",
            failure.code,
            message,
            True,
            {"aws_request_id": failure.request_id, "operation": failure.operation},
        )
        with contextlib.suppress(kube_mod.K8sError):  # the status says so when the API server is back
            self._write(key, p, Outcome(view, notes=[note]))
        return delay

    def _backoff(self, key: Key, cap: float | None = None) -> float:
        """2, 4, 8 ... seconds, up to `cap`: AWS failures wait up to a minute (the shared budget paces
        the rest); the API server's only up to K8S_BACKOFF, so that its return is noticed at once (its
        watch brings nothing new: the objects did not change while it was away)."""
        with self._lock:
            mem = self.memory.get(key)
            attempts = mem.attempts if mem else 0
            if mem is not None:
                mem.attempts += 1
        return float(min(self.max_backoff if cap is None else cap, 2.0 * 2 ** min(attempts, 10)))

    # --- what other parts ask of the objects ------------------------------------------------------------

    def objects(self, namespace: str) -> list[dict[str, Any]]:
        """Every object of a namespace as the watch last showed it (compact: no AWS or API call), for
        counts across objects such as a namespace's limits."""
        with self._lock:
            raw = [mem.body for key, mem in self.memory.items() if key[1] == namespace and mem.body]
        return [json.loads(body) for body in raw]


def _throttled(previous: dict[str, Any], waited: float) -> Cond | None:
    """The Throttled condition: True while this object's AWS calls wait for the shared budget."""
    if waited >= 1.0:
        return Cond(THROTTLED, "True", "AWSCallBudget", f"waited {waited:.0f}s for the AWS call budget of its region")
    before = condition(previous.get("conditions"), THROTTLED)
    if before is not None and before.get("status") == "True":
        return Cond(THROTTLED, "False", "AWSCallBudget", "its AWS calls no longer wait")
    return None


def _identity(p: Pass) -> dict[str, Any]:
    """The status fields that follow from the spec alone (what the object is about), when it parses."""
    try:
        return p.controller.identity(p)
    except Exception:  # an invalid spec: the failure says why; there is no identity to show
        return {}


def _kept_fields(p: Pass) -> dict[str, Any]:
    """On a transient failure, what the last status showed stays (the failure is about AWS, not the DB)."""
    skip = {"phase", "conditions", "observedGeneration"}
    return {k: v for k, v in p.status.items() if k not in skip}


def _trigger(body: dict[str, Any]) -> bytes:
    """What wakes a pass besides a status change: the spec (its generation), the deletion, dbops'
    annotations (retry, notifications), and whether dbops' finalizer is there."""
    meta = body.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("dbops.dev/")}
    finalized = kube_mod.FINALIZER in (meta.get("finalizers") or [])
    text = json.dumps([meta.get("generation"), meta.get("deletionTimestamp"), annotations, finalized], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


_DROP_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _compact(body: dict[str, Any]) -> bytes:
    """The object as a pass needs it, in as few bytes as possible (10,000 objects are kept)."""
    meta = body.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROP_ANNOTATIONS}
    slim = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {
            k: meta[k]
            for k in (
                "name",
                "namespace",
                "uid",
                "generation",
                "resourceVersion",
                "deletionTimestamp",
                "finalizers",
                "creationTimestamp",
                "labels",
            )
            if meta.get(k) is not None
        }
        | ({"annotations": annotations} if annotations else {}),
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }
    return json.dumps(slim, separators=(",", ":")).encode()


def _validation_message(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"spec.{where}: {first.get('msg')}"
