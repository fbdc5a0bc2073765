"""The work queue of the reconcile core: keys of objects due a pass.

The semantics of controller-runtime's workqueue, which every Kubernetes controller relies on:
- a key is in the queue at most once; adding it again keeps the earlier due time;
- a key is never handed to two workers at once; added while a pass runs, it is queued again when the
  pass is done, so that a change made during a pass is never lost;
- a key can be added with a delay (requeue after N seconds).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[K, float] = {}  # queued key -> monotonic time it is due
        self._heap: list[tuple[float, int, K]] = []  # (due, seq, key); stale entries skipped on pop
        self._seq = itertools.count()
        self._active: set[K] = set()
        self._after: dict[K, float] = {}  # key added while active -> due time once the pass is done
        self._closed = False

    def add(self, key: K, delay: float = 0.0) -> None:
        due = time.monotonic() + max(0.0, delay)
        with self._cond:
            if self._closed:
                return
            if key in self._active:
                self._after[key] = min(due, self._after.get(key, due))
                return
            self._schedule(key, due)

    def _schedule(self, key: K, due: float) -> None:
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._seq), key))
        self._cond.notify()

    def get(self, timeout: float | None = None) -> K | None:
        """The next due key (now marked active), waiting for one; None on timeout or once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                wait = self._pop_due()
                if isinstance(wait, float):
                    if deadline is not None:
                        wait = min(wait, deadline - time.monotonic())
                        if wait <= 0:
                            return None
                    self._cond.wait(wait)
                    continue
                if wait is not None:
                    return wait
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return None

    def _pop_due(self) -> K | float | None:
        """A due key (marked active), the seconds until the next one is due, or None when empty."""
        while self._heap:
            due, _, key = self._heap[0]
            if self._due.get(key) != due:
                heapq.heappop(self._heap)  # superseded by an earlier due time, or taken
                continue
            wait = due - time.monotonic()
            if wait > 0:
                return wait
            heapq.heappop(self._heap)
            del self._due[key]
            self._active.add(key)
            return key
        return None

    def done(self, key: K) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._after:
                self._schedule(key, self._after.pop(key))

    def forget(self, key: K) -> None:
        """Drop a key that is queued (its object is gone)."""
        with self._cond:
            self._due.pop(key, None)
            self._after.pop(key, None)

    def due_within(self, seconds: float) -> int:
        """How many keys are due within `seconds` (overdue ones included): for the liveness check."""
        limit = time.monotonic() + seconds
        with self._cond:
            return sum(1 for due in self._due.values() if due <= limit)

    def __len__(self) -> int:
        with self._cond:
            return len(self._due) + len(self._after)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
