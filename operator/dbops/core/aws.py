"""Everything that talks to AWS: clients, pacing, error classification, tags, and the batched cache.

The operator reaches AWS only through boto3's standard configuration (credentials chain, region,
AWS_ENDPOINT_URL), so the same code runs against AWS and against a local stand-in. One `Aws` object per
process (made at startup, kept in kopf's memo) holds the clients, the pacing buckets and the cache.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError
from botocore.parsers import ResponseParserError

from dbops.core.batch import Coalescer, Recent
from dbops.core.types import Kind

Client = Any  # boto3's clients are generated at run time

THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled"}
)
# Error codes worth a retry: throttling, AWS-side faults, and "not yet" states that pass by themselves.
TRANSIENT_CODES = THROTTLING_CODES | {
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
    "Paced",
}
NOT_FOUND = frozenset(
    {
        "DBInstanceNotFound",
        "DBInstanceNotFoundFault",
        "DBClusterNotFoundFault",
        "DBClusterNotFound",
        "DBSnapshotNotFound",
        "DBSnapshotNotFoundFault",
        "DBClusterSnapshotNotFoundFault",
    }
)


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
    if isinstance(exc, ConnectionError | HTTPClientError):
        # Refused, reset, closed mid-answer, timed out: the network or the endpoint, not the request.
        return AWSError(type(exc).__name__, str(exc)[:300], transient=True, operation=operation)
    if isinstance(exc, ResponseParserError):
        # A reply that is not AWS's XML/JSON: an HTML error page from a proxy or an overloaded endpoint.
        return AWSError("ResponseParserError", str(exc)[:300], transient=True, operation=operation)
    if isinstance(exc, BotoCoreError):
        return AWSError(type(exc).__name__, str(exc), transient=False, operation=operation)
    raise exc


# --- pacing ---------------------------------------------------------------------------------------


class TokenBucket:
    """One account's and region's budget of AWS calls, shared by every object.

    Additive increase, multiplicative decrease: a throttled answer halves the rate (down to a floor),
    each success wins a little back, so that a burst of objects slows down together instead of each
    retrying on its own."""

    def __init__(self, rate: float, burst: float, floor: float = 0.5) -> None:
        self.base = rate
        self.rate = rate
        self.burst = burst
        self.floor = min(floor, rate)
        self.tokens = burst
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self, max_wait: float) -> float:
        """Wait for a token; return the seconds waited. Raises AWSError("Paced") past max_wait."""
        waited = 0.0
        while True:
            with self.lock:
                moment = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (moment - self.stamp) * self.rate)
                self.stamp = moment
                if self.tokens >= 1:
                    self.tokens -= 1
                    return waited
                wait = (1 - self.tokens) / self.rate
            if waited + wait > max_wait:
                raise AWSError("Paced", f"AWS call budget of {self.rate:.1f}/s spent; retrying later", True)
            time.sleep(wait)
            waited += wait

    def throttled(self) -> None:
        with self.lock:
            self.rate = max(self.floor, self.rate / 2)

    def succeeded(self) -> None:
        with self.lock:
            self.rate = min(self.base, self.rate + self.base * 0.02)


_waited = threading.local()


def paced_seconds(reset: bool = False) -> float:
    """Seconds this thread spent waiting for AWS call budget since the last reset (for a condition)."""
    value = float(getattr(_waited, "seconds", 0.0))
    if reset:
        _waited.seconds = 0.0
    return value


# --- the clients ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsConfig:
    max_attempts: int = 5
    max_pool: int = 16
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    rate: float = 20.0
    burst: float = 40.0
    max_wait: float = 10.0


CallObserver = Callable[[str, str | None], None]
ASSUMED_SECONDS = 3600
MAX_IDENTITIES = 256  # assumed-role sessions kept (least recently used go first)


@dataclass(frozen=True)
class Identity:
    """An IAM role to act as (STS AssumeRole), and the session tags that say for whom. `scope` is what
    may share a batched poll: the same role for the same namespace (see StatusCache)."""

    role_arn: str
    external_id: str | None
    session_name: str
    tags: tuple[tuple[str, str], ...]
    scope: str


_acting = threading.local()


@contextlib.contextmanager
def acting_as(identity: Identity | None) -> Iterator[None]:
    """Every AWS call this thread makes inside the block is signed as `identity` (None: the operator's
    own). Set around a whole pass, so that no call of it can go out with another namespace's identity,
    nor with the operator's own where the namespace has a role."""
    before = getattr(_acting, "identity", None)
    _acting.identity = identity
    try:
        yield
    finally:
        _acting.identity = before


def acting() -> Identity | None:
    found: Identity | None = getattr(_acting, "identity", None)
    return found


def _scope() -> str:
    """What may share a read with this thread's: the same role for the same namespace ("" for the
    operator's own identity)."""
    identity = acting()
    return identity.scope if identity else ""


class Aws:
    """Clients per region and service, the pacing buckets, and the observers of every call."""

    def __init__(self, config: AwsConfig) -> None:
        self.config = config
        self._clients: dict[tuple[str, str, Identity | None], Client] = {}
        self._own: Any = None  # the operator's own session, shared by its clients
        self._buckets: dict[str, TokenBucket] = {}
        # RLock: a first client for an assumed identity asks STS through the operator's own client.
        self._lock = threading.RLock()
        self.observers: list[CallObserver] = []
        self._sessions: OrderedDict[Identity, Any] = OrderedDict()
        self.waited_total = 0.0  # seconds calls waited for budget, all threads (a metric)
        # Fresh reads (the look before a create or delete), shared by the passes of a burst that act
        # as the same identity (see `_scope`).
        self.fresh = Coalescer(self._describe_any)
        self.recent = Recent()  # sources of a burst's creates (see `source`)

    def client(self, region: str, service: str = "rds") -> Client:
        """One thread-safe boto3 client per region, service and identity (the operator's own, or the role
        this thread acts as: see acting_as), with standard retries and timeouts (an endpoint that hangs
        shows up as a ConnectionError within seconds, not after a minute)."""
        identity = acting()
        key = (service, region, identity)
        with self._lock:
            if key not in self._clients:
                from botocore.config import Config  # noqa: PLC0415

                cfg = Config(
                    region_name=region,
                    retries={"mode": "standard", "max_attempts": self.config.max_attempts},
                    user_agent_extra="dbops",
                    max_pool_connections=max(10, self.config.max_pool),
                    connect_timeout=self.config.connect_timeout,
                    read_timeout=self.config.read_timeout,
                )
                new = self._session(identity, region).client(service, config=cfg)
                # before-send fires before each HTTP attempt (botocore's retries included): every
                # attempt waits for budget; response-received counts each attempt's outcome.
                new.meta.events.register("before-send", self._pace)
                new.meta.events.register("response-received", self._observe)
                self._clients[key] = new
            return self._clients[key]

    def _session(self, identity: Identity | None, region: str) -> Any:
        """boto3's session for an identity: the standard chain for the operator's own; for a role, the
        credentials of assuming it, refreshed by botocore shortly before they expire (15 minutes ahead)."""
        import boto3  # noqa: PLC0415

        if identity is None:
            # One session for all the operator's own clients: its loader keeps each service model once,
            # where a session per client costs about 10 MiB per region and service.
            if self._own is None:
                self._own = boto3.session.Session()
            return self._own
        if identity in self._sessions:
            self._sessions.move_to_end(identity)
            return self._sessions[identity]
        from botocore.credentials import RefreshableCredentials  # noqa: PLC0415
        from botocore.session import get_session  # noqa: PLC0415

        core = get_session()
        # botocore has no public setter for refreshable credentials; this is the recipe its own STS provider uses.
        core._credentials = RefreshableCredentials.create_from_metadata(  # type: ignore[attr-defined]
            metadata=self._assume(identity, region),
            refresh_using=lambda: self._assume(identity, region),
            method="sts-assume-role",
        )
        session = self._sessions[identity] = boto3.session.Session(botocore_session=core)
        while len(self._sessions) > MAX_IDENTITIES:  # objects long settled: their next pass assumes again
            old, _ = self._sessions.popitem(last=False)
            for stale in [k for k in self._clients if k[2] == old]:
                del self._clients[stale]
        return session

    def _assume(self, identity: Identity, region: str) -> dict[str, str]:
        """STS AssumeRole with the operator's own credentials, whatever this thread acts as."""
        params: dict[str, Any] = {
            "RoleArn": identity.role_arn,
            "RoleSessionName": identity.session_name,
            "DurationSeconds": ASSUMED_SECONDS,
            "Tags": [{"Key": k, "Value": v} for k, v in identity.tags],
        }
        if identity.external_id:
            params["ExternalId"] = identity.external_id
        with acting_as(None):
            try:
                creds = self.client(region, "sts").assume_role(**params)["Credentials"]
            except AWS_EXCEPTIONS as exc:
                raise classify(exc, "assume_role") from exc
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    def bucket(self, region: str) -> TokenBucket:
        with self._lock:
            if region not in self._buckets:
                self._buckets[region] = TokenBucket(self.config.rate, self.config.burst)
            return self._buckets[region]

    def _pace(self, request: Any = None, **_: Any) -> None:
        region = _region_of(request)
        waited = self.bucket(region).take(self.config.max_wait)
        _waited.seconds = float(getattr(_waited, "seconds", 0.0)) + waited
        self.waited_total += waited

    def rates(self) -> dict[str, float]:
        """Region -> the call rate its budget allows now (lower than configured while AWS throttles)."""
        with self._lock:
            buckets = dict(self._buckets)
        return {region: bucket.rate for region, bucket in buckets.items()}

    def _observe(
        self,
        event_name: str,
        parsed_response: Any = None,
        exception: Exception | None = None,
        context: Any = None,
        **_: Any,
    ) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        code = parsed_response.get("Error", {}).get("Code") if isinstance(parsed_response, dict) else None
        if exception is not None and not code:
            code = type(exception).__name__  # no response at all: a connection error or a timeout
        region = str((context or {}).get("client_region") or "")
        if region:
            bucket = self.bucket(region)
            bucket.throttled() if code in THROTTLING_CODES else bucket.succeeded()
        for observer in self.observers:
            observer(operation, code)

    def call(self, region: str, operation: str, **params: Any) -> dict[str, Any]:
        """Call an operation by its boto3 name; AWS errors come out as AWSError."""
        try:
            result: dict[str, Any] = getattr(self.client(region), operation)(**params)
            return result
        except AWS_EXCEPTIONS as exc:
            raise classify(exc, operation) from exc

    def describe(self, region: str, kind: Kind, identifier: str) -> dict[str, Any] | None:
        """One DB instance or cluster by identifier, or None when it does not exist."""
        try:
            if kind == "instance":
                found = self.call(region, "describe_db_instances", DBInstanceIdentifier=identifier)["DBInstances"]
            else:
                found = self.call(region, "describe_db_clusters", DBClusterIdentifier=identifier)["DBClusters"]
        except AWSError as failure:
            if failure.code in NOT_FOUND:
                return None
            raise
        return found[0] if found else None

    def paginate(self, region: str, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        try:
            pages = self.client(region).get_paginator(operation).paginate(**params)
            return [item for page in pages for item in page[key]]
        except AWS_EXCEPTIONS as exc:
            failure = classify(exc, operation)
            if failure.code in NOT_FOUND:
                return []
            raise failure from exc

    def look(self, region: str, kind: Kind, identifiers: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """What AWS says now of these instances or clusters (None: no such one), in one call shared with
        the other passes looking at the same region and kind at the same moment."""
        return self.fresh.get(region, kind, identifiers, _scope())

    def look_one(self, region: str, kind: Kind, identifier: str) -> dict[str, Any] | None:
        return self.look(region, kind, [identifier])[identifier]

    def source(self, what: str, region: str, key: str, read: Callable[[], Any]) -> Any:
        """A read of a restore's source (snapshot, source database, its snapshots), shared for a moment
        by the passes of a burst that act as the same identity."""
        return self.recent.get((_scope(), region, what, key), read)

    def snapshots(self, region: str, kind: Kind, identifiers: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Named DB (or cluster) snapshots, fresh and shared like `look`; an ARN is read on its own."""
        ids = set(identifiers)
        arns = {i for i in ids if i.startswith("arn:")}
        found: dict[str, dict[str, Any] | None] = dict(self.fresh.get(region, f"{kind}-snapshot", ids - arns, _scope()))
        for arn in arns:
            found[arn] = next(iter(self._snapshot_list(region, kind, "Identifier", [arn])), None)
        return found

    def _describe_any(self, region: str, kind: str, identifiers: Iterable[str]) -> dict[str, dict[str, Any]]:
        if kind.endswith("-snapshot"):
            base: Kind = "instance" if kind == "instance-snapshot" else "cluster"
            id_key = "DBSnapshotIdentifier" if base == "instance" else "DBClusterSnapshotIdentifier"
            return {s[id_key]: s for s in self._snapshot_list(region, base, "Filter", list(identifiers))}
        return self.describe_many(region, "instance" if kind == "instance" else "cluster", identifiers)

    def _snapshot_list(self, region: str, kind: Kind, how: str, ids: list[str]) -> list[dict[str, Any]]:
        op, key, flt, id_param = (
            ("describe_db_snapshots", "DBSnapshots", "db-snapshot-id", "DBSnapshotIdentifier")
            if kind == "instance"
            else (
                "describe_db_cluster_snapshots",
                "DBClusterSnapshots",
                "db-cluster-snapshot-id",
                "DBClusterSnapshotIdentifier",
            )
        )
        if how == "Identifier":
            return self.paginate(region, op, key, **{id_param: ids[0]})
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), 100):
            out += self.paginate(region, op, key, Filters=[{"Name": flt, "Values": ids[start : start + 100]}])
        return out

    def describe_many(self, region: str, kind: Kind, identifiers: Iterable[str]) -> dict[str, dict[str, Any]]:
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
            for item in self.paginate(region, op, key, Filters=[{"Name": flt, "Values": chunk}]):
                found[item[id_key]] = item
        return found


def _region_of(request: Any) -> str:
    """The region of a prepared request, from its context (botocore sets client_region)."""
    context = getattr(request, "context", None) or {}
    return str(context.get("client_region") or "")


# --- the batched cache --------------------------------------------------------------------------------


# What the caches keep of each database, packed as JSON: a DescribeDBInstances entry takes about 7 KB as
# Python objects and 1.5 KB packed, which is most of the operator's memory at 10,000 objects. boto3's
# answers hold only JSON types and datetimes; a datetime comes back as the same (aware) datetime.
_DATETIME = "$datetime"


def _encode(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return {_DATETIME: value.isoformat()}
    raise TypeError(f"cannot pack {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    return datetime.datetime.fromisoformat(obj[_DATETIME]) if len(obj) == 1 and _DATETIME in obj else obj


def _pack(db: dict[str, Any]) -> bytes:
    return json.dumps(db, default=_encode, separators=(",", ":")).encode()


def _unpack(packed: bytes) -> dict[str, Any]:
    db: dict[str, Any] = json.loads(packed, object_hook=_decode)
    return db


def _packed(found: dict[str, dict[str, Any]]) -> dict[str, bytes]:
    return {ident: _pack(db) for ident, db in found.items()}


@dataclass
class _Entry:
    tracked: dict[str, set[str]] = field(default_factory=dict)  # identifier -> UIDs of objects polling it
    data: dict[str, bytes] = field(default_factory=dict)  # identifier -> what AWS said, packed (_pack)
    fetched_at: float = float("-inf")  # when what `data` holds was read: a poll, or a listing's start
    due_at: float = float("-inf")  # when the next poll of every tracked identifier is due
    fetched_ids: frozenset[str] = frozenset()
    caught_up_at: float = float("-inf")
    # identifier -> when a fresh read, create or delete last changed what is known of it: a listing made
    # before that moment (`feed`) is older news about it
    touched: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)  # held for reads and writes of the above
    polling: threading.Lock = field(default_factory=threading.Lock)  # held for a poll's AWS call


@dataclass(frozen=True)
class Observation:
    seen: bool  # False: not polled yet
    db: dict[str, Any] | None  # None when seen: it does not exist


Fetch = Callable[[str, Kind, Iterable[str]], dict[str, dict[str, Any]]]


class StatusCache:
    """Batched polling: one Describe call per region and kind per interval covers every tracked DB.

    It only ever tells progress. A decision to create, delete or fail is made on a fresh read (the
    reconcile core re-observes before it acts), never on what this cache saw up to an interval ago.
    """

    def __init__(self, interval: float, fetch: Fetch, batch_delay: float = 0.5) -> None:
        self.interval = interval
        self.batch_delay = batch_delay
        self._fetch = fetch
        self._entries: dict[tuple[str, str, Kind], _Entry] = {}
        self._lock = threading.Lock()

    def _entry(self, region: str, kind: Kind) -> _Entry:
        """Per region, kind, and the identity this thread acts as: a namespace with a role of its own
        (maybe in another account) never shares a poll with another."""
        with self._lock:
            return self._entries.setdefault((_scope(), region, kind), _Entry())

    def track(self, region: str, kind: Kind, identifiers: Iterable[str], owner: str) -> None:
        """Poll these identifiers for `owner` (a UID); idempotent, so that every pass may call it."""
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
                        entry.touched.pop(ident, None)
                        entry.fetched_ids = entry.fetched_ids - {ident}

    def put(self, region: str, kind: Kind, found: dict[str, dict[str, Any] | None]) -> None:
        """What a fresh read saw: the next cached look starts from it rather than from older data."""
        entry = self._entry(region, kind)
        with entry.lock:
            for ident, db in found.items():
                if ident not in entry.tracked:
                    continue
                if db is None:
                    entry.data.pop(ident, None)
                else:
                    entry.data[ident] = _pack(db)
                entry.fetched_ids = entry.fetched_ids | {ident}
                entry.touched[ident] = time.monotonic()

    def forget(self, region: str, kind: Kind, identifiers: Iterable[str]) -> None:
        """Drop what the last poll saw of these identifiers: called right after creating or deleting
        them, so that a poll made before the call cannot report the old state."""
        entry = self._entry(region, kind)
        with entry.lock:
            entry.fetched_ids = entry.fetched_ids - set(identifiers)
            entry.touched.update(dict.fromkeys(identifiers, time.monotonic()))

    def feed(self, region: str, kind: Kind, listing: Iterable[dict[str, Any]], since: float) -> None:
        """A whole region's listing made for something else (the orphan sweep, as this thread's identity),
        begun at `since` (monotonic): it stands for this cache's next poll of every tracked identifier,
        absent meaning gone, so that one resync does not describe the same databases twice. It counts as
        fresh for longer than a poll (1.5 intervals), so that a sweep every interval keeps the cache from
        polling at all; should the sweeps stop, the cache polls again by itself. What was read fresh or
        acted on after `since` is kept: the listing is older news about it."""
        id_key = "DBInstanceIdentifier" if kind == "instance" else "DBClusterIdentifier"
        entry = self._entry(region, kind)
        with entry.lock:
            tracked = frozenset(entry.tracked)
        # Packed outside the lock (thousands of databases): the passes reading this entry do not wait.
        packed = {str(db[id_key]): _pack(db) for db in listing if str(db.get(id_key)) in tracked}
        with entry.lock:
            if entry.fetched_at >= since:
                return  # a poll made after the listing began: it is the newer
            entry.touched = {i: at for i, at in entry.touched.items() if at >= since}
            newer = set(entry.touched)
            tracked = frozenset(entry.tracked)
            data = {i: entry.data[i] for i in newer if i in entry.data}
            data.update({i: v for i, v in packed.items() if i in tracked and i not in newer})
            entry.data = data
            entry.fetched_ids = tracked.difference(newer) | (entry.fetched_ids & newer)
            entry.fetched_at, entry.due_at = since, since + self.interval * 1.5
            entry.caught_up_at = max(entry.caught_up_at, since)

    def get(self, region: str, kind: Kind, identifier: str) -> Observation:
        """What the last batched poll saw of a tracked DB, refreshing it when it is an interval old.

        An identifier tracked since the last poll is `seen=False` until a catch-up poll of every such
        identifier (at most one per `batch_delay`): a burst of new objects costs one call, not one each.
        The poll runs outside the entry's lock: a describe of hundreds of databases takes a while, and
        the passes that only track, put or read what is there must not queue behind it (in a burst of
        200 restores they did, for a sixth of every pass). One poll of an entry runs at a time; a pass
        that needs it waits for its answer rather than making the same call."""
        entry = self._entry(region, kind)
        with entry.lock:
            due = self._due(entry, identifier, time.monotonic()) is not None
        if due:
            with entry.polling:
                with entry.lock:  # again: the poll this pass waited for may have been the one due
                    moment = time.monotonic()
                    poll = self._due(entry, identifier, moment)
                if poll is not None:
                    found = _packed(self._fetch(region, kind, poll[0]))
                    with entry.lock:
                        self._store(entry, poll, found, moment)
        with entry.lock:
            if identifier not in entry.fetched_ids:
                return Observation(seen=False, db=None)
            packed = entry.data.get(identifier)
        return Observation(seen=True, db=None if packed is None else _unpack(packed))

    def _due(self, entry: _Entry, identifier: str, moment: float) -> tuple[frozenset[str], bool] | None:
        """The poll due now, if any: (identifiers, whether it is the whole entry's poll)."""
        if moment >= entry.due_at:
            return frozenset(entry.tracked) | {identifier}, True
        if identifier not in entry.fetched_ids and moment - entry.caught_up_at >= self.batch_delay:
            return (frozenset(entry.tracked) | {identifier}) - entry.fetched_ids, False
        return None

    def _store(self, entry: _Entry, poll: tuple[frozenset[str], bool], found: dict[str, bytes], since: float) -> None:
        """A poll begun at `since`: what a fresh read, create, delete or listing told of an identifier
        after that moment is newer news and stays; what nobody tracks any more is not kept."""
        ids, whole = poll
        if whole and entry.fetched_at >= since:
            return  # a listing begun after this poll landed meanwhile (feed): it is the newer
        newer = {i for i, at in entry.touched.items() if at >= since}
        wanted = {i for i in ids - newer if i in entry.tracked}
        if whole:
            entry.data = {i: v for i, v in entry.data.items() if i in newer}
            entry.fetched_ids = frozenset(wanted | (entry.fetched_ids & newer))
            entry.touched = {i: entry.touched[i] for i in newer}
            entry.fetched_at, entry.due_at = since, since + self.interval * 0.9
        else:
            for ident in wanted:
                entry.data.pop(ident, None)
            entry.fetched_ids = entry.fetched_ids | wanted
            entry.touched.update(dict.fromkeys(wanted, since))
        entry.data.update({i: found[i] for i in wanted if i in found})
        entry.caught_up_at = max(entry.caught_up_at, since)

    def tracked_count(self) -> int:
        with self._lock:
            entries = list(self._entries.values())
        return sum(len(e.tracked) for e in entries)
