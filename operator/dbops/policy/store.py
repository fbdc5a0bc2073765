"""The process' view of tenancy: the DBPolicies and namespaces as kopf's watch reports them, the room
granted to creates, and the AWS identity of each namespace. One `Tenancy` per process (in the Services),
asked by the admission webhook and by every pass of the reconcile core alike.

Nothing here calls AWS or the API server: the watch feeds it, the verdicts are rules.py's.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from dbops.core.aws import Identity
from dbops.core.types import KIND_TAG, NAME_TAG, NAMESPACE_TAG, Call, SpecError
from dbops.models import DBPolicySpec
from dbops.policy import quota, rules, select
from dbops.policy.request import Found, Request

log = logging.getLogger(__name__)

REASON = "PolicyViolation"
REQUESTER_TAG = "dbops.dev/requester"
SWEEP = ("OrphanSweep", "orphan-sweep", "dbops-operator")  # the sweep's session tags: kind, name, requester
_SESSION_CHARS = re.compile(r"[^\w+=,.@-]")
_TAG_CHARS = re.compile(r"[^\w\s.:/=+\-@]")

Bodies = Callable[[str], list[dict[str, Any]]]


class Tenancy:
    """`enforce`: a namespace no policy selects may do nothing (DBOPS_POLICY=enforce); else it is open."""

    def __init__(self, enforce: bool = True) -> None:
        self.enforce = enforce
        self._lock = threading.Lock()
        self._policies: dict[str, rules.Policy] = {}
        self._bodies: dict[str, dict[str, Any]] = {}  # policy name -> metadata and status, for the status writer
        self._namespaces: dict[str, dict[str, str]] = {}
        self._selection: dict[str, list[rules.Policy]] = {}
        self._grants: dict[str, dict[str, quota.Grant]] = {}  # namespace -> uid -> grant
        self._room = threading.Lock()
        # The reconcile core's objects of a namespace (as last seen by its watch): set at startup.
        self.objects: Bodies = lambda _namespace: []

    # --- the cache, fed by kopf's watch ----------------------------------------------------------------

    def put_policy(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        name = str(meta.get("name"))
        try:
            spec = DBPolicySpec.model_validate(body.get("spec") or {})
        except ValidationError as err:  # the CRD's schema admits no such policy: an older or newer CRD
            log.error("DBPolicy %s cannot be read (%s); it is not applied", name, err.errors()[0].get("msg"))
            self.remove_policy(name)
            return
        with self._lock:
            self._policies[name] = rules.Policy(name, spec)
            self._bodies[name] = {"metadata": meta, "status": dict(body.get("status") or {})}
            self._selection.clear()

    def remove_policy(self, name: str) -> None:
        with self._lock:
            self._policies.pop(name, None)
            self._bodies.pop(name, None)
            self._selection.clear()

    def put_namespace(self, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        with self._lock:
            if self._namespaces.get(str(meta.get("name"))) != labels:
                self._namespaces[str(meta.get("name"))] = labels
                self._selection.clear()

    def remove_namespace(self, name: str) -> None:
        with self._lock:
            self._namespaces.pop(name, None)
            self._selection.clear()

    def policies_for(self, namespace: str) -> list[rules.Policy]:
        """The policies that select `namespace`, by name."""
        with self._lock:
            found = self._selection.get(namespace)
            if found is None:
                labels = self._namespaces.get(namespace, {})
                found = [p for n, p in sorted(self._policies.items()) if select.selects(p.spec, namespace, labels)]
                self._selection[namespace] = found
            return found

    def selections(self) -> dict[str, tuple[dict[str, Any], list[str]]]:
        """Policy name -> (its metadata and status as last seen, the namespaces it selects now)."""
        with self._lock:
            specs = {n: p.spec for n, p in self._policies.items()}
            chosen = select.selected(specs, dict(self._namespaces))
            return {n: (self._bodies[n], chosen[n]) for n in specs}

    # --- verdicts ----------------------------------------------------------------------------------------

    def review(self, request: Request) -> list[str]:
        """Every violation of a request as written (admission, and the top of every pass)."""
        policies = self.policies_for(request.namespace)
        if not policies:
            return [rules.not_selected(request.namespace)] if self.enforce else []
        return rules.judge(policies, request)

    def admit(self, request: Request) -> None:
        """Raise PolicyViolation (phase Failed) for a request that breaks a policy."""
        _raise(self.review(request))

    def check(self, request: Request, found: list[Found], calls: list[Call]) -> None:
        """Before the create calls: the request again, what AWS says of its source or cluster, and the
        calls as planned (everything copied from the source filled in)."""
        policies = self.policies_for(request.namespace)
        _raise(
            self.review(request)
            + rules.judge_found(policies, request, found)
            + rules.judge_calls(policies, request, calls)
        )

    def forced(self, namespace: str) -> rules.Forced:
        return rules.forced(self.policies_for(namespace))

    # --- limits ------------------------------------------------------------------------------------------

    def reserve(self, body: dict[str, Any], wanted: quota.Grant) -> str | None:
        """Room for an object's create calls: None when granted (kept until its status shows them), else
        why it waits (phase Pending, reason QuotaExceeded)."""
        meta = body.get("metadata") or {}
        namespace, uid = str(meta.get("namespace")), str(meta.get("uid"))
        limits = rules.limits(self.policies_for(namespace))
        if limits.restores_in_flight is None and limits.databases_owned is None:
            return None
        with self._room:  # two passes of one namespace never count the same room twice
            bodies = self.objects(namespace)
            grants = self._live_grants(namespace, {str((b.get("metadata") or {}).get("uid")): b for b in bodies})
            waiting = quota.room(body, bodies, grants, limits, wanted)
            if waiting is None:
                grants[uid] = wanted
            return waiting

    def release(self, namespace: str, uid: str) -> None:
        """The create calls failed: the room goes back (the next pass asks again)."""
        with self._room:
            self._grants.get(namespace, {}).pop(uid, None)

    def _live_grants(self, namespace: str, bodies: dict[str, dict[str, Any]]) -> dict[str, quota.Grant]:
        grants = self._grants.setdefault(namespace, {})
        for uid in [u for u, g in grants.items() if quota.settled(bodies.get(u), g)]:
            del grants[uid]
        return grants

    # --- AWS identity --------------------------------------------------------------------------------------

    def identity(
        self, namespace: str, kind: str, name: str, requester: str, policies: list[rules.Policy] | None = None
    ) -> Identity | None:
        """The role assumed for an object's AWS calls, with session tags naming the namespace, the object
        and the requester; None: the operator's own identity (no policy of the namespace names a role).
        `policies`: the ones to go by instead of those that select the namespace now."""
        policies = self.policies_for(namespace) if policies is None else policies
        found = rules.role(policies)
        if found is None:
            return None
        clash = [v for v in rules.conflicts(policies, _nobody(namespace)) if v.startswith("metadata.namespace")]
        _raise(clash)
        role_arn, external_id = found
        tags = ((NAMESPACE_TAG, namespace), (NAME_TAG, name), (KIND_TAG, kind), (REQUESTER_TAG, requester))
        return Identity(
            role_arn=role_arn,
            external_id=external_id,
            session_name=session_name(namespace, name),
            tags=tuple((k, tag_value(v)) for k, v in tags),
            scope=f"{role_arn}|{external_id or ''}|{namespace}",
        )

    def tenants(self, watched: Callable[[str], bool]) -> dict[str, Identity]:
        """Namespace -> the identity the orphan sweep acts as there, for each watched namespace whose
        policies name a role: the namespace's session tag (which the role's trust policy asks for), and
        the sweep as the object and the requester. Roles in conflict are logged and skipped.

        A namespace that a policy names but that is gone counts too: deleted (force-deleted while dbops
        was down, say), it is where orphans come from, and the policies naming it still say which role
        made its databases. Only those naming it: its labels, and so the selectors it matched, are gone."""
        with self._lock:
            present = set(self._namespaces)
            gone: dict[str, list[rules.Policy]] = {}
            for _name, policy in sorted(self._policies.items()):
                for namespace in set(policy.spec.namespaces or []) - present:
                    gone.setdefault(namespace, []).append(policy)
        found = {}
        for namespace in filter(watched, sorted(present | set(gone))):
            try:
                identity = self.identity(namespace, *SWEEP, policies=gone.get(namespace))
            except SpecError as err:
                log.warning("orphans of namespace %s not looked for: %s", namespace, err)
                continue
            if identity is not None:
                found[namespace] = identity
        return found


def _raise(violations: list[str]) -> None:
    if violations:
        raise SpecError(REASON, "; ".join(dict.fromkeys(violations)))


def _nobody(namespace: str) -> Request:
    return Request(kind="", namespace=namespace, region="", paths={})


def session_name(namespace: str, name: str) -> str:
    """RoleSessionName (CloudTrail shows it): 2 to 64 of [\\w+=,.@-]; a long one keeps a hash of the rest."""
    text = _SESSION_CHARS.sub("-", f"dbops-{namespace}-{name}")
    if len(text) <= 64:
        return text
    return f"{text[:55]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def tag_value(value: str) -> str:
    """A session tag value: at most 256 of the characters IAM takes (others become _)."""
    return _TAG_CHARS.sub("_", value)[:256]
