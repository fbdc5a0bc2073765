"""The orphan sweep: databases tagged by dbops whose owner object no longer exists.

An object can vanish without its finalizer running (its finalizer stripped by hand, its namespace
force-deleted while the operator was down): its database then runs on with nobody to apply its
deletionPolicy. Every resync, the active replica lists the objects (fresh, from the API server) and the
databases dbops created in each region in use, and reports those whose owner UID is gone: a metric
(dbops_orphaned_databases), one audit record per orphan, one log line. A database kept on purpose
(deletionPolicy Retain tags it dbops.dev/retained-at) is no orphan.

DBOPS_ORPHANS=snapshot also removes an orphan after DBOPS_ORPHAN_GRACE seconds: a final snapshot,
then the deletion, as deletionPolicy Snapshot would have done. Only databases of namespaces this
operator watches are ever considered, and nothing is done when the objects could not be listed.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbops.core.aws import Aws
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


@dataclass(frozen=True)
class Orphan:
    region: str
    kind: Kind
    identifier: str
    owner_kind: str
    namespace: str
    name: str
    uid: str


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
        found.append(Orphan(region, kind, ident, tags.get(KIND_TAG, ""), namespace, tags.get(NAME_TAG, ""), uid))
    return found


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
    ) -> None:
        self.aws, self.kube, self.reporter = aws, kube, reporter
        self.regions, self.watched = regions, watched
        self.handle, self.grace = handle, grace
        self.first_seen: dict[str, float] = {}  # "region/identifier" -> when first found orphaned
        self.count: dict[str, int] = {}  # owner kind -> orphans now (the metric)

    def run(self, interval: float, is_leader: Callable[[], bool], stop: threading.Event) -> None:
        while not stop.wait(interval):
            if not is_leader():
                continue
            try:
                self.once()
            except Exception as exc:  # AWS or the API server away: the next sweep tries again
                log.warning("orphan sweep skipped: %s", exc)

    def once(self) -> list[Orphan]:
        known = {str(o["metadata"]["uid"]) for plural in PLURALS for o in self.kube.list(plural)}
        dbs = [(r, k, db) for r in sorted(self.regions()) for k, db in self._tagged(r)]
        found = orphans(dbs, known, self.watched)
        keys = {f"{o.region}/{o.identifier}" for o in found}
        self.first_seen = {k: t for k, t in self.first_seen.items() if k in keys}
        counts: dict[str, int] = {}
        for orphan in found:
            counts[orphan.owner_kind] = counts.get(orphan.owner_kind, 0) + 1
            self._one(orphan)
        self.count = counts
        return found

    def _tagged(self, region: str) -> list[tuple[Kind, dict[str, Any]]]:
        instances = self.aws.paginate(region, "describe_db_instances", "DBInstances")
        clusters = self.aws.paginate(region, "describe_db_clusters", "DBClusters")
        pairs: list[tuple[Kind, dict[str, Any]]] = [("cluster", c) for c in clusters]
        # A cluster's members are removed with it: only instances that stand alone are listed on their own.
        pairs += [("instance", i) for i in instances if not i.get("DBClusterIdentifier")]
        return [(k, db) for k, db in pairs if tags_of(db).get(MANAGED_BY_TAG) == "dbops"]

    def _one(self, orphan: Orphan) -> None:
        key = f"{orphan.region}/{orphan.identifier}"
        if key not in self.first_seen:
            self.first_seen[key] = time.monotonic()
            message = (
                f"{orphan.kind} {orphan.identifier} ({orphan.region}) was created by {orphan.owner_kind} "
                f"{orphan.namespace}/{orphan.name}, which no longer exists; its deletionPolicy was never applied"
            )
            log.warning("orphaned database: %s", message)
            self._record(orphan, "orphan-found", message, warning=True, handling=self.handle)
        if self.handle == "snapshot" and time.monotonic() - self.first_seen[key] >= self.grace:
            self._remove(orphan)

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
                details={"region": orphan.region, **details},
            )
        )
