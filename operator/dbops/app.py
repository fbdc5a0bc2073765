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
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import kopf

from dbops import audit, metrics, notify, orphans
from dbops.attach.controller import AttachController
from dbops.core.aws import Aws, AwsConfig, StatusCache, acting_as
from dbops.core.events import Recorder
from dbops.core.health import Health
from dbops.core.kube import K8sError, Kube
from dbops.core.leader import Leadership
from dbops.core.reconciler import Controller, Pass, Reconciler
from dbops.core.report import Reporter
from dbops.core.status import timestamp
from dbops.models import GROUP, POLICY, VERSION
from dbops.policy.store import Tenancy
from dbops.restore.controller import RestoreController
from dbops.schedule.controller import ScheduleController
from dbops.settings import Settings, get

log = logging.getLogger(__name__)
PLURALS = ("dbrestores", "dbattaches", "dbrestoreschedules")
SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
PASS_DRAIN_SECONDS = 20.0  # how long a stopping replica waits for its passes in flight


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
    tenancy: Tenancy


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
    tenancy = Tenancy(enforce=cfg.policy == "enforce")
    controllers: list[Controller] = [
        RestoreController(aws, fast, slow, cfg.region, cfg.poll_interval, tenancy),
        AttachController(aws, fast, slow, cfg.region, cfg.poll_interval, tenancy),
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
        scope=acting_for(tenancy, reporter),
    )
    tenancy.objects = reconciler.objects
    trail = audit.AuditTrail(cfg.audit_url.get_secret_value(), cfg.audit_spool, cfg.audit_retry_interval)
    trail.attach_metrics(m.spool_depth, m.audit_written, m.audit_errors, m.audit_rejected)
    reporter.observers.append(trail)
    notifier = notify.Notifier(cfg, m, kube.read_secret, aws)
    reporter.observers.append(notifier)
    watched = orphans.watcher(cfg.namespace)
    sweep = orphans.Sweep(
        aws,
        kube,
        reporter,
        regions=lambda: {cfg.region} | reconciler.regions(),
        watched=watched,
        handle=cfg.orphans,
        grace=cfg.orphan_grace,
        namespaces=orphans.exact_namespaces(cfg.namespace),
        tenants=lambda: tenancy.tenants(watched),
        listed=slow.feed,  # the sweep's listing is the slow resync's poll of the settled objects
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
        tenancy,
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
    # A kopf worker per object only wakes the core: let it go after 1 s, not kopf's 5 s, so that the
    # initial listing of 10,000 objects does not hold 10,000 idle workers (and their memory) at once.
    settings.queueing.idle_timeout = 1.0
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
    # Ready once the policies are loaded (configure_tenancy) and, when enabled, the webhook listens.


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
    # Passes in flight end first (an AWS call and its status write take seconds; the pod's grace is 60 s).
    if not await asyncio.to_thread(services.reconciler.stop, PASS_DRAIN_SECONDS):
        log.warning("a pass was still running after %.0fs; stopping anyway", PASS_DRAIN_SECONDS)
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


# --- tenancy: DBPolicies and namespaces, watched by kopf into the Tenancy cache ----------------------------

REQUESTED_BY_POLICY = "dbops-requested-by"  # manifests/base/admission-requested-by.yaml
STATUS_EVERY = 2.0  # seconds between looks at what the policies' status should say


def acting_for(tenancy: Tenancy, reporter: Reporter) -> Callable[[Pass], AbstractContextManager[None]]:
    """Around each pass: every AWS call of it is signed with its namespace's identity (an assumed role,
    session tags naming the namespace, the object and the requester), or the operator's own."""

    def scope(p: Pass) -> AbstractContextManager[None]:
        who = reporter.requester_of(p.body, "requested")
        requester = who.username if who and who.verified else "unverified"
        return acting_as(tenancy.identity(p.namespace, p.controller.kind, p.name, requester))

    return scope


@kopf.on.startup()
async def configure_tenancy(memo: kopf.Memo, **_: Any) -> None:
    """Every policy and namespace known before the first pass or review (kopf starts watching, and so
    waking passes, only once every startup handler is done); kopf's watch keeps them current."""
    services: Services = memo["services"]
    if services.settings.policy == "namespace":
        _namespace_is_the_boundary(services)
        return
    try:
        policies = await asyncio.to_thread(services.kube.list_all, POLICY.plural)
        namespaces = await asyncio.to_thread(services.kube.namespaces)
    except K8sError as err:
        raise kopf.TemporaryError(f"cannot list DBPolicies and namespaces yet: {err}", delay=5) from err
    for body in namespaces:
        services.tenancy.put_namespace(body)
    for body in policies:
        services.tenancy.put_policy(body)
    services.reporter.stamped = _stamped(services)
    asyncio.get_running_loop().create_task(_policy_status(services))
    if not services.settings.webhook_port:  # else ready once the webhook listens (dbops.webhook)
        services.health.ready.set()
    mode = "enforced" if services.tenancy.enforce else "open (DBOPS_POLICY=open)"
    log.info("%d DBPolicies over %d namespaces; namespaces no policy selects: %s", len(policies), len(namespaces), mode)


def _namespace_is_the_boundary(services: Services) -> None:
    """DBOPS_POLICY=namespace: no DBPolicy, no namespace and no admission policy is read (its Role allows
    none); said at start, so that nobody takes it for an enforcing install."""
    if not services.settings.webhook_port:
        services.health.ready.set()
    log.warning(
        "DBOPS_POLICY=namespace: no DBPolicy is read; this namespace-scoped install (namespace %s, its "
        "ServiceAccount and AWS role) is the only boundary of what it restores and attaches",
        services.settings.namespace,
    )


def watch_tenancy() -> None:
    """kopf's watches of DBPolicies and namespaces, both cluster-scoped: not for DBOPS_POLICY=namespace."""
    kopf.on.event(GROUP, VERSION, POLICY.plural, id="watch.dbpolicies")(policy_event)
    kopf.on.event("", "v1", "namespaces", id="watch.namespaces")(namespace_event)


async def policy_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    services: Services | None = memo.get("services")
    body: dict[str, Any] = dict(event.get("object") or {})
    if services is not None and event.get("type") == "DELETED":
        services.tenancy.remove_policy(str(body.get("metadata", {}).get("name")))
    elif services is not None:
        services.tenancy.put_policy(body)


async def namespace_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    services: Services | None = memo.get("services")
    body: dict[str, Any] = dict(event.get("object") or {})
    if services is not None and event.get("type") == "DELETED":
        services.tenancy.remove_namespace(str(body.get("metadata", {}).get("name")))
    elif services is not None:
        services.tenancy.put_namespace(body)


def _stamped(services: Services, every: float = 60.0) -> Callable[[], bool]:
    """Whether the API server stamps the requester (the MutatingAdmissionPolicy and its binding are in
    place), asked at most once a minute; unknown (no permission, no answer) counts as not stamped."""
    seen = {"at": float("-inf"), "value": False}
    lock = threading.Lock()

    def stamped() -> bool:
        with lock:
            if time.monotonic() - seen["at"] >= every:
                try:
                    seen["value"] = services.kube.admission_policy_installed(REQUESTED_BY_POLICY)
                except K8sError as err:
                    log.warning(
                        "cannot tell whether %s is installed (%s): requesters unverified", REQUESTED_BY_POLICY, err
                    )
                    seen["value"] = False
                seen["at"] = time.monotonic()
            return bool(seen["value"])

    return stamped


async def _policy_status(services: Services) -> None:
    """Each policy's status: the namespaces it selects and since when its generation is applied. Written
    when it differs (by the leader only, when there is one); never stops on an API server outage."""
    while True:
        await asyncio.sleep(STATUS_EVERY)
        if services.leadership is not None and not services.leadership.is_leader():
            continue
        for name, (body, namespaces) in services.tenancy.selections().items():
            wanted = policy_status(body, namespaces)
            if wanted != {k: body["status"].get(k) for k in wanted}:
                try:
                    await asyncio.to_thread(services.kube.patch_cluster_status, POLICY.plural, name, wanted)
                except K8sError as err:
                    log.warning("status of DBPolicy %s not written: %s", name, err)


def policy_status(body: dict[str, Any], namespaces: list[str]) -> dict[str, Any]:
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    applied = status.get("appliedAt") if status.get("observedGeneration") == generation else None
    return {
        "observedGeneration": generation,
        "appliedAt": applied or timestamp(),
        "namespaceCount": len(namespaces),
        "namespaces": namespaces[:100],
    }
