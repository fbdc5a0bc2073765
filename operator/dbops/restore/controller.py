"""DBRestore on the reconcile core: one pass observes what carries this object's UID tag, decides
with the pure functions of plan.py, progress.py and removal.py, acts, and returns the status.

A pass, in order:
1. A new object is Pending at once, before any AWS call (so that `kubectl get -w` shows it seen),
   and the same pass goes on to step 2 (core.reconciler.accepted).
2. The batched poll says how far the restore is. If something must be created, deleted or reported
   as failed, the object and AWS are read again, fresh, and the decision is made again on that.
3. Once Available: the master password is set if asked, then spec.verify's probes run (once per
   generation); the ttl removes the database when it is up, whatever the probes found.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from dbops.core import connection
from dbops.core.aws import Aws, AWSError, StatusCache
from dbops.core.kube import K8sError, SecretKeyMissingError
from dbops.core.reconciler import RETRY_ANNOTATION, Note, Outcome, Pass, accepted
from dbops.core.status import Cond, View, condition, held, now, parse_timestamp, timestamp
from dbops.core.types import SOURCE_TAG, Call, SpecError, owned_by, tags_of
from dbops.models import DBRestoreSpec, DBRestoreStatus
from dbops.policy.quota import QUOTA_REASON, Grant
from dbops.policy.request import Request
from dbops.policy.store import Tenancy
from dbops.restore import observe, probe, progress, removal, tenancy, verify
from dbops.restore.plan import Existing, adoption, collision, plan
from dbops.restore.source import SourceRef, requested_time, source_ref

log = logging.getLogger(__name__)

PASSWORD = "MasterPasswordSet"  # noqa: S105 - a condition type, not a password
# Transitions worth a record (event, audit row, metric, notification), by the phase entered.
ACTIONS = {
    "Pending": "requested",
    "Restoring": "restore-started",
    "Verifying": "verifying",
    "Available": "available",
    "Failed": "failed",
    "Degraded": "degraded",
    "Deleting": "deleting",
    "Expired": "expired",
}


class RestoreController:
    kind = "DBRestore"
    plural = "dbrestores"
    status_model: type[BaseModel] = DBRestoreStatus
    known_conditions: tuple[str, ...] = (PASSWORD, verify.VERIFIED, connection.CONDITION)
    keep: tuple[str, ...] = (
        "startTime",
        "restoreCallTime",
        "completionTime",
        "sourceArn",
        "restoreTime",
        "snapshotTime",
        "verification",
    )

    def __init__(
        self, aws: Aws, fast: StatusCache, slow: StatusCache, region: str, poll: float, tenancy: Tenancy | None = None
    ) -> None:
        self.aws, self.fast, self.slow = aws, fast, slow
        self.region = region
        self.poll = poll
        # uid -> (attempts, next try (monotonic), the retry annotation then: a new value tries at once)
        self._backoff: dict[str, tuple[int, float, str]] = {}
        self.tenancy = tenancy or Tenancy(enforce=False)

    # --- the pass -------------------------------------------------------------------------------------

    def reconcile(self, p: Pass) -> Outcome:
        spec = DBRestoreSpec.model_validate(p.spec)
        ref = source_ref(spec, self.region)
        restore_time = requested_time(spec, now())  # a future time is refused before any AWS call
        ident = progress.identity(spec, ref.kind, ref.region)
        asked = tenancy.request(spec, p.namespace, self.region)
        if not p.status.get("restoreCallTime"):  # policies judge what is yet to be created, never what exists
            self.tenancy.admit(asked)
        spec = tenancy.with_forced(spec, self.tenancy.forced(p.namespace))
        if not p.status.get("phase"):
            message = f"restore of {spec.target.identifier} requested; resolving the source"
            view = View("Pending", "Unknown", "Accepted", message, {**ident, "startTime": timestamp()})
            return accepted(view)
        existing = self._cached(p, spec, ref)
        if existing is None and p.status.get("restoreCallTime"):
            return Outcome(held(p.status), requeue=1.0)  # the next batched poll will have seen it
        if existing is None or self._must_act(spec, ref, existing, p):
            existing = self._fresh(p, spec, ref)
            err = collision(spec, ref.kind, existing, p.uid)
            if err is not None and spec.adopt:
                return self._adopt(p, spec, ref, existing, ident)
            if err is not None:
                raise err
            if self._missing(spec, ref, existing) and not p.status.get("restoreCallTime"):
                return self._create(p, spec, ref, existing, restore_time, ident, asked)
        return self._settled(p, spec, ref, existing, ident)

    def _cache(self, p: Pass) -> StatusCache:
        """Objects on their way poll at the restore cadence; settled ones at the slow resync."""
        return self.fast if p.status.get("phase") in ("Pending", "Restoring", "Deleting") else self.slow

    def _cached(self, p: Pass, spec: DBRestoreSpec, ref: SourceRef) -> Existing | None:
        """What the batched poll saw, once the restore call is made. Before it, only a fresh read can
        decide (whatever the poll saw, the create is decided again on one), so a new object does not
        wait for a poll of its burst's names first: it only has them tracked, for the poll after."""
        cache = self._cache(p)
        if p.status.get("restoreCallTime"):
            return observe.cached(cache, ref.kind, ref.region, spec, p.uid)
        observe.track(cache, ref.kind, ref.region, spec, p.uid)
        return None

    def _fresh(self, p: Pass, spec: DBRestoreSpec, ref: SourceRef) -> Existing:
        return observe.fresh(self.aws, self._cache(p), ref.kind, ref.region, spec, p.uid)

    @staticmethod
    def _missing(spec: DBRestoreSpec, ref: SourceRef, existing: Existing) -> bool:
        return existing.target is None or (ref.kind == "cluster" and any(v is None for v in existing.members.values()))

    def _must_act(self, spec: DBRestoreSpec, ref: SourceRef, existing: Existing, p: Pass) -> bool:
        """What the cache saw calls for an action or a failure: decide again on fresh data. (Missing
        after the restore call is a report, not an action: dbops creates once. The batched poll keeps
        telling whether it came back.)"""
        if collision(spec, ref.kind, existing, p.uid) is not None:
            return True
        if self._missing(spec, ref, existing) and not p.status.get("restoreCallTime"):
            return True
        return spec.ttl is not None and progress.until(progress.expires_at(spec, existing.target), now()) == 0

    def _create(
        self,
        p: Pass,
        spec: DBRestoreSpec,
        ref: SourceRef,
        existing: Existing,
        when: datetime | None,
        ident: dict[str, Any],
        asked: Request,
    ) -> Outcome:
        p.confirm_current()  # not being deleted, same spec, finalizer on: only then create
        found = observe.source(self.aws, ref, spec)
        decided = plan(spec, found, existing, when, (p.uid, p.namespace, p.name))
        self.tenancy.check(asked, tenancy.found(found), decided.calls)  # PolicyViolation before any create
        waiting = None if existing.target else self.tenancy.reserve(p.body, Grant("DBRestore", 1, restoring=True))
        if waiting is not None:
            return tenancy_wait(p, waiting, ident, self.poll)
        try:
            for call in decided.calls:
                self.aws.call(ref.region, call.operation, **call.params)
                p.note("aws-call", "RestoreCall", f"{_verb(call)} {call.target}", operation=call.operation)
        except Exception:
            self.tenancy.release(p.namespace, p.uid)
            raise
        self._cache(p).forget(ref.region, ref.kind, [spec.target.identifier])
        self._cache(p).forget(ref.region, "instance", list(existing.members))
        adopted = existing.target is not None
        verb = "adopted its own" if adopted and not decided.calls else "started restore of"
        message = f"{verb} {ref.kind} {spec.target.identifier} from {decided.source}"
        fields = {
            **ident,
            "source": decided.source,
            "sourceArn": decided.source_arn,
            "restoreTime": timestamp(decided.restore_time) if decided.restore_time else None,
            "snapshotTime": _snapshot_time(found.snapshot),
            "restoreCallTime": timestamp(),
            "rdsStatus": "creating",
        }
        return Outcome(View("Restoring", "False", "Restoring", message, fields), requeue=self.poll / 4)

    def _adopt(
        self, p: Pass, spec: DBRestoreSpec, ref: SourceRef, existing: Existing, ident: dict[str, Any]
    ) -> Outcome:
        """spec.adopt: a database that a deleted DBRestore of this namespace retained becomes this
        object's (retagged, never restored again), once the API server confirms that object is gone."""
        taken = adoption(spec, ref.kind, existing, (p.uid, p.namespace, p.name))
        former = p.services.kube.get(self.plural, p.namespace, taken.former_name) if taken.former_name else None
        if former is not None and former["metadata"].get("uid") == taken.former_uid:
            raise SpecError(
                "NotAdoptable",
                f"spec.adopt: {ref.kind} {spec.target.identifier} belongs to DBRestore {taken.former_name}, which "
                "still exists; dbops leaves it alone",
            )
        p.confirm_current()  # not being deleted, same spec, finalizer on: only then take it
        for call in taken.calls:
            self.aws.call(ref.region, call.operation, **call.params)
        self._cache(p).forget(ref.region, ref.kind, [spec.target.identifier])
        self._cache(p).forget(ref.region, "instance", list(existing.members))
        message = f"adopted {ref.kind} {spec.target.identifier}, retained by DBRestore {taken.former_name}"
        p.note("restore-started", "Adopted", message)  # (the audit trail's step that took it up)
        source = tags_of(existing.target).get(SOURCE_TAG)
        fields = {**ident, "source": source, "restoreCallTime": timestamp()}
        return Outcome(View("Restoring", "False", "Adopted", message, fields), requeue=0.0)

    def _settled(
        self, p: Pass, spec: DBRestoreSpec, ref: SourceRef, existing: Existing, ident: dict[str, Any]
    ) -> Outcome:
        """The target exists and is ours (or is gone after it was made): report, and act if asked."""
        target = existing.target
        if target is None or not owned_by(target, p.uid):
            return self._gone(p, spec, ref, ident)
        members = {n: d for n, d in existing.members.items() if n in set(ident.get("instanceIdentifiers") or [])}
        view = progress.progress(ref.kind, spec.target.identifier, target, members)
        if not p.status.get("restoreCallTime"):
            # Ours, but never recorded: the restore call went through and the process died before the
            # status was written. Take it up (never a second create), and say so.
            view = view.with_fields(restoreCallTime=timestamp())
            message = f"adopted its own {ref.kind} {spec.target.identifier} (created by this object before a restart)"
            p.note("restore-started", "Restoring", message)
        expires = progress.expires_at(spec, target)
        view = view.with_fields(
            **ident, **progress.expiry_field(expires), source=view.fields.get("source") or p.status.get("source")
        )
        if view.phase == "Available" and progress.until(expires, now()) == 0:
            return self._expire(p, spec, ref, existing, view)
        if view.phase == "Available" and p.status.get("phase") != "Available" and not p.status.get("completionTime"):
            view = view.with_fields(completionTime=timestamp())
        if view.phase == "Available" and spec.master_password is not None:
            outcome = self._password(p, spec, ref, view, expires)
        else:
            requeue = self.poll / 4 if view.phase == "Restoring" else progress.until(expires, now())
            outcome = Outcome(view, requeue=requeue)
        outcome = self._connect(p, spec, ref, target, outcome)
        if spec.verify is not None and outcome.view.phase == "Available":
            return self._verify(p, spec, ref, target, outcome, expires)
        return outcome

    def _gone(self, p: Pass, spec: DBRestoreSpec, ref: SourceRef, ident: dict[str, Any]) -> Outcome:
        """Nothing of ours under the name after the restore was made: removed by the ttl (Expired), or
        deleted outside dbops (shown, never re-created: dbops creates a database once)."""
        if p.status.get("phase") in ("Expired", "Deleting") and spec.ttl:
            view = View(
                "Expired",
                "False",
                "Expired",
                f"ttl {spec.ttl} reached: {ref.kind} {spec.target.identifier} removed",
                ident,
            )
            return Outcome(view)
        message = (
            f"{ref.kind} {spec.target.identifier} no longer exists in RDS (deleted outside dbops); "
            "dbops does not create it again"
        )
        return Outcome(View("Failed", "False", "NotFound", message, {**ident, "rdsStatus": None}))

    # --- connection details ---------------------------------------------------------------------------

    def _connect(self, p: Pass, spec: DBRestoreSpec, ref: SourceRef, db: dict[str, Any], outcome: Outcome) -> Outcome:
        """Each pass of a database that is up compares the connection Secret (or ConfigMap) with what AWS
        reports and writes it when it differs. Not written as asked: Degraded (apps cannot connect)."""
        view, want = outcome.view, spec.connection
        if want is None:
            before = condition(p.status.get("conditions"), connection.CONDITION)
            if before is None or before.get("reason") == "NotRequested":
                return outcome
            cond = Cond(connection.CONDITION, "False", "NotRequested", "spec.connection is not set")
            return replace(outcome, view=view.with_conditions(cond))
        if view.phase not in ("Available", "Degraded"):
            return outcome
        password = self._connection_password(p, spec, view)
        data = progress.connection_details(ref.kind, db, password)
        cond = connection.publish(p.services.kube, p.body, want.kind, want.name, data)
        if cond.status == "True" or view.phase == "Degraded":
            return replace(outcome, view=view.with_conditions(cond))
        text = f"the database is available but not usable as asked: {cond.message}"
        degraded = View("Degraded", "False", cond.reason, text, view.fields, (*view.conditions, cond))
        return replace(outcome, view=degraded)

    @staticmethod
    def _connection_password(p: Pass, spec: DBRestoreSpec, view: View) -> str | None:
        """The password dbops set from the user's Secret, once it is set (never the source's, never in a
        ConfigMap); None when it cannot be read now (the password's own condition tells why)."""
        cfg, want = spec.master_password, spec.connection
        if want is None or want.kind != "Secret" or cfg is None or cfg.secret_ref is None:
            return None
        now_set = any(c.type == PASSWORD and c.status == "True" for c in view.conditions)
        before = condition(p.status.get("conditions"), PASSWORD) or {}
        if not now_set and (before.get("status"), before.get("observedGeneration")) != ("True", p.generation):
            return None
        try:
            return str(p.services.kube.read_secret(p.namespace, cfg.secret_ref.name, cfg.secret_ref.key))
        except K8sError:
            return None

    # --- master password ----------------------------------------------------------------------------

    def _password(self, p: Pass, spec: DBRestoreSpec, ref: SourceRef, view: View, expires: datetime | None) -> Outcome:
        """Set once per generation; a Secret that cannot be read leaves the database Degraded (it is not
        usable as asked), tried again with backoff (not on every pass), reported once per failure."""
        done = condition(p.status.get("conditions"), PASSWORD) or {}
        if done.get("status") == "True" and done.get("observedGeneration") == p.generation:
            return Outcome(view, requeue=progress.until(expires, now()))
        waiting = self._backoff.get(p.uid)
        retry = p.annotations.get(RETRY_ANNOTATION, "")
        if waiting is not None and time.monotonic() < waiting[1] and retry == waiting[2]:
            ready = condition(p.status.get("conditions")) or {}
            kept = View("Degraded", "False", str(ready.get("reason")), str(ready.get("message")), view.fields)
            return Outcome(kept, requeue=waiting[1] - time.monotonic())
        try:
            how = self._set_password(p, spec, ref)
        except (K8sError, SpecError) as err:
            reason = "SecretKeyMissing" if isinstance(err, SecretKeyMissingError) else "SecretNotReadable"
            return self._degraded(p, view, reason, str(err))
        except AWSError as err:
            if err.transient:
                raise
            return self._degraded(p, view, err.code, str(err))
        self._backoff.pop(p.uid, None)
        cond = Cond(PASSWORD, "True", "PasswordSet", f"master password {how}")
        out = View(view.phase, view.ready, view.reason, view.message, view.fields, (cond,))
        note = Note(PASSWORD, "PasswordSet", f"master password {how}")
        return Outcome(out, notes=[note], requeue=progress.until(expires, now()))

    def _set_password(self, p: Pass, spec: DBRestoreSpec, ref: SourceRef) -> str:
        """The value never leaves this function (and the log redaction knows it)."""
        cfg = spec.master_password
        assert cfg is not None
        ident = {"DBInstanceIdentifier" if ref.kind == "instance" else "DBClusterIdentifier": spec.target.identifier}
        op = "modify_db_instance" if ref.kind == "instance" else "modify_db_cluster"
        if cfg.manage_master_user_password:
            self.aws.call(ref.region, op, ManageMasterUserPassword=True, ApplyImmediately=True, **ident)
            return "handed to RDS managed passwords (Secrets Manager)"
        assert cfg.secret_ref is not None
        secret = p.services.kube.read_secret(p.namespace, cfg.secret_ref.name, cfg.secret_ref.key)
        self.aws.call(ref.region, op, MasterUserPassword=secret, ApplyImmediately=True, **ident)
        return f"set from Secret {cfg.secret_ref.name}"

    def _degraded(self, p: Pass, view: View, reason: str, message: str) -> Outcome:
        """Backoff in time, not in passes: a pass woken by anything else before the next try waits."""
        attempts = (self._backoff.get(p.uid) or (0, 0.0, ""))[0]
        delay = min(600.0, 5.0 * 2**attempts)
        self._backoff[p.uid] = (attempts + 1, time.monotonic() + delay, p.annotations.get(RETRY_ANNOTATION, ""))
        cond = Cond(PASSWORD, "False", reason, message)
        text = f"the database is available but not usable as asked: {message}; retrying in {delay:.0f}s"
        return Outcome(View("Degraded", "False", reason, text, view.fields, (cond,)), requeue=delay)

    # --- verification -------------------------------------------------------------------------------

    def _verify(
        self,
        p: Pass,
        spec: DBRestoreSpec,
        ref: SourceRef,
        db: dict[str, Any],
        outcome: Outcome,
        expires: datetime | None,
    ) -> Outcome:
        """spec.verify's probes, once per generation, once the database is available and its password set;
        a database not reachable yet is tried again until connectWithin after it became available."""
        assert spec.verify is not None
        view, ttl_due = outcome.view, progress.until(expires, now())
        done = verify.recorded(p.status, p.generation)
        if done is not None:
            return Outcome(verify.shown(view, done), notes=outcome.notes, requeue=ttl_due)
        password = condition(p.status.get("conditions"), PASSWORD) or {}
        if password.get("status") != "True" or password.get("observedGeneration") != p.generation:
            return Outcome(verify.waiting(view, "the master password is set"), notes=outcome.notes, requeue=2.0)
        previous = p.status.get("verification") or {}
        started = _parse_time(previous.get("startedAt")) or _parse_time(p.status.get("completionTime")) or now()
        tls = spec.verify.tls.mode if spec.verify.tls else "verify-full"
        info = {"engine": db.get("Engine"), "database": spec.verify.database, "tls": tls}
        attempt = probe.attempt(p, self.aws, ref.region, spec, db, p.services.settings.rds_ca_bundle)
        decided, again = verify.decide(view, spec.verify, attempt, started, now(), info)
        requeue = again if again is not None else ttl_due
        return Outcome(decided, notes=outcome.notes, requeue=requeue)

    # --- ttl and deletion ---------------------------------------------------------------------------

    def _expire(self, p: Pass, spec: DBRestoreSpec, ref: SourceRef, existing: Existing, view: View) -> Outcome:
        """The ttl is up: remove the database per deletionPolicy, keep the object as a record."""
        existing = self._fresh(p, spec, ref)
        step = removal.removal(
            ref.kind, spec.deletion_policy, spec.target.identifier, existing.target, existing.members, p.uid
        )
        self._act(p, ref, step.calls, spec.deletion_policy)
        fields = {**view.fields, "endpoint": None, "readerEndpoint": None}
        if step.done:
            message = f"ttl {spec.ttl} reached: {step.message}"
            return Outcome(View("Expired", "False", "Expired", message, {**fields, "rdsStatus": None}))
        return Outcome(
            View("Deleting", "False", "Expiring", f"ttl {spec.ttl} reached: {step.message}", fields),
            requeue=self.poll / 2,
        )

    def finalize(self, p: Pass) -> Outcome:
        """Apply deletionPolicy to what carries this object's tag; done when nothing of it is left."""
        spec = DBRestoreSpec.model_validate(p.spec)
        try:
            ref = source_ref(spec, self.region)
        except SpecError:
            return Outcome(
                View("Deleting", "False", "Deleted", "nothing was created"),
                done=True,
                notes=[Note("deleted", "NothingToDelete", "nothing was created")],
            )
        existing = observe.fresh(self.aws, self.fast, ref.kind, ref.region, spec, p.uid)
        step = removal.removal(
            ref.kind,
            spec.deletion_policy,
            spec.target.identifier,
            existing.target,
            existing.members,
            p.uid,
            timestamp(),
        )
        self._act(p, ref, step.calls, spec.deletion_policy)
        if step.done:
            if spec.connection is not None:  # it goes with the object, whatever becomes of the database
                connection.withdraw(p.services.kube, p.body, spec.connection.kind, spec.connection.name)
            reason, message = step.reason, step.message
            if reason == "NothingToDelete" and p.status.get("phase") == "Deleting":
                reason, message = (
                    "Deleted",
                    removal.gone_message(ref.kind, spec.target.identifier, spec.deletion_policy, p.uid),
                )
            return Outcome(
                View("Deleting", "False", reason, message), done=True, notes=[Note("deleted", reason, message)]
            )
        view = View("Deleting", "False", "Deleting", step.message, progress.identity(spec, ref.kind, ref.region))
        return Outcome(view, requeue=self.poll / 2)

    def _act(self, p: Pass, ref: SourceRef, calls: list[Call], policy: str) -> None:
        for call in calls:
            self.aws.call(ref.region, call.operation, **call.params)
            if call.operation.startswith("delete"):  # (a Retain's tag is told by its "deleted" record)
                p.note("deleting", "Deleting", f"{_verb(call)} {call.target} (deletionPolicy {policy})")
        if calls:
            self.fast.forget(ref.region, ref.kind, [c.target for c in calls])
            self.fast.forget(ref.region, "instance", [c.target for c in calls])

    # --- records ------------------------------------------------------------------------------------

    def transition(self, previous: str | None, view: View, status: dict[str, Any]) -> Note | None:
        if previous == view.phase or view.phase not in ACTIONS:
            return None
        details: dict[str, Any] = {}
        if view.phase in ("Available", "Failed"):
            from dbops.core.report import where  # noqa: PLC0415
            from dbops.core.status import timing  # noqa: PLC0415

            details = {**timing(status), **where(status)}
        warning = view.phase in ("Failed", "Degraded")
        return Note(ACTIONS[view.phase], view.reason, view.message, warning, details)

    def identity(self, p: Pass) -> dict[str, Any]:
        spec = DBRestoreSpec.model_validate(p.spec)
        ref = source_ref(spec, self.region)
        return progress.identity(spec, ref.kind, ref.region)

    def forget(self, uid: str) -> None:
        self.fast.untrack(uid)
        self.slow.untrack(uid)
        self._backoff.pop(uid, None)


def _snapshot_time(snapshot: dict[str, Any] | None) -> str | None:
    """When the restored snapshot was taken: the age of the data a drill proves (its RPO)."""
    created = (snapshot or {}).get("SnapshotCreateTime")
    return timestamp(created) if isinstance(created, datetime) else None


def _parse_time(text: Any) -> datetime | None:
    try:
        return parse_timestamp(str(text)) if text else None
    except ValueError:
        return None


def _verb(call: Call) -> str:
    return {
        "restore_db_instance_from_db_snapshot": "restoring instance",
        "restore_db_instance_to_point_in_time": "restoring instance to a point in time:",
        "restore_db_cluster_from_snapshot": "restoring cluster",
        "restore_db_cluster_to_point_in_time": "restoring cluster to a point in time:",
        "create_db_instance": "creating instance",
        "delete_db_instance": "deleting instance",
        "delete_db_cluster": "deleting cluster",
    }.get(call.operation, call.operation)


def tenancy_wait(p: Pass, why: str, fields: dict[str, Any], poll: float) -> Outcome:
    """A namespace's limit is reached: Pending, reason QuotaExceeded, and asked again every poll until
    there is room (never failed for it). Told once when the wait begins."""
    ready = condition(p.status.get("conditions")) or {}
    if ready.get("reason") != QUOTA_REASON:
        p.note("waiting", QUOTA_REASON, f"waiting for room: {why}")
    phase = "Pending" if p.status.get("phase") in (None, "Pending") else str(p.status.get("phase"))
    return Outcome(View(phase, "False", QUOTA_REASON, f"waiting for room: {why}", fields), requeue=poll)
