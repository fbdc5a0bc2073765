"""DBAttach on the reconcile core: each pass resolves the cluster from the spec, reads the cluster and
every instance name this object may have created, and makes at most one call (attach.plan.decide).

The batched poll tells progress; a call (create or remove a reader) or a failure is decided again on
a fresh read of the object and of AWS, so that no create rests on data a poll interval old.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dbops.attach import plan, tenancy
from dbops.core import connection
from dbops.core.aws import Aws, StatusCache
from dbops.core.reconciler import Note, Outcome, Pass, accepted
from dbops.core.status import Cond, View, condition, held, timestamp
from dbops.core.types import SpecError, owned_by, ownership_tags
from dbops.models import DBAttachSpec, DBAttachStatus, DBRestoreSpec
from dbops.policy.quota import Grant
from dbops.policy.request import Request
from dbops.policy.store import Tenancy
from dbops.restore.controller import tenancy_wait
from dbops.restore.observe import custom_endpoint_cluster
from dbops.restore.source import kind_of, parse_endpoint

ACTIONS = {
    "Pending": "waiting",
    "Attaching": "attaching",
    "Available": "available",
    "Failed": "failed",
    "Deleting": "deleting",
}


class WaitingError(Exception):
    """Nothing to do yet (the referenced DBRestore is not Available); the message says why."""


class AttachController:
    kind = "DBAttach"
    plural = "dbattaches"
    status_model: type[BaseModel] = DBAttachStatus
    known_conditions: tuple[str, ...] = (connection.CONDITION,)
    keep: tuple[str, ...] = ("startTime", "completionTime")

    def __init__(
        self, aws: Aws, fast: StatusCache, slow: StatusCache, region: str, poll: float, tenancy: Tenancy | None = None
    ) -> None:
        self.aws, self.fast, self.slow = aws, fast, slow
        self.region = region
        self.poll = poll
        self._custom: dict[str, str] = {}  # custom endpoint host -> cluster (endpoints do not move)
        self.tenancy = tenancy or Tenancy(enforce=False)

    def reconcile(self, p: Pass) -> Outcome:
        spec = DBAttachSpec.model_validate(p.spec)
        asked = tenancy.request(spec, p.namespace, self.region)
        if not p.status.get("instances"):  # policies judge what is yet to be created, never what exists
            self.tenancy.admit(asked)
        spec = tenancy.with_forced(spec, self.tenancy.forced(p.namespace))
        if not p.status.get("phase") and not p.status.get("startTime"):
            view = View(
                "Pending", "Unknown", "Accepted", "attach requested; resolving the cluster", {"startTime": timestamp()}
            )
            return accepted(view)
        try:
            cluster_id, region = self._resolve(spec, p)
        except WaitingError as wait:
            return Outcome(View("Pending", "False", "Waiting", str(wait)), requeue=self.poll)
        where = {"dbClusterIdentifier": cluster_id, "region": region}
        tags = ownership_tags(p.uid, p.namespace, p.name, "DBAttach", spec.tags)
        seen = self._cached(p, spec, cluster_id, region)
        if seen is None and p.status.get("phase") in ("Available", "Failed"):
            return Outcome(held(p.status), requeue=1.0)  # settled: the next batched poll will have seen it
        decision = self._decide(spec, seen, p.uid, cluster_id, tags) if seen is not None else None
        if decision is None or decision.call is not None:
            seen = self._fresh(p, spec, cluster_id, region)
            decision = plan.decide(spec, seen, p.uid, cluster_id, tags)  # a SpecError here fails the object
            if decision.call is not None:
                p.confirm_current()  # not being deleted, same spec, finalizer on: only then create
                waiting = self._room(p, asked, decision, cluster_id, seen)
                if waiting is not None:
                    return waiting
                try:
                    self.aws.call(region, decision.call.operation, **decision.call.params)
                except Exception:
                    self.tenancy.release(p.namespace, p.uid)
                    raise
                self._cache(p).forget(region, "instance", [decision.call.target])
                p.note("aws-call", decision.view.reason, decision.view.message, target=cluster_id)
        view = decision.view.with_fields(**where, **self._round(p, decision.view.phase))
        view = self._connect(p, spec, view, seen.cluster if seen else None)
        return Outcome(view, requeue=self.poll / 4 if view.phase == "Attaching" else None)

    @staticmethod
    def _connect(p: Pass, spec: DBAttachSpec, view: View, cluster: dict[str, Any] | None) -> View:
        """Each Available pass compares the connection Secret (or ConfigMap) with what AWS reports and
        writes it when it differs. The readers stay Available when it cannot be written (they are up):
        the condition says why, and a warning event tells it once."""
        want = spec.connection
        before = condition(p.status.get("conditions"), connection.CONDITION) or {}
        if want is None:
            if not before or before.get("reason") == "NotRequested":
                return view
            return view.with_conditions(
                Cond(connection.CONDITION, "False", "NotRequested", "spec.connection is not set")
            )
        if view.phase != "Available" or cluster is None:
            return view
        data = plan.connection_details(cluster, list(view.fields.get("instances") or []))
        cond = connection.publish(p.services.kube, p.body, want.kind, want.name, data)
        if cond.status == "False" and (before.get("status"), before.get("reason")) != ("False", cond.reason):
            p.note("connection-failed", cond.reason, cond.message, warning=True)
        return view.with_conditions(cond)

    def _room(
        self, p: Pass, asked: Request, decision: plan.Decision, cluster_id: str, seen: plan.Seen
    ) -> Outcome | None:
        """Before a reader is created: the policies on the cluster as read now and on the call, then the
        namespace's limits (None: go ahead). Removing a reader is never held back."""
        call = decision.call
        if call is None or call.operation != "create_db_instance":
            return None
        field = asked.cluster.field if asked.cluster else "spec.cluster"
        self.tenancy.check(asked, tenancy.found(cluster_id, seen.cluster or {}, field), [call])
        held = len(decision.view.fields.get("instances") or [])
        waiting = self.tenancy.reserve(p.body, Grant("DBAttach", held + 1, restoring=False))
        if waiting is None:
            return None
        return tenancy_wait(p, waiting, {**decision.view.fields, "dbClusterIdentifier": cluster_id}, self.poll)

    @staticmethod
    def _decide(
        spec: DBAttachSpec, seen: plan.Seen, uid: str, cluster_id: str, tags: list[dict[str, str]]
    ) -> plan.Decision | None:
        """On cached data: None when it would fail (decided again, fresh, by the caller)."""
        try:
            return plan.decide(spec, seen, uid, cluster_id, tags)
        except SpecError:
            return None

    def _cache(self, p: Pass) -> StatusCache:
        return self.fast if p.status.get("phase") in ("Pending", "Attaching") else self.slow

    def _cached(self, p: Pass, spec: DBAttachSpec, cluster_id: str, region: str) -> plan.Seen | None:
        """What the batched poll saw, once this object has readers. Before its first create only a
        fresh read can decide (a create is decided on one), so a new object does not wait for a poll of
        its burst's names first: it only has them tracked, for the poll after."""
        cache = self._cache(p)
        names = plan.candidate_names(spec)
        cache.track(region, "cluster", [cluster_id], owner=p.uid)
        if p.status.get("phase") == "Pending" and not p.status.get("instances"):
            cache.track(region, "instance", names, owner=p.uid)
            return None
        cluster = cache.get(region, "cluster", cluster_id)
        if not cluster.seen:
            return None
        writer = plan.writer_id(cluster.db) if cluster.db else None
        cache.track(region, "instance", names + ([writer] if writer else []), owner=p.uid)
        found = {n: cache.get(region, "instance", n) for n in names}
        writer_seen = cache.get(region, "instance", writer) if writer else None
        if not all(o.seen for o in found.values()) or (writer_seen is not None and not writer_seen.seen):
            return None
        return plan.Seen(cluster.db, {n: o.db for n, o in found.items()}, writer_seen.db if writer_seen else None)

    def _fresh(self, p: Pass, spec: DBAttachSpec, cluster_id: str, region: str) -> plan.Seen:
        cluster = self.aws.look_one(region, "cluster", cluster_id)
        names = plan.candidate_names(spec)
        writer = plan.writer_id(cluster) if cluster else None
        found = self.aws.look(region, "instance", names + ([writer] if writer else []))
        instances: dict[str, dict[str, Any] | None] = {n: found.get(n) for n in names}
        self._cache(p).put(region, "cluster", {cluster_id: cluster})
        self._cache(p).put(region, "instance", {**instances, **({writer: found.get(writer)} if writer else {})})
        return plan.Seen(cluster, instances, found.get(writer) if writer else None)

    def _resolve(self, spec: DBAttachSpec, p: Pass) -> tuple[str, str]:
        """(cluster identifier, region), from the spec: never from this object's status."""
        region = spec.region or self.region
        ref = spec.cluster
        if ref.db_cluster:
            return ref.db_cluster, region
        if ref.endpoint:
            ep = parse_endpoint(ref.endpoint)
            if ep.kind != "cluster":
                raise SpecError("NotAurora", f"spec.cluster.endpoint {ref.endpoint} is a DB instance endpoint")
            if not ep.custom:
                return ep.identifier, ep.region
            if ep.host not in self._custom:
                self._custom[ep.host] = custom_endpoint_cluster(
                    self.aws, ep.region, ep.identifier, "spec.cluster.endpoint"
                )
            return self._custom[ep.host], ep.region
        return self._restored_cluster(p, str(ref.db_restore_ref), region)

    def _restored_cluster(self, p: Pass, name: str, region: str) -> tuple[str, str]:
        """The cluster of a DBRestore of this namespace, once it is Available. Its spec names the
        cluster; its status only says whether to wait."""
        obj = p.services.kube.get("dbrestores", p.namespace, name)
        if obj is None:
            raise WaitingError(f"waiting for DBRestore {name} to exist")
        restore = DBRestoreSpec.model_validate(obj.get("spec") or {})
        kind, restore_region = kind_of(restore, region)
        if kind == "instance":
            raise SpecError(
                "NotAurora", f"spec.cluster.dbRestoreRef: {name} restores an instance, not an Aurora cluster"
            )
        phase = (obj.get("status") or {}).get("phase")
        if phase != "Available":
            raise WaitingError(f"waiting for DBRestore {name} to be Available (now {phase or 'Pending'})")
        return restore.target.identifier, restore_region

    @staticmethod
    def _round(p: Pass, phase: str) -> dict[str, Any]:
        """A round of work (the first attach, or a later scale) starts when the object leaves a settled
        phase, and completes when it is Available again: how long it took goes to metrics and notifications."""
        previous = p.status.get("phase")
        if phase in ("Pending", "Attaching") and previous in (None, "Available", "Failed"):
            return {"startTime": timestamp(), "completionTime": None}
        if phase == "Available" and previous != "Available":
            return {"completionTime": timestamp()}
        return {}

    def finalize(self, p: Pass) -> Outcome:
        """deletionPolicy Delete removes this object's instances (never a cluster, never a writer)."""
        spec = DBAttachSpec.model_validate(p.spec)
        region = self._finalize_region(spec, p)
        names = plan.candidate_names(spec)
        found = self.aws.look(region, "instance", names)
        ours = {n: db for n, db in found.items() if db is not None and owned_by(db, p.uid)}
        writers = self._writers(
            region, {str(db.get("DBClusterIdentifier")) for db in ours.values() if db.get("DBClusterIdentifier")}
        )
        calls, done, message = plan.removal(spec, {n: found.get(n) for n in names}, writers, p.uid, timestamp())
        for call in calls:
            self.aws.call(region, call.operation, **call.params)
            if call.operation == "delete_db_instance":
                p.note("deleting", "Deleting", f"deleting instance {call.target} (deletionPolicy Delete)")
        self.fast.forget(region, "instance", [c.target for c in calls])
        if done:
            if spec.connection is not None:  # it goes with the object, whatever becomes of the instances
                connection.withdraw(p.services.kube, p.body, spec.connection.kind, spec.connection.name)
            reason = "Retained" if spec.deletion_policy == "Retain" else "Deleted"
            return Outcome(
                View("Deleting", "False", reason, message), done=True, notes=[Note("deleted", reason, message)]
            )
        return Outcome(View("Deleting", "False", "Deleting", message), requeue=self.poll / 2)

    def _finalize_region(self, spec: DBAttachSpec, p: Pass) -> str:
        """Where this object's instances are. The status' region is only a place to look: nothing there
        is deleted unless it carries this object's UID tag."""
        if spec.region:
            return spec.region
        if spec.cluster.endpoint:
            return parse_endpoint(spec.cluster.endpoint).region
        return str(p.status.get("region") or self.region)

    def _writers(self, region: str, clusters: set[str]) -> set[str]:
        found = self.aws.look(region, "cluster", clusters)
        return {w for c in found.values() if c is not None and (w := plan.writer_id(c))}

    def transition(self, previous: str | None, view: View, status: dict[str, Any]) -> Note | None:
        if previous == view.phase or view.phase not in ACTIONS:
            return None
        details: dict[str, Any] = {"target": status.get("dbClusterIdentifier")}
        if view.phase in ("Available", "Failed"):
            from dbops.core.report import where  # noqa: PLC0415
            from dbops.core.status import timing  # noqa: PLC0415

            details |= {**timing(status), **where(status)}
        action = "requested" if view.reason == "Accepted" else ACTIONS[view.phase]
        return Note(action, view.reason, view.message, view.phase == "Failed", details)

    def identity(self, p: Pass) -> dict[str, Any]:
        """The cluster and region when the spec names them outright (no AWS or API call)."""
        spec = DBAttachSpec.model_validate(p.spec)
        if spec.cluster.db_cluster:
            return {"dbClusterIdentifier": spec.cluster.db_cluster, "region": spec.region or self.region}
        if spec.cluster.endpoint:
            ep = parse_endpoint(spec.cluster.endpoint)
            return {"dbClusterIdentifier": None if ep.custom else ep.identifier, "region": ep.region}
        return {"region": spec.region or self.region}

    def forget(self, uid: str) -> None:
        self.fast.untrack(uid)
        self.slow.untrack(uid)
