"""One active replica: a coordination.k8s.io Lease, held with the kubernetes client's leader election.

Every replica watches and serves the admission webhook; only the holder of the Lease runs passes.
A replica that dies stops renewing, and another takes over once the lease runs out (lease_duration
seconds after the last renewal it saw: 12 s by default, within the 15 s a handover may take). A
replica that stops cleanly hands the Lease back at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import client
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger(__name__)
# The library logs every retry at INFO ("yet to finish lease_duration"): only its warnings matter.
logging.getLogger("leaderelection").setLevel(logging.WARNING)


class _Lock(LeaseLock):
    """The library's Lease lock, which stops taking or renewing the Lease once handed back."""

    released = False

    def create(self, *args: Any, **kwargs: Any) -> bool:
        return False if self.released else bool(super().create(*args, **kwargs))

    def update(self, *args: Any, **kwargs: Any) -> bool:
        return False if self.released else bool(super().update(*args, **kwargs))


class Leadership:
    def __init__(self, name: str, namespace: str, identity: str, lease_duration: int = 12) -> None:
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_duration = lease_duration
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock: _Lock | None = None

    def is_leader(self) -> bool:
        return self._leading.is_set()

    def start(self) -> Leadership:
        self._thread = threading.Thread(target=self._run, name="dbops-leader", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._lock = _Lock(self.name, self.namespace, self.identity)
                config = electionconfig.Config(
                    self._lock,
                    lease_duration=self.lease_duration,
                    renew_deadline=self.lease_duration - 3,
                    retry_period=2,
                    onstarted_leading=self._started,
                    onstopped_leading=self._stopped,
                )
                leaderelection.LeaderElection(config).run()
            except Exception:  # the API server is away: not leading, try again
                log.exception("leader election failed; retrying")
                self._leading.clear()
            self._stop.wait(2)

    def _started(self) -> None:
        log.info("%s leads (Lease %s/%s): running passes", self.identity, self.namespace, self.name)
        self._leading.set()

    def _stopped(self) -> None:
        log.warning("%s lost the Lease %s/%s: passes paused", self.identity, self.namespace, self.name)
        self._leading.clear()

    def release(self) -> None:
        """On a clean stop: give the Lease back so that another replica need not wait for it to expire."""
        self._stop.set()
        if self._lock is not None:
            self._lock.released = True
        if not self._leading.is_set():
            return
        self._leading.clear()
        body: dict[str, Any] = {"spec": {"holderIdentity": None, "leaseDurationSeconds": 1}}
        try:
            client.CoordinationV1Api().patch_namespaced_lease(self.name, self.namespace, body, _request_timeout=5)
        except Exception as exc:
            log.warning("could not hand the Lease back: %s", exc)
