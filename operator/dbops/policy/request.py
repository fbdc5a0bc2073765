"""What a request asks for, in the policy's terms: the AWS objects it names, what it would create and
with which settings, each with the spec field it comes from (messages name the field). Pure types."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

RefKind = Literal["instance", "cluster", "snapshot", "cluster-snapshot"]
Role = Literal["source", "cluster"]  # restored from (DBRestore) / extended (DBAttach)

WORDS: dict[RefKind, str] = {
    "instance": "DB instance",
    "cluster": "Aurora cluster",
    "snapshot": "DB snapshot",
    "cluster-snapshot": "cluster snapshot",
}


@dataclass(frozen=True)
class Ref:
    """An AWS object a request names. `identifier` None: known only once AWS is read (a custom
    endpoint's cluster, a DBRestore's cluster): then only the fresh read before the create call tells."""

    kind: RefKind
    identifier: str | None
    field: str


@dataclass(frozen=True)
class Request:
    """A DBRestore's or DBAttach's spec as the policies see it. `paths` maps each setting to its field."""

    kind: str  # DBRestore | DBAttach
    namespace: str
    region: str
    paths: dict[str, str]
    sources: tuple[Ref, ...] = ()
    cluster: Ref | None = None
    identifiers: tuple[str, ...] = ()  # what would be created
    instance_class: str | None = None  # as written (None: copied; the planned calls are checked instead)
    subnet_group: str | None = None
    security_groups: tuple[str, ...] | None = None
    public: bool = False
    deletion_protection: bool | None = None
    deletion_policy: str = "Retain"
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    ttl: str | None = None
    readers: int | None = None

    def path(self, setting: str) -> str:
        return self.paths.get(setting, f"spec.{setting}")


@dataclass(frozen=True)
class Found:
    """An AWS object a request uses, as a fresh read just before its create calls describes it.
    `tagged`: its tags are the ones sources.requiredTags are about (a named snapshot's own; for the latest
    snapshot or a point in time, the source DB's). `restored`: what the data is restored from, whose
    encryption the copy keeps (the snapshot; for a point in time, the DB)."""

    role: Role
    kind: RefKind
    identifier: str
    field: str
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    engine: str | None = None
    encrypted: bool | None = None
    tagged: bool = False
    restored: bool = False
