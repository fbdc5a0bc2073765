"""The orphan sweep: databases tagged by dbops whose owner object no longer exists.

An object can vanish without its finalizer running (its finalizer stripped by hand, its namespace
force-deleted while the operator was down): its database then runs on with nobody to apply its
deletionPolicy. Every resync, the active replica lists the objects (fresh, from the API server) and the
databases dbops created in each region in use, and reports those whose owner UID is gone: a metric
(dbops_orphaned_databases), one audit record per orphan, one log line. A database kept on purpose
(deletionPolicy Retain tags it dbops.dev/retained-at) is no orphan.

With tenancy, the databases of a namespace whose DBPolicy names an IAM role live where that role
reaches (often a tenant's own account): the sweep also lists them acting as each such role, once per role
however many namespaces use it, in a session tagged with one of those namespaces (what the role's trust
policy asks for; the next namespace's session when the role refuses one). A deleted namespace that a
policy names is swept too (dbops.policy.store.Tenancy.tenants). An orphan is one database
(account, region, identifier) however many identities see it, and is removed only through the identity
of its own namespace: the tenant role that made it, or the operator's own for a namespace without one.
An identity that cannot list (AssumeRole refused, throttled) is logged and keeps what it last found
counted, untouched; the others are swept all the same.

Each region's listing is also handed to the slow resync's cache (StatusCache.feed): it is the look at
every settled object that the resync would otherwise make again with describes of its own.

DBOPS_ORPHANS=snapshot also removes an orphan after DBOPS_ORPHAN_GRACE seconds: a final snapshot,
then the deletion, as deletionPolicy Snapshot would have done. Only databases of namespaces this
operator watches are ever considered, and nothing is done when the objects could not be listed.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dbops.core.aws import Aws, AWSError, Identity, acting_as
from dbops.core.kube import Kube
from dbops.core.report import Record, Reporter
from dbops.core.types import (
    KIND_TAG,
    MANAGED_BY_TAG,
    NAME_TAG,
    NAMESPACE_TAG,
    OWNER_TAG,
    RETAINED_TAG,
    Kind,
    tags_of,
)
from dbops.restore.removal import removal

log = logging.getLogger(__name__)
PLURALS = ("dbrestores", "dbattaches")
# (region, kind, every database of that kind the listing saw, when the listing began (monotonic))
Listed = Callable[[str, Kind, list[dict[str, Any]], float], None]


@dataclass(frozen=True)
class Orphan:
    region: str
    kind: Kind
    identifier: str
    owner_kind: str
    namespace: str
    name: str
    uid: str
    account: str = ""  # the account it is in (from its ARN)
    identity: Identity | None = None  # who listed it, and so who signs its removal (None: the operator)

    @property
    def key(self) -> str:
        """One database, whichever identity lists it."""
        return f"{self.account}/{self.region}/{self.identifier}"


def orphans(
    dbs: list[tuple[str, Kind, dict[str, Any]]], known: set[str], watched: Callable[[str], bool]
) -> list[Orphan]:
    """Which of these databases (region, kind, description) are dbops' and have lost their owner."""
    found = []
    for region, kind, db in dbs:
        tags = tags_of(db)
        uid = tags.get(OWNER_TAG, "")
        if tags.get(MANAGED_BY_TAG) != "dbops" or not uid or uid in known or RETAINED_TAG in tags:
            continue
        namespace = tags.get(NAMESPACE_TAG, "")
        if not watched(namespace):
            continue
        ident = str(db.get("DBInstanceIdentifier") or db.get("DBClusterIdentifier"))
        owner = (tags.get(KIND_TAG, ""), namespace, tags.get(NAME_TAG, ""), uid)
        arn = str(db.get("DBInstanceArn") or db.get("DBClusterArn") or "")  # its account: one key however listed
        found.append(Orphan(region, kind, ident, *owner, account=account_of(arn)))
    return found


def removable(orphan: Orphan, roles: set[str]) -> bool:
    """Whether the identity that listed an orphan may remove it: a tenant role only what is tagged with
    its own session's namespace; the operator's own only what no namespace with a role (`roles`) owns."""
    if orphan.identity is None:
        return orphan.namespace not in roles
    return dict(orphan.identity.tags).get(NAMESPACE_TAG) == orphan.namespace


def merged(found: list[Orphan], roles: set[str]) -> list[Orphan]:
    """One orphan per database (two namespaces sharing a role or an account list it twice), taken from
    the identity that may remove it when there is one."""
    best: dict[str, Orphan] = {}
    for orphan in found:
        held = best.get(orphan.key)
        if held is None or (removable(orphan, roles) and not removable(held, roles)):
            best[orphan.key] = orphan
    return list(best.values())


def account_of(arn: str) -> str:
    """The account of an ARN (arn:PARTITION:SERVICE:REGION:ACCOUNT:...); "" when it is none."""
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" else ""


def exact_namespaces(patterns: str) -> list[str] | None:
    """The namespaces to list objects in, when the patterns name them exactly (a namespace-scoped
    install, whose Role allows no cluster-wide list); None (list cluster-wide) for globs or exclusions."""
    rules = [p.strip() for p in patterns.split(",") if p.strip()]
    if not rules or any(p.startswith("!") or any(c in p for c in "*?[") for p in rules):
        return None
    return rules


def watcher(patterns: str) -> Callable[[str], bool]:
    """kopf's namespace patterns (globs, !exclusions; empty: all) as a predicate."""
    rules = [p.strip() for p in patterns.split(",") if p.strip()]
    includes = [p for p in rules if not p.startswith("!")]
    excludes = [p[1:] for p in rules if p.startswith("!")]
    return lambda ns: (
        (not includes or any(fnmatch.fnmatch(ns, p) for p in includes))
        and not any(fnmatch.fnmatch(ns, p) for p in excludes)
    )


class Sweep:
    def __init__(
        self,
        aws: Aws,
        kube: Kube,
        reporter: Reporter,
        regions: Callable[[], set[str]],
        watched: Callable[[str], bool],
        handle: str = "report",
        grace: float = 3600.0,
        namespaces: list[str] | None = None,
        tenants: Callable[[], dict[str, Identity]] = dict,
        listed: Listed | None = None,
    ) -> None:
        self.aws, self.kube, self.reporter = aws, kube, reporter
        self.regions, self.watched = regions, watched
        self.namespaces: list[str | None] = [*namespaces] if namespaces else [None]  # None: cluster-wide
        self.tenants = tenants  # namespace -> the role the sweep acts as there (watched namespaces only)
        self.handle, self.grace = handle, grace
        self.first_seen: dict[str, float] = {}  # Orphan.key -> when first found orphaned
        self.count: dict[str, int] = {}  # owner kind -> orphans now (the metric)
        self.last: dict[Identity | None, list[Orphan]] = {}  # what each identity found at its last listing
        # Told each whole listing (as the identity that made it): the slow resync takes it for its own poll.
        self.listed = listed

    def run(self, interval: float, is_leader: Callable[[], bool], stop: threading.Event) -> None:
        while not stop.wait(interval):
            if not is_leader():
                continue
            try:
                self.once()
            except Exception as exc:  # AWS or the API server away: the next sweep tries again
                log.warning("orphan sweep skipped: %s", exc)

    def once(self) -> list[Orphan]:
        known = {
            str(o["metadata"]["uid"])
            for plural in PLURALS
            for ns in self.namespaces
            for o in self.kube.list(plural, ns)
        }
        tenants = self.tenants()
        listed, failed = self._list_all(tenants, known)
        self.last = listed
        roles = set(tenants)
        found = merged([o for found in listed.values() for o in found], roles)
        stale = {o for lister in failed for o in listed[lister]}  # counted, not acted on
        self.first_seen = {k: t for k, t in self.first_seen.items() if k in {o.key for o in found}}
        for orphan in found:
            if orphan not in stale:
                self._one(orphan, removable(orphan, roles))
        self.count = dict(Counter(o.owner_kind for o in found))
        return found

    def _list_all(
        self, tenants: dict[str, Identity], known: set[str]
    ) -> tuple[dict[Identity | None, list[Orphan]], set[Identity | None]]:
        """What the operator's own identity and each tenant role see, and which could not list: for
        those, what they found last time. A role shared by many namespaces lists once (its describes see
        the same account whichever namespace's session asks), through the first of their sessions the
        role accepts; each orphan of one of those namespaces then carries that namespace's own session,
        the one its removal is signed with."""
        regions = sorted(self.regions())
        roles: dict[tuple[str, str | None], dict[str, Identity | None]] = {}
        for namespace, identity in tenants.items():
            roles.setdefault((identity.role_arn, identity.external_id), {})[namespace] = identity
        listed: dict[Identity | None, list[Orphan]] = {}
        failed: set[Identity | None] = set()
        ours: dict[str, Identity | None] = {"": None}  # the operator's own identity, tried alone
        for sessions in [ours, *roles.values()]:
            first = next(iter(sessions.values()))  # what the role's listing is remembered under
            found = self._list_role(sessions, regions, known)
            if found is None:
                found = self.last.get(first, [])
                failed.add(first)
            listed[first] = found
        return listed, failed

    def _list_role(
        self, sessions: dict[str, Identity | None], regions: list[str], known: set[str]
    ) -> list[Orphan] | None:
        """One role's orphans, through the first of its sessions that can list; None when none could."""
        for lister in sessions.values():
            try:
                return self._listed(lister, sessions, regions, known)
            except AWSError as exc:  # this session only: the role's next one, and other roles, go on
                who = f"as {lister.session_name} ({lister.role_arn})" if lister else "as the operator"
                log.warning("orphan sweep %s skipped: %s", who, exc)
        return None

    def _listed(
        self, lister: Identity | None, sessions: dict[str, Identity | None], regions: list[str], known: set[str]
    ) -> list[Orphan]:
        """The orphans one identity sees in every region, each carrying the session of its own namespace
        when that namespace uses this role (`sessions`), else the lister's."""
        with acting_as(lister):
            dbs = [(r, k, db) for r in regions for k, db in self._tagged(r)]
        return [replace(o, identity=sessions.get(o.namespace, lister)) for o in orphans(dbs, known, self.watched)]

    def _tagged(self, region: str) -> list[tuple[Kind, dict[str, Any]]]:
        began = time.monotonic()
        instances = self.aws.paginate(region, "describe_db_instances", "DBInstances")
        clusters = self.aws.paginate(region, "describe_db_clusters", "DBClusters")
        if self.listed is not None:
            self.listed(region, "instance", instances, began)
            self.listed(region, "cluster", clusters, began)
        pairs: list[tuple[Kind, dict[str, Any]]] = [("cluster", c) for c in clusters]
        # A cluster's members are removed with it: only instances that stand alone are listed on their own.
        pairs += [("instance", i) for i in instances if not i.get("DBClusterIdentifier")]
        return [(k, db) for k, db in pairs if tags_of(db).get(MANAGED_BY_TAG) == "dbops"]

    def _one(self, orphan: Orphan, may_remove: bool) -> None:
        key = orphan.key
        if key not in self.first_seen:
            self.first_seen[key] = time.monotonic()
            where = f"{orphan.region}, account {orphan.account}" if orphan.account else orphan.region
            message = (
                f"{orphan.kind} {orphan.identifier} ({where}) was created by {orphan.owner_kind} "
                f"{orphan.namespace}/{orphan.name}, which no longer exists; its deletionPolicy was never applied"
            )
            log.warning("orphaned database: %s", message)
            handling = self.handle if may_remove else "report"
            self._record(orphan, "orphan-found", message, warning=True, handling=handling)
        if may_remove and self.handle == "snapshot" and time.monotonic() - self.first_seen[key] >= self.grace:
            try:
                with acting_as(orphan.identity):  # signed as whoever listed it: its namespace's role, or ours
                    self._remove(orphan)
            except AWSError as exc:  # this orphan only: the next sweep tries again
                log.warning("orphaned database %s not removed: %s", orphan.identifier, exc)

    def _remove(self, orphan: Orphan) -> None:
        """A final snapshot, then the deletion: what deletionPolicy Snapshot would have done."""
        db = self.aws.look_one(orphan.region, orphan.kind, orphan.identifier)
        members: dict[str, dict[str, Any] | None] = {}
        if orphan.kind == "cluster" and db is not None:
            names = [m["DBInstanceIdentifier"] for m in db.get("DBClusterMembers", [])]
            members = dict(self.aws.look(orphan.region, "instance", names))
        step = removal(orphan.kind, "Snapshot", orphan.identifier, db, members, orphan.uid)
        for call in step.calls:
            self.aws.call(orphan.region, call.operation, **call.params)
            log.warning("orphaned database %s: %s", orphan.identifier, step.message)
        if step.calls:
            self._record(orphan, "orphan-removed", f"{step.message} (DBOPS_ORPHANS=snapshot)")

    def _record(self, orphan: Orphan, action: str, message: str, warning: bool = False, **details: Any) -> None:
        """An audit record (and metrics, notifications) about a database whose object is gone."""
        self.reporter.notify(
            Record(
                kind=orphan.owner_kind,
                namespace=orphan.namespace,
                name=orphan.name,
                uid=orphan.uid,
                action=action,
                reason="OwnerGone",
                message=message,
                warning=warning,
                target=orphan.identifier,
                details={"region": orphan.region, **({"account": orphan.account} if orphan.account else {}), **details},
            )
        )
