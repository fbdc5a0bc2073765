"""Kubernetes events, as client-go's EventRecorder posts them: under the operator's own component
name, a repeat of the same event bumps the count of the first instead of adding another, and each
object's warnings are rate-limited (a burst, then one a minute), so that an object retrying for hours
cannot flood `kubectl get events`. Events are posted from a thread of their own: a pass never waits
for one (nor fails because the API server refused one).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

from dbops.core.status import now

log = logging.getLogger(__name__)

MAX_MESSAGE = 1024
AGGREGATE_SECONDS = 600.0  # a repeat within ten minutes is the same event
REMEMBERED = 4096


class EventSink(Protocol):
    def create_event(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]: ...
    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Ref:
    """The object an event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


@dataclass
class _Seen:
    name: str
    count: int
    at: float


class _Allowance:
    """Per object: `burst` events at once, then one per `every` seconds."""

    def __init__(self, burst: int, every: float) -> None:
        self.burst, self.every = burst, every
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        moment = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (moment - self.stamp) / self.every)
        self.stamp = moment
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Recorder:
    def __init__(
        self,
        sink: EventSink,
        component: str,
        instance: str,
        warning_burst: int = 5,
        warning_every: float = 60.0,
    ) -> None:
        self.sink = sink
        self.component = component
        self.instance = instance
        self._seen: OrderedDict[tuple[str, str, str, str], _Seen] = OrderedDict()
        self._allowances: OrderedDict[str, _Allowance] = OrderedDict()
        self._warning_burst, self._warning_every = warning_burst, warning_every
        self._lock = threading.Lock()
        self.suppressed = 0
        self._queue: queue.Queue[tuple[Ref, str, str, str] | None] = queue.Queue(maxsize=10000)
        self._thread: threading.Thread | None = None

    def post(self, ref: Ref, type_: str, reason: str, message: str) -> None:
        """Queue an event for the poster thread; dropped (and counted) when the queue is full."""
        self._start()
        try:
            self._queue.put_nowait((ref, type_, reason, message))
        except queue.Full:
            self.suppressed += 1

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._drain, name="dbops-events", daemon=True)
                self._thread.start()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.post_now(*item)
            self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until the queued events are posted (bounded)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)

    def post_now(self, ref: Ref, type_: str, reason: str, message: str) -> None:
        """Post (or bump) an event; never raises: events are helpful, not essential."""
        message = _bounded(message)
        key = (ref.uid, type_, reason, message)
        with self._lock:
            seen = self._seen.get(key)
            fresh = seen is not None and time.monotonic() - seen.at < AGGREGATE_SECONDS
            if not fresh and type_ == "Warning" and not self._allow(ref.uid):
                self.suppressed += 1
                return
        try:
            if fresh and seen is not None:
                self._bump(ref, seen)
            else:
                self._create(ref, key, type_, reason, message)
        except Exception as exc:  # the API server is down or refuses: the status says it all anyway
            log.debug("event %s for %s/%s not posted: %s", reason, ref.namespace, ref.name, exc)

    def _allow(self, uid: str) -> bool:
        allowance = self._allowances.get(uid)
        if allowance is None:
            allowance = self._allowances[uid] = _Allowance(self._warning_burst, self._warning_every)
            while len(self._allowances) > REMEMBERED:
                self._allowances.popitem(last=False)
        self._allowances.move_to_end(uid)
        return allowance.take()

    def _bump(self, ref: Ref, seen: _Seen) -> None:
        with self._lock:
            seen.count += 1
            seen.at = time.monotonic()
            count = seen.count
        self.sink.patch_event(ref.namespace, seen.name, {"count": count, "lastTimestamp": _iso()})

    def _create(self, ref: Ref, key: tuple[str, str, str, str], type_: str, reason: str, message: str) -> None:
        stamp = _iso()
        event: dict[str, Any] = {
            "metadata": {"name": f"{ref.name}.{uuid.uuid4().hex[:16]}", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                "uid": ref.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": self.component},  # the "From" column of `kubectl describe`
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        created = self.sink.create_event(ref.namespace, event)
        with self._lock:
            self._seen[key] = _Seen(
                str(created.get("metadata", {}).get("name") or event["metadata"]["name"]), 1, time.monotonic()
            )
            while len(self._seen) > REMEMBERED:
                self._seen.popitem(last=False)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._allowances.pop(uid, None)
            for key in [k for k in self._seen if k[0] == uid]:
                del self._seen[key]


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    half = MAX_MESSAGE // 2 - 2
    return f"{message[:half]}...{message[-half:]}"


def _iso() -> str:
    return now().strftime("%Y-%m-%dT%H:%M:%SZ")
