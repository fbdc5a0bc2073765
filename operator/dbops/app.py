"""The operator's wiring: every process-wide service made once at startup and kept in kopf's memo,
and the only kopf handlers of the kinds: watch events that wake the reconcile core.

kopf's part is watching (and, in webhook.py, admission): it lists the objects at start and hands over
every change; the core decides whether a pass is due. There are no kopf create/update/delete or timer
handlers, no kopf progress annotations and no kopf finalizer: the core owns all of that.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import kopf

from dbops import audit, metrics, notify, orphans
from dbops.attach.controller import AttachController
from dbops.core.aws import Aws, AwsConfig, StatusCache
from dbops.core.events import Recorder
from dbops.core.health import Health
from dbops.core.kube import Kube
from dbops.core.leader import Leadership
from dbops.core.reconciler import Controller, Reconciler
from dbops.core.report import Reporter
from dbops.models import GROUP, VERSION
from dbops.restore.controller import RestoreController
from dbops.schedule.controller import ScheduleController
from dbops.settings import Settings, get

log = logging.getLogger(__name__)
PLURALS = ("dbrestores", "dbattaches", "dbrestoreschedules")
SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Services:
    settings: Settings
    health: Health
    aws: Aws
    kube: Kube
    reporter: Reporter
    metrics: metrics.Metrics
    fast: StatusCache
    slow: StatusCache
    reconciler: Reconciler
    leadership: Leadership | None
    trail: audit.AuditTrail
    notifier: notify.Notifier
    sweep: orphans.Sweep
    stop: threading.Event


def build(cfg: Settings, health: Health) -> Services:
    """Make every service; nothing here calls AWS or the API server yet."""
    aws = Aws(
        AwsConfig(
            max_attempts=cfg.aws_max_attempts,
            max_pool=cfg.max_workers,
            read_timeout=cfg.aws_timeout,
            rate=cfg.aws_rate,
            burst=cfg.aws_burst,
        )
    )
    kube = Kube(pool=cfg.max_workers + 8)
    reporter = Reporter(Recorder(kube, cfg.event_component, cfg.pod_name))
    m = metrics.Metrics()
    metrics.subscribe(m, reporter, aws)
    fast = StatusCache(cfg.poll_interval, fetch=aws.describe_many)
    slow = StatusCache(cfg.resync_interval, fetch=aws.describe_many)
    controllers: list[Controller] = [
        RestoreController(aws, fast, slow, cfg.region, cfg.poll_interval),
        AttachController(aws, fast, slow, cfg.region, cfg.poll_interval),
        ScheduleController(cfg.poll_interval, m.observe_schedule, m.forget_schedule),
    ]
    leadership = _leadership(cfg) if cfg.leader_election else None
    services_box: dict[str, Any] = {}
    reconciler = Reconciler(
        services_box,
        controllers,
        resync=cfg.resync_interval,
        workers=cfg.max_workers,
        is_leader=leadership.is_leader if leadership else (lambda: True),
        observe_pass=m.observe_pass,
    )
    trail = audit.AuditTrail(cfg.audit_url.get_secret_value(), cfg.audit_spool, cfg.audit_retry_interval)
    trail.attach_metrics(m.spool_depth, m.audit_written, m.audit_errors)
    reporter.observers.append(trail)
    notifier = notify.Notifier(cfg, m, kube.read_secret, aws)
    reporter.observers.append(notifier)
    sweep = orphans.Sweep(
        aws,
        kube,
        reporter,
        regions=lambda: {cfg.region} | reconciler.regions(),
        watched=orphans.watcher(cfg.namespace),
        handle=cfg.orphans,
        grace=cfg.orphan_grace,
        namespaces=orphans.exact_namespaces(cfg.namespace),
    )
    metrics.count_orphans(m, lambda: sweep.count)
    services = Services(
        cfg,
        health,
        aws,
        kube,
        reporter,
        m,
        fast,
        slow,
        reconciler,
        leadership,
        trail,
        notifier,
        sweep,
        threading.Event(),
    )
    reconciler.services = services
    return services


def _leadership(cfg: Settings) -> Leadership:
    namespace = cfg.lease_namespace
    if not namespace and SERVICE_ACCOUNT_NAMESPACE.exists():
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return Leadership(cfg.lease_name, namespace or "default", cfg.pod_name)


# --- kopf ---------------------------------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    cfg = get()
    settings.posting.enabled = False  # events are the core's (its own component name, aggregated)
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # Without it, kopf retries the forbidden cluster-wide lists for half a minute before it starts.
    settings.scanning.disabled = not cfg.cluster_scan
    health: Health = memo["health"]
    services = build(cfg, health)
    memo["services"] = services
    services.kube.api()  # the kubeconfig is read once, before any thread needs it
    services.trail.start()
    if services.leadership is not None:
        services.leadership.start()
    services.reconciler.start()
    is_leader = services.leadership.is_leader if services.leadership else (lambda: True)
    args = (cfg.resync_interval, is_leader, services.stop)
    threading.Thread(target=services.sweep.run, args=args, name="dbops-orphans", daemon=True).start()
    health.checks["reconcile"] = lambda: _stalled(services)
    loop_beat = {"at": time.monotonic()}
    health.checks["event-loop"] = lambda: _loop_stalled(loop_beat, cfg.stall_seconds)
    asyncio.get_running_loop().create_task(_tick(loop_beat))
    health.ready.set()


def _stalled(services: Services) -> str | None:
    if services.reconciler.stalled(services.settings.stall_seconds):
        return f"passes are due and none ran for {services.settings.stall_seconds:.0f}s"
    return None


async def _tick(beat: dict[str, float]) -> None:
    while True:
        beat["at"] = time.monotonic()
        await asyncio.sleep(5)


def _loop_stalled(beat: dict[str, float], limit: float) -> str | None:
    idle = time.monotonic() - beat["at"]
    return f"kopf's event loop has not ticked for {idle:.0f}s" if idle > limit else None


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    services: Services | None = memo.get("services")
    if services is None:
        return
    services.health.ready.clear()
    services.stop.set()
    services.reconciler.stop()
    if services.leadership is not None:
        await asyncio.to_thread(services.leadership.release)
    services.notifier.shutdown()
    if services.reporter.recorder is not None:
        await asyncio.to_thread(services.reporter.recorder.flush, 2)
    await asyncio.to_thread(services.trail.stop, 5)  # what is not written stays in the spool


def _wake(plural: str) -> Any:
    async def wake(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        services: Services | None = memo.get("services")
        if services is None:
            return
        body = event.get("object") or {}
        services.reconciler.wake(plural, dict(body), deleted=event.get("type") == "DELETED")
        for owner in _schedules_owning(body):  # a run's change is its schedule's news
            services.reconciler.nudge("dbrestoreschedules", str(body["metadata"].get("namespace")), owner)

    wake.__name__ = f"wake_{plural}"
    return wake


def _schedules_owning(body: Any) -> list[str]:
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return [
        str(r.get("name"))
        for r in refs
        if r.get("kind") == "DBRestoreSchedule" and r.get("apiVersion", "").startswith(GROUP)
    ]


for _plural in PLURALS:
    kopf.on.event(GROUP, VERSION, _plural, id=f"wake.{_plural}")(_wake(_plural))
