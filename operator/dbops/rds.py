"""Everything that talks to RDS: clients, error classification, tags, and the batched status cache.

The operator reaches AWS only through boto3's standard configuration (credentials chain, region,
AWS_ENDPOINT_URL), so the same code runs against AWS and against a local stand-in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError
from botocore.parsers import ResponseParserError

from dbops import settings

Kind = Literal["instance", "cluster"]
Client = Any  # boto3's RDS client is generated at run time

# Tags on everything dbops creates: ownership is proven by the owner UID, never by the name.
OWNER_TAG = "dbops.dev/owner-uid"
MANAGED_BY_TAG = "dbops.dev/managed-by"
NAMESPACE_TAG = "dbops.dev/namespace"
NAME_TAG = "dbops.dev/name"

# Error codes worth a retry: throttling, AWS-side faults, and "not yet" states that pass by themselves.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestThrottled",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InvalidDBInstanceState",
        "InvalidDBInstanceStateFault",
        "InvalidDBClusterStateFault",
        "InvalidDBSnapshotState",
        "InvalidDBClusterSnapshotStateFault",
        "RequestTimeout",
        "RequestExpired",
    }
)

_clients: dict[tuple[str, str], Client] = {}
_clients_lock = threading.Lock()
# Observers of every AWS call (operation, error code or None): metrics subscribe here.
call_observers: list[Callable[[str, str | None], None]] = []


def client(region: str, service: str = "rds") -> Client:
    """One thread-safe boto3 client per region and service, with standard retries and backoff."""
    key = (service, region)
    with _clients_lock:
        if key not in _clients:
            cfg = Config(
                region_name=region,
                retries={"mode": "standard", "max_attempts": settings.get().aws_max_attempts},
                user_agent_extra="dbops",
                max_pool_connections=max(10, settings.get().max_workers),
            )
            new = boto3.session.Session().client(service, config=cfg)  # type: ignore[call-overload]
            # response-received fires once per HTTP attempt (after-call only once per call, after
            # botocore's retries), so throttled attempts that botocore retried are counted too.
            new.meta.events.register("response-received", _observe_call)
            _clients[key] = new
        return _clients[key]


def _observe_call(event_name: str, parsed_response: Any = None, exception: Exception | None = None, **_: Any) -> None:
    operation = event_name.rsplit(".", 1)[-1]
    code = parsed_response.get("Error", {}).get("Code") if isinstance(parsed_response, dict) else None
    if exception is not None and not code:
        code = type(exception).__name__  # no response at all: a connection error or a timeout
    for observer in call_observers:
        observer(operation, code)


@dataclass
class AWSError(Exception):
    """An AWS error in the shape a user can act on: the code, the message, and whether it passes."""

    code: str
    message: str
    transient: bool
    operation: str = ""
    request_id: str | None = None

    def __str__(self) -> str:
        where = f" in {self.operation}" if self.operation else ""
        return f"{self.code}{where}: {self.message}"


# What a boto3 call raises that classify() turns into an AWSError (ResponseParserError is no BotoCoreError).
AWS_EXCEPTIONS = (ClientError, BotoCoreError, ResponseParserError)


def classify(exc: Exception, operation: str = "") -> AWSError:
    if isinstance(exc, AWSError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(err.get("Code", "Unknown"))
        status = int(meta.get("HTTPStatusCode", 400))
        return AWSError(
            code=code,
            message=str(err.get("Message", "")),
            transient=code in TRANSIENT_CODES or status >= 500,
            operation=operation or exc.operation_name,
            request_id=meta.get("RequestId"),
        )
    if isinstance(exc, ConnectionError | ReadTimeoutError):
        return AWSError("ConnectionError", str(exc), transient=True, operation=operation)
    if isinstance(exc, ResponseParserError):
        # A reply that is not AWS's XML/JSON: an HTML error page from a proxy or an overloaded endpoint.
        return AWSError("ResponseParserError", str(exc)[:300], transient=True, operation=operation)
    if isinstance(exc, BotoCoreError):
        return AWSError(type(exc).__name__, str(exc), transient=False, operation=operation)
    raise exc


def call(region: str, operation: str, **params: Any) -> dict[str, Any]:
    """Call an RDS operation by its boto3 name; AWS errors come out as AWSError."""
    try:
        result: dict[str, Any] = getattr(client(region), operation)(**params)
        return result
    except AWS_EXCEPTIONS as exc:
        raise classify(exc, operation) from exc


def ownership_tags(uid: str, namespace: str, name: str, extra: dict[str, str] | None = None) -> list[dict[str, str]]:
    tags = {**(extra or {}), MANAGED_BY_TAG: "dbops", OWNER_TAG: uid, NAMESPACE_TAG: namespace, NAME_TAG: name}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tags_of(obj: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in obj.get("TagList", [])}


def owned_by(obj: dict[str, Any] | None, uid: str) -> bool:
    return obj is not None and tags_of(obj).get(OWNER_TAG) == uid


_NOT_FOUND = {
    "DBInstanceNotFound",
    "DBInstanceNotFoundFault",
    "DBClusterNotFoundFault",
    "DBClusterNotFound",
    "DBSnapshotNotFound",
    "DBSnapshotNotFoundFault",
    "DBClusterSnapshotNotFoundFault",
}


def describe(region: str, kind: Kind, identifier: str) -> dict[str, Any] | None:
    """One DB instance or cluster by identifier, or None when it does not exist."""
    try:
        if kind == "instance":
            return call(region, "describe_db_instances", DBInstanceIdentifier=identifier)["DBInstances"][0]  # type: ignore[no-any-return]
        return call(region, "describe_db_clusters", DBClusterIdentifier=identifier)["DBClusters"][0]  # type: ignore[no-any-return]
    except AWSError as failure:
        if failure.code in _NOT_FOUND:
            return None
        raise


def paginate(region: str, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
    try:
        pages = client(region).get_paginator(operation).paginate(**params)
        return [item for page in pages for item in page[key]]
    except AWS_EXCEPTIONS as exc:
        failure = classify(exc, operation)
        if failure.code in _NOT_FOUND:
            return []
        raise failure from exc


def describe_many(region: str, kind: Kind, identifiers: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Many instances or clusters in as few calls as RDS allows (a filter takes up to 100 values)."""
    ids = sorted(set(identifiers))
    found: dict[str, dict[str, Any]] = {}
    op, key, flt, id_key = (
        ("describe_db_instances", "DBInstances", "db-instance-id", "DBInstanceIdentifier")
        if kind == "instance"
        else ("describe_db_clusters", "DBClusters", "db-cluster-id", "DBClusterIdentifier")
    )
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        for item in paginate(region, op, key, Filters=[{"Name": flt, "Values": chunk}]):
            found[item[id_key]] = item
    return found


@dataclass
class _Entry:
    tracked: dict[str, set[str]] = field(default_factory=dict)  # identifier -> UIDs of objects polling it
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    fetched_ids: frozenset[str] = frozenset()
    lock: threading.Lock = field(default_factory=threading.Lock)


class StatusCache:
    """Batched polling: one Describe call per region and kind per poll interval covers every tracked DB.

    Each object's timer asks the cache; the first ask after the data went stale refreshes it for all
    tracked identifiers at once, and the others wait for that refresh instead of calling AWS.
    """

    def __init__(
        self, interval: float, fetch: Callable[[str, Kind, Iterable[str]], dict[str, dict[str, Any]]] = describe_many
    ):
        self.interval = interval
        self._fetch = fetch
        self._entries: dict[tuple[str, Kind], _Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, region: str, kind: Kind) -> _Entry:
        with self._lock:
            return self._entries.setdefault((region, kind), _Entry())

    def track(self, region: str, kind: Kind, identifiers: Iterable[str], owner: str) -> None:
        """Poll these identifiers for `owner` (a UID); idempotent, so every timer tick may call it."""
        entry = self._entry(region, kind)
        with entry.lock:
            for ident in identifiers:
                entry.tracked.setdefault(ident, set()).add(owner)

    def untrack(self, owner: str) -> None:
        """Stop polling what `owner` tracked, in every region and kind.

        What the last poll saw of an identifier nobody tracks any more is dropped with it: a later
        object of the same name (a re-created object, a new test) must never see another owner's data.
        """
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            with entry.lock:
                for ident in [i for i, owners in entry.tracked.items() if owner in owners]:
                    entry.tracked[ident].discard(owner)
                    if not entry.tracked[ident]:
                        del entry.tracked[ident]
                        entry.data.pop(ident, None)
                        entry.fetched_ids = entry.fetched_ids - {ident}

    def forget(self, region: str, kind: Kind, identifiers: Iterable[str]) -> None:
        """Drop what the last poll saw of these identifiers: called right after creating them, so that
        a poll made before the create call cannot report them as missing. (A refresh in progress holds
        the lock, so it ends before this runs.)"""
        entry = self._entry(region, kind)
        with entry.lock:
            entry.fetched_ids = entry.fetched_ids - set(identifiers)

    def get(self, region: str, kind: Kind, identifier: str) -> Observation:
        """What the last batched poll saw of a tracked DB, refreshing it when it is an interval old.

        An identifier tracked since the last poll is `seen=False` until the next one: a burst of new
        objects then costs one call, not one each.
        """
        entry = self._entry(region, kind)
        with entry.lock:
            if time.monotonic() - entry.fetched_at >= self.interval * 0.9:
                ids = frozenset(entry.tracked) | {identifier}
                entry.data = self._fetch(region, kind, ids)
                entry.fetched_at = time.monotonic()
                entry.fetched_ids = ids
            if identifier not in entry.fetched_ids:
                return Observation(seen=False, db=None)
            return Observation(seen=True, db=entry.data.get(identifier))


@dataclass(frozen=True)
class Observation:
    seen: bool  # False: not polled yet
    db: dict[str, Any] | None  # None when seen: it does not exist
