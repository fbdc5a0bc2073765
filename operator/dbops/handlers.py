"""kopf handlers for DBRestore: thin glue between Kubernetes and the decisions in restore.py.

Lifecycle: create -> `accept` writes Pending (its own patch, so `kubectl get -w` shows it at once)
-> `start` looks before it creates and makes the restore call(s) -> the `poll` timer reads the
batched status cache until Available -> `finalize` on deletion applies spec.deletionPolicy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import kopf

from dbops import audit, k8s, metrics, notify, rds, report, restore, settings
from dbops.models import GROUP, VERSION, DBRestoreSpec
from dbops.status import condition, now, parse_timestamp, ready_patch, set_condition, timestamp, timing, unchanged

RESTORES = (GROUP, VERSION, "dbrestores")
STARTED_PHASES = ("Restoring", "Available", "Deleting", "Expired")
cache = rds.StatusCache(settings.get().poll_interval)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Own finalizer and annotation names, and room for the blocking boto3 calls."""
    cfg = _settings()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf's own annotations get a prefix of their own: kopf ignores changes under its prefix, and
    # users' annotations under dbops.dev/ (the retry annotation) must count as changes.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=f"kopf.{GROUP}")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=f"kopf.{GROUP}", key="last-handled-configuration"
    )
    settings.execution.max_workers = cfg.max_workers
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # Observers of every report record: metrics, the audit trail (spooled), notifications.
    m = metrics.install(kopf.get_default_registry())
    trail = audit.install(cfg.audit_url.get_secret_value(), cfg.audit_spool, cfg.audit_retry_interval)
    trail.attach_metrics(m.spool_depth, m.audit_written, m.audit_errors)
    notify.install(cfg, m)


def _settings() -> settings.Settings:
    return settings.get()


def _spec(spec: Any) -> DBRestoreSpec:
    return DBRestoreSpec.model_validate(dict(spec))


@kopf.on.create(*RESTORES, id="accept")
def accept(body: kopf.Body, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
    target = body["spec"]["target"]["identifier"]
    report.accept(body, status, meta, patch, f"restore of {target} requested; resolving the source")


@kopf.on.create(*RESTORES, id="start")
@kopf.on.update(*RESTORES, id="start")
def start(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    uid: str,
    name: str,
    namespace: str | None,
    patch: kopf.Patch,
    retry: int,
    **_: Any,
) -> None:
    """Resolve the source and make the restore call(s); also the retry path of a Failed object."""
    phase = status.get("phase")
    if phase in STARTED_PHASES:
        if meta.get("generation") != status.get("observedGeneration"):
            report.post(
                body,
                "spec-change-ignored",
                "SpecChangeIgnored",
                "the restore has started: only ttl and deletionPolicy changes take effect; delete and re-create "
                "to restore again",
                warning=True,
            )
            patch.status["observedGeneration"] = meta.get("generation")
        return
    generation = meta.get("generation")
    try:
        parsed = _spec(spec)
        ref = restore.source_ref(parsed, _settings().region)
        restore.requested_time(parsed, now())  # refuses a future time before any AWS call
        seen = restore.observe(parsed, ref)
        decision = restore.plan(parsed, seen, uid, namespace or "", name or "", now())
        for call in decision.calls:
            rds.call(ref.region, call.operation, **call.params)
            report.post(body, "aws-call", "RestoreCall", f"{call.operation} for {_target_of(call)}")
    except restore.SpecError as err:
        _fail(body, status, patch, generation, err.reason, err.message)
        return
    except rds.AWSError as failure:
        _aws_failure(body, status, patch, generation, failure, retry)
        return
    instances = restore.instance_names(parsed) if ref.kind == "cluster" else []
    cache.forget(ref.region, ref.kind, [parsed.target.identifier])
    cache.forget(ref.region, "instance", instances)
    verb = "adopted its own" if decision.adopt and not decision.calls else "started restore of"
    patch.status.update(
        ready_patch(
            dict(status),
            generation,
            "Restoring",
            "False",
            "Restoring",
            f"{verb} {ref.kind} {parsed.target.identifier} from {decision.source}",
            kind=ref.kind,
            source=decision.source,
            sourceArn=decision.source_arn,
            region=ref.region,
            dbInstanceIdentifier=parsed.target.identifier if ref.kind == "instance" else None,
            dbClusterIdentifier=parsed.target.identifier if ref.kind == "cluster" else None,
            instanceIdentifiers=instances or None,
            restoreTime=timestamp(decision.restore_time) if decision.restore_time else None,
            completionTime=None,
            rdsStatus="creating",
        )
    )
    report.post(
        body,
        "restore-started",
        "Restoring",
        f"{verb} {ref.kind} {parsed.target.identifier} from {decision.source}",
        source=decision.source,
        adopted=decision.adopt,
    )


def _target_of(call: restore.Call) -> str:
    p = call.params
    return str(p.get("DBInstanceIdentifier") or p.get("TargetDBInstanceIdentifier") or p.get("DBClusterIdentifier"))


def _fail(
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    generation: int | None,
    reason: str,
    message: str,
    **extra: Any,
) -> None:
    patch.status.update(ready_patch(dict(status), generation, "Failed", "False", reason, message))
    report.post(body, "failed", reason, message, warning=True, **extra)


def _aws_failure(
    body: kopf.Body, status: kopf.Status, patch: kopf.Patch, generation: int | None, failure: rds.AWSError, retry: int
) -> None:
    """Transient: say so in the condition and retry with backoff. Permanent: Failed, with the AWS code."""
    if not failure.transient:
        _fail(
            body,
            status,
            patch,
            generation,
            failure.code,
            str(failure),
            aws_request_id=failure.request_id,
            operation=failure.operation,
        )
        return
    delay = min(_settings().poll_interval, 2.0 * 2 ** min(retry, 6))
    patch.status.update(
        ready_patch(
            dict(status),
            generation,
            status.get("phase") or "Pending",
            "Unknown",
            failure.code,
            f"retrying in {delay:.0f}s: {failure}",
        )
    )
    report.aws_failure(body, "retrying", failure, f"retrying in {delay:.0f}s: {failure}")
    raise kopf.TemporaryError(str(failure), delay=delay)


def _polled(phases: tuple[str, ...]) -> Callable[..., bool]:
    def when(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
        return status.get("phase") in phases and bool(status.get("kind")) and not meta.get("deletionTimestamp")

    return when


# A restoring object reads the batched cache four times per poll interval: the cache still calls AWS
# once per interval, but an object sees a refresh within a quarter interval of it, not up to a whole
# interval later (the objects' timers are not in step with the refresh). Available and Deleting objects
# (ttl, password, deletion progress: direct AWS calls) keep the plain interval.
@kopf.timer(*RESTORES, interval=max(1.0, settings.get().poll_interval / 4), when=_polled(("Restoring",)), id="poll")
@kopf.timer(*RESTORES, interval=settings.get().poll_interval, when=_polled(("Available", "Deleting")), id="watch")
def poll(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, uid: str, patch: kopf.Patch, **_: Any
) -> None:
    """Progress from the batched cache: no AWS call of its own unless the cache is due a refresh."""
    if status.get("phase") == "Deleting" or (status.get("phase") == "Available" and expired(status.get("expiresAt"))):
        _expire(body, spec, status, meta.get("generation"), uid, patch)
        return
    kind, region = status["kind"], status.get("region") or _settings().region
    target = status.get("dbInstanceIdentifier") or status["dbClusterIdentifier"]
    instances = list(status.get("instanceIdentifiers") or [])
    try:
        cache.track(region, kind, [target], owner=uid)
        cache.track(region, "instance", instances, owner=uid)
        seen = cache.get(region, kind, target)
        members = {i: cache.get(region, "instance", i) for i in instances}
    except rds.AWSError as failure:
        report.aws_failure(body, "poll-error", failure, f"polling RDS: {failure}")
        return
    if not seen.seen or not all(m.seen for m in members.values()):
        return
    prog = restore.progress(kind, target, seen.db, {i: m.db for i, m in members.items()})
    _apply_progress(body, spec, status, meta.get("generation"), prog, patch)
    if prog.phase == "Available" and spec.get("masterPassword") and not _password_set(status):
        _set_password(body, spec, status, meta.get("generation"), patch, region, kind, target)


def _apply_progress(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    generation: int | None,
    prog: restore.Progress,
    patch: kopf.Patch,
) -> None:
    """Patch only what changed, and post an event on each phase change."""
    fields = dict(prog.fields)
    phase_changed = prog.phase != status.get("phase")
    if prog.phase == "Available" and phase_changed:
        fields["completionTime"] = timestamp()
        if spec.get("ttl"):
            fields["expiresAt"] = timestamp(now() + restore.parse_duration(spec["ttl"]))
    if not phase_changed and unchanged(dict(status), prog.phase, prog.message, fields):
        return
    patch.status.update(
        ready_patch(dict(status), generation, prog.phase, prog.ready, prog.reason, prog.message, **fields)
    )
    if phase_changed:
        action = {"Available": "available", "Failed": "failed"}.get(prog.phase, "progress")
        details = {**timing(dict(status)), **report.where({**status, **fields})}
        report.post(body, action, prog.reason, prog.message, warning=prog.phase == "Failed", **details)


def expired(expires_at: str | None) -> bool:
    return bool(expires_at) and parse_timestamp(str(expires_at)) <= now()


def _password_set(status: kopf.Status) -> bool:
    return (condition(status.get("conditions"), "MasterPasswordSet") or {}).get("status") == "True"


def _set_password(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    generation: int | None,
    patch: kopf.Patch,
    region: str,
    kind: rds.Kind,
    target: str,
) -> None:
    """Set the master password once the DB is available. The value never leaves this function."""
    cfg = spec["masterPassword"]
    ident = {"DBInstanceIdentifier": target} if kind == "instance" else {"DBClusterIdentifier": target}
    op = "modify_db_instance" if kind == "instance" else "modify_db_cluster"
    try:
        if cfg.get("manageMasterUserPassword"):
            rds.call(region, op, ManageMasterUserPassword=True, ApplyImmediately=True, **ident)
            how = "handed to RDS managed passwords (Secrets Manager)"
        else:
            ref = cfg["secretRef"]
            password = k8s.read_secret(body["metadata"]["namespace"], ref["name"], ref.get("key", "password"))
            rds.call(region, op, MasterUserPassword=password, ApplyImmediately=True, **ident)
            how = f"set from Secret {ref['name']}"
    except k8s.K8sError as err:
        _condition(body, status, patch, generation, "MasterPasswordSet", "False", "SecretNotReadable", str(err))
        return
    except rds.AWSError as failure:
        _condition(body, status, patch, generation, "MasterPasswordSet", "False", failure.code, str(failure))
        return
    _condition(body, status, patch, generation, "MasterPasswordSet", "True", "PasswordSet", f"master password {how}")


def _condition(
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    generation: int | None,
    type_: str,
    value: str,
    reason: str,
    message: str,
) -> None:
    base = patch.status.get("conditions") or status.get("conditions")
    patch.status["conditions"] = set_condition(base, type_, value, reason, message, generation)
    report.post(body, type_, reason, message, warning=value != "True")


def _expire(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, generation: int | None, uid: str, patch: kopf.Patch
) -> None:
    """ttl reached: remove the database per deletionPolicy, keep the object as a record (phase Expired)."""
    step = _remove_step(body, spec, status, uid)
    if step is None:
        return
    if step.done:
        patch.status.update(
            ready_patch(
                dict(status),
                generation,
                "Expired",
                "False",
                "Expired",
                f"ttl {spec.get('ttl')} reached: {step.message}",
                endpoint=None,
                readerEndpoint=None,
                rdsStatus=None,
            )
        )
        report.post(body, "expired", "Expired", step.message)
    elif not unchanged(dict(status), "Deleting", step.message, {}):
        patch.status.update(ready_patch(dict(status), generation, "Deleting", "False", "Expiring", step.message))


def _remove_step(body: kopf.Body, spec: kopf.Spec, status: kopf.Status, uid: str) -> restore.Removal | None:
    """Observe what is left, and make the next deletion call(s). None: an error was reported."""
    kind, region, target = _target(spec, status)
    if kind is None:
        return restore.Removal([], True, "nothing was created")
    policy = spec.get("deletionPolicy", "Retain")
    try:
        db = rds.describe(region, kind, target)
        names = list(status.get("instanceIdentifiers") or []) if kind == "cluster" else []
        found = rds.describe_many(region, "instance", names) if names else {}
        step = restore.removal(kind, policy, target, db, {n: found.get(n) for n in names}, uid)
        for call in step.calls:
            rds.call(region, call.operation, **call.params)
            report.post(body, "deleting", "Deleting", f"{call.operation} {_target_of(call)} ({policy})")
    except restore.SpecError as err:
        report.post(body, "delete-failed", err.reason, err.message, warning=True)
        return None
    except rds.AWSError as failure:
        report.aws_failure(body, "delete-failed", failure, f"deleting: {failure}")
        return None
    return step


def _target(spec: kopf.Spec, status: kopf.Status) -> tuple[rds.Kind | None, str, str]:
    """What this object created (or may have, if it crashed between the call and the status write)."""
    target = spec["target"]["identifier"]
    if status.get("kind"):
        return status["kind"], status.get("region") or _settings().region, target
    try:
        ref = restore.source_ref(_spec(spec), _settings().region)
    except (restore.SpecError, ValueError):
        return None, "", target
    return ref.kind, ref.region, target


@kopf.on.delete(*RESTORES, id="finalize")
def finalize(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, uid: str, patch: kopf.Patch, **_: Any
) -> None:
    """Apply deletionPolicy; the object stays (finalizer) until RDS has finished, saying so in status."""
    cache.untrack(uid)
    policy = spec.get("deletionPolicy", "Retain")
    if policy == "Retain" or status.get("phase") == "Expired":
        report.post(
            body,
            "deleted",
            "Retained" if policy == "Retain" else "AlreadyRemoved",
            f"{spec['target']['identifier']}: left in place (deletionPolicy {policy})",
        )
        return
    step = _remove_step(body, spec, status, uid)
    if step is not None and step.done:
        report.post(body, "deleted", "Deleted", step.message)
        return
    message = step.message if step else "retrying the deletion"
    patch.status.update(ready_patch(dict(status), meta.get("generation"), "Deleting", "False", "Deleting", message))
    raise kopf.TemporaryError(message, delay=_settings().poll_interval)
