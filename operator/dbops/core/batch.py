"""Fresh reads shared by the objects of a burst: the look before a create, made by many passes at
once (200 objects applied together), costs one AWS call per region and kind instead of one each.

A read joins the batch of its region, kind and scope that is still open, or opens one; the opener waits a
few milliseconds for others to join, then one call serves them all, made on the opener's thread (so with
the AWS identity it acts as: reads of different identities, `scope`, never share a batch). Every answer
is fresh: it was fetched after the request joined.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

Fetch = Callable[[str, str, Iterable[str]], dict[str, dict[str, Any]]]


@dataclass
class _Batch:
    ids: set[str] = field(default_factory=set)
    closed: bool = False
    result: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Coalescer:
    def __init__(
        self, fetch: Fetch, window: float = 0.02, longest: float = 0.1, max_batch: int = 100, timeout: float = 120.0
    ) -> None:
        self.fetch = fetch
        self.window = window
        self.longest = longest
        self.max_batch = max_batch
        self.timeout = timeout
        self._open: dict[tuple[str, str, str], _Batch] = {}
        self._lock = threading.Lock()
        self.calls = 0  # fetches made (for the benchmark's figures)

    def get(self, region: str, kind: str, ids: Iterable[str], scope: str = "") -> dict[str, dict[str, Any] | None]:
        """What AWS says now about each id (None: it does not exist), as seen by the identity `scope` names."""
        wanted = set(ids)
        if not wanted:
            return {}
        batch, opener = self._join((region, kind, scope), wanted)
        if opener:
            self._run((region, kind, scope), batch)
        elif not batch.done.wait(self.timeout):
            raise TimeoutError(f"no answer for {kind}s in {region} within {self.timeout:.0f}s")
        if batch.error is not None:
            raise batch.error
        return {i: batch.result.get(i) for i in wanted}

    def _join(self, key: tuple[str, str, str], wanted: set[str]) -> tuple[_Batch, bool]:
        with self._lock:
            batch = self._open.get(key)
            if batch is not None and len(batch.ids | wanted) <= self.max_batch:
                batch.ids |= wanted
                return batch, False
            batch = _Batch(ids=set(wanted))
            self._open[key] = batch
            return batch, True

    def _run(self, key: tuple[str, str, str], batch: _Batch) -> None:
        self._linger(batch)
        with self._lock:
            batch.closed = True
            if self._open.get(key) is batch:
                del self._open[key]
        try:
            self.calls += 1
            batch.result = self.fetch(key[0], key[1], sorted(batch.ids))
        except Exception as exc:  # every member of the batch sees the failure as its own
            batch.error = exc
        finally:
            batch.done.set()

    def _linger(self, batch: _Batch) -> None:
        """Let the passes of the same burst join: a window, and another while the batch still grows (up to
        `longest`), so that a lone read waits 20 ms and a burst of 200 shares a few calls."""
        deadline = time.monotonic() + self.longest
        with self._lock:
            size = len(batch.ids)
        while True:
            time.sleep(self.window)
            with self._lock:
                grown, size = len(batch.ids) > size, len(batch.ids)
            if not grown or size >= self.max_batch or time.monotonic() + self.window > deadline:
                return


class Recent:
    """Answers of the last `ttl` seconds, for what the passes of a burst all read alike: the source of 200
    restores of one snapshot is read once, not 200 times. Never for the look before a create, which is
    always fresh (Coalescer): a source read a second ago is as good as one read now, as the create call
    itself fails with AWS's error code when the source went away meanwhile."""

    def __init__(self, ttl: float = 1.0, size: int = 1024) -> None:
        self.ttl = ttl
        self.size = size
        self._seen: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self.hits = 0  # answers given without a call (for the benchmark's figures)

    def get(self, key: tuple[str, ...], read: Callable[[], Any]) -> Any:
        moment = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and moment - seen[0] < self.ttl:
                self.hits += 1
                return copy.deepcopy(seen[1])  # each pass its own: a change made by one stays in it
        value = read()  # outside the lock: concurrent misses meet again in the Coalescer below
        if not value:  # "not found" is never kept: a source made a moment later is seen at once
            return value
        with self._lock:
            if len(self._seen) >= self.size:  # the old ones go first (bounded: one entry per source)
                self._seen = {k: v for k, v in self._seen.items() if moment - v[0] < self.ttl}
            self._seen[key] = (moment, copy.deepcopy(value))
        return value
