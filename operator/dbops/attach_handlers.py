"""kopf handlers for DBAttach: a level-triggered timer that asks attach.decide what to do next.

Every poll interval the `attach` timer resolves the cluster, reads the batched status cache, and
makes at most one RDS call; count changes are picked up by the next tick. `detach` applies the
deletionPolicy when the object is deleted.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf

from dbops import attach, k8s, rds, report, restore
from dbops.handlers import cache
from dbops.models import GROUP, VERSION, DBAttachSpec
from dbops.settings import get as get_settings
from dbops.status import ready_patch, timestamp, timing, unchanged

logger = logging.getLogger(__name__)
ATTACHES = (GROUP, VERSION, "dbattaches")
RETRY_ANNOTATION = f"{GROUP}/retry"


class WaitingError(Exception):
    """Nothing to do yet (e.g. the referenced DBRestore is not Available); the message says why."""


def _active(status: kopf.Status, meta: kopf.Meta, annotations: kopf.Annotations, **_: Any) -> bool:
    """Poll once `accept` has written Pending; stop polling a Failed object until its spec changes or a
    user asks for a retry."""
    if meta.get("deletionTimestamp") or not status.get("phase"):
        return False
    failed_as_is = (
        status.get("phase") == "Failed"
        and status.get("observedGeneration") == meta.get("generation")
        and status.get("retryToken", "") == annotations.get(RETRY_ANNOTATION, "")
    )
    return not failed_as_is


def _resolve(spec: DBAttachSpec, status: kopf.Status, namespace: str) -> tuple[str, str]:
    """(cluster identifier, region), remembered in status once known."""
    if status.get("dbClusterIdentifier") and status.get("region"):
        return str(status["dbClusterIdentifier"]), str(status["region"])
    region = spec.region or get_settings().region
    ref = spec.cluster
    if ref.db_cluster:
        return ref.db_cluster, region
    if ref.endpoint:
        ep = restore.parse_endpoint(ref.endpoint)
        if ep.kind != "cluster":
            raise restore.SpecError("NotAurora", f"spec.cluster.endpoint {ref.endpoint} is a DB instance endpoint")
        if not ep.custom:
            return ep.identifier, ep.region
        return restore.custom_endpoint_cluster(ep.region, ep.identifier, "spec.cluster.endpoint"), ep.region
    obj = k8s.read_dbrestore(namespace, str(ref.db_restore_ref))
    if obj is None:
        raise WaitingError(f"waiting for DBRestore {ref.db_restore_ref} to exist")
    st = obj.get("status") or {}
    if st.get("kind") == "instance":
        raise restore.SpecError("NotAurora", f"spec.cluster.dbRestoreRef: {ref.db_restore_ref} restores an instance")
    if st.get("phase") != "Available":
        raise WaitingError(f"waiting for DBRestore {ref.db_restore_ref} to be Available (now {st.get('phase')})")
    return str(st["dbClusterIdentifier"]), str(st.get("region") or region)


def _seen(spec: DBAttachSpec, cluster_id: str, region: str, uid: str) -> attach.Seen | None:
    """From the batched cache; None until the poll has seen everything we asked about."""
    cache.track(region, "cluster", [cluster_id], owner=uid)
    cluster = cache.get(region, "cluster", cluster_id)
    if not cluster.seen:
        return None
    names = attach.candidate_names(spec)
    writer = attach.writer_id(cluster.db) if cluster.db else None
    cache.track(region, "instance", names + ([writer] if writer else []), owner=uid)
    found = {n: cache.get(region, "instance", n) for n in names}
    writer_seen = cache.get(region, "instance", writer) if writer else None
    if not all(o.seen for o in found.values()) or (writer_seen and not writer_seen.seen):
        return None
    return attach.Seen(cluster.db, {n: o.db for n, o in found.items()}, writer_seen.db if writer_seen else None)


# One lock per object, shared by the timer and the deletion handler (kopf may run both at once): a
# create decided just before the deletion began finishes before the deletion looks at what exists.
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _object_lock(uid: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(uid, threading.Lock())


def _decide_fresh(
    spec: DBAttachSpec,
    cached: attach.Seen,
    uid: str,
    cluster_id: str,
    region: str,
    tags: list[dict[str, str]],
    namespace: str,
    name: str,
) -> attach.Decision | None:
    """The decision, on data fresh enough to act on. The batched cache (up to a poll interval old, and
    shared by every object) only tells progress: a call to make, or a failure to report, is decided
    again on a fresh read of the cluster and of every candidate name. None: the object is being
    deleted (or is gone), and an object being deleted never creates anything."""
    try:
        decision = attach.decide(spec, cached, uid, cluster_id, tags)
    except restore.SpecError:
        decision = None
    if decision is not None and decision.call is None:
        return decision
    current = k8s.read_object(ATTACHES[2], namespace, name)
    if current is None or current["metadata"].get("deletionTimestamp") or current["metadata"].get("uid") != uid:
        return None
    cluster = rds.describe(region, "cluster", cluster_id)
    names = attach.candidate_names(spec)
    writer = attach.writer_id(cluster) if cluster else None
    found = rds.describe_many(region, "instance", names + ([writer] if writer else []))
    fresh = attach.Seen(cluster, {n: found.get(n) for n in names}, found.get(writer) if writer else None)
    return attach.decide(spec, fresh, uid, cluster_id, tags)  # a SpecError here is the caller's failure


@kopf.on.create(*ATTACHES, id="accept")
def accept(body: kopf.Body, status: kopf.Status, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
    report.accept(body, status, meta, patch, "attach requested; resolving the cluster")


@kopf.timer(*ATTACHES, interval=get_settings().poll_interval, when=_active, id="attach")
def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    uid: str,
    name: str,
    namespace: str | None,
    annotations: kopf.Annotations,
    patch: kopf.Patch,
    **_: Any,
) -> None:
    parsed = DBAttachSpec.model_validate(dict(spec))
    generation = meta.get("generation")
    token = annotations.get(RETRY_ANNOTATION, "")
    # What status knows, for the failure paths: _resolve itself may fail before it finds the cluster.
    cluster_id, region = status.get("dbClusterIdentifier"), status.get("region")
    try:
        cluster_id, region = _resolve(parsed, status, namespace or "")
        seen = _seen(parsed, cluster_id, region, uid)
        if seen is None:
            return
        tags = rds.ownership_tags(uid, namespace or "", name or "", parsed.tags)
        with _object_lock(uid):
            decision = _decide_fresh(parsed, seen, uid, cluster_id, region, tags, namespace or "", name or "")
            if decision is None:
                return
            if decision.call:
                rds.call(region, decision.call.operation, **decision.call.params)
                cache.forget(region, "instance", [decision.call.params["DBInstanceIdentifier"]])
                report.post(body, "aws-call", decision.reason, decision.message, target=cluster_id)
    except WaitingError as wait:
        _write(body, status, patch, generation, "Pending", "False", "Waiting", str(wait), {})
        return
    except k8s.K8sError as err:  # the look at the object itself failed: the next tick tries again
        logger.warning("not acting on %s/%s this time: %s", namespace, name, err)
        return
    except restore.SpecError as err:
        _write(body, status, patch, generation, "Failed", "False", err.reason, err.message, {"retryToken": token})
        return
    except rds.AWSError as failure:
        if failure.transient:  # the next timer run is the retry
            phase, ready, message, fields = status.get("phase") or "Pending", "Unknown", f"retrying: {failure}", {}
        else:
            fields = {"retryToken": token, "dbClusterIdentifier": cluster_id, "region": region}
            phase, ready, message = "Failed", "False", str(failure)
        _write(body, status, patch, generation, phase, ready, failure.code, message, fields)
        return
    fields = {**decision.fields, "dbClusterIdentifier": cluster_id, "region": region, "retryToken": None}
    _write(body, status, patch, generation, decision.phase, decision.ready, decision.reason, decision.message, fields)


def _write(
    body: kopf.Body,
    status: kopf.Status,
    patch: kopf.Patch,
    generation: int | None,
    phase: str,
    ready: str,
    reason: str,
    message: str,
    fields: dict[str, Any],
) -> None:
    """Patch only on change; an event on each phase change and each failure."""
    if unchanged(dict(status), phase, message, fields, generation):
        return
    previous = status.get("phase")
    fields = {**fields, **_round_times(previous, phase)}
    patch.status.update(ready_patch(dict(status), generation, phase, ready, reason, message, **fields))
    if previous != phase or phase == "Failed":
        action = {"Available": "available", "Failed": "failed", "Pending": "waiting"}.get(phase, "attaching")
        new = {**status, **fields}
        outcome = timing(new) | report.where(new) if phase in ("Available", "Failed") else {}
        report.post(
            body,
            action,
            reason,
            message,
            warning=phase == "Failed" or ready == "Unknown",
            target=fields.get("dbClusterIdentifier"),
            **outcome,
        )


def _round_times(previous: str | None, phase: str) -> dict[str, Any]:
    """A round of work (the first attach, or a later scale) starts when the object leaves a settled
    phase, and completes when it is Available again: how long it took goes to metrics and notifications."""
    if phase in ("Pending", "Attaching") and previous in (None, "Available", "Failed"):
        return {"startTime": timestamp(), "completionTime": None}
    if phase == "Available" and previous != "Available":
        return {"completionTime": timestamp()}
    return {}


@kopf.on.delete(*ATTACHES, id="detach")
def detach(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, uid: str, patch: kopf.Patch, **_: Any
) -> None:
    """deletionPolicy Delete removes this object's instances (never the cluster, never the writer)."""
    with _object_lock(uid):
        _detach(body, spec, status, meta, uid, patch)
    with _locks_guard:
        _locks.pop(uid, None)


def _detach(
    body: kopf.Body, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, uid: str, patch: kopf.Patch
) -> None:
    cache.untrack(uid)
    parsed = DBAttachSpec.model_validate(dict(spec))
    cluster_id, region = str(status.get("dbClusterIdentifier") or ""), str(status.get("region") or "")
    if parsed.deletion_policy == "Retain" or not cluster_id:
        report.post(body, "deleted", "Retained", f"instances left in place (deletionPolicy {parsed.deletion_policy})")
        return
    try:
        names = attach.candidate_names(parsed)
        found = rds.describe_many(region, "instance", names)
        seen = attach.Seen(rds.describe(region, "cluster", cluster_id), {n: found.get(n) for n in names})
        calls, done, message = attach.removal(parsed, seen, uid)
        for call in calls:
            rds.call(region, call.operation, **call.params)
    except rds.AWSError as failure:
        report.post(body, "delete-failed", failure.code, f"deleting: {failure}", warning=True)
        raise kopf.TemporaryError(str(failure), delay=get_settings().poll_interval) from None
    if done:
        report.post(body, "deleted", "Deleted", message)
        return
    patch.status.update(ready_patch(dict(status), meta.get("generation"), "Deleting", "False", "Deleting", message))
    report.post(body, "deleting", "Deleting", message)
    raise kopf.TemporaryError(message, delay=get_settings().poll_interval)
