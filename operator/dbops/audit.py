"""The audit trail: every request and outcome as a row in SQL (SQLAlchemy; PostgreSQL or SQLite).

Records never go straight to the database. `Spool.put` writes each one durably to a local spool
directory (one file per record, written to a temporary name, fsynced, then renamed into place) and
wakes a writer thread, which inserts the spooled records in order and deletes their files only after
the transaction commits. When the database is down the files wait and the writer retries; a restore
never waits for the audit database. Each record has a unique id, so a crash between the commit and
the deletion of the files cannot write a record twice.

Every stored field is bounded (`bounded`: a String column's length, TEXT_LIMIT for the others), so that
no value can make the database refuse a record; a record it refuses all the same (a constraint, a value
of a kind it does not take) is set aside in the spool's rejected/ directory, with the error next to it
and counted in dbops_audit_records_rejected_total, and every other record is still written.

The schema is managed by Alembic (dbops/migrations), upgraded to head when the writer first connects.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

from dbops import redact
from dbops.core import report

log = logging.getLogger(__name__)

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"
VERSION_TABLE = "dbops_alembic_version"
BATCH = 500

metadata = sa.MetaData()
records = sa.Table(
    "audit_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(36), nullable=False),
    sa.Column("time", sa.DateTime(timezone=False), nullable=False, index=True),  # UTC
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("namespace", sa.String(253), nullable=False, index=True),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("uid", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(64), nullable=False, index=True),
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    # Usernames reach about 340 characters (system:serviceaccount:NAMESPACE:NAME); longer ones are cut.
    sa.Column("requester", sa.String(512), nullable=True, index=True),
    sa.Column("requester_verified", sa.Boolean, nullable=True),  # None: recorded before verification existed
    sa.Column("requester_groups", sa.Text, nullable=False),  # JSON list
    sa.Column("source", sa.Text, nullable=True),
    sa.Column("target", sa.String(255), nullable=True, index=True),
    sa.Column("aws_request_id", sa.String(128), nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # JSON object
    sa.UniqueConstraint("record_id", name="uq_audit_records_record_id"),
)

TEXT_LIMIT = 32768  # characters of a Text column (messages, details): a record, not a log dump
REJECTED = "rejected"  # the spool's directory of records the database refused
# What the database says about one record (not about itself being down): set that record aside.
REFUSALS = (sa.exc.DataError, sa.exc.IntegrityError)

SUCCEEDED = frozenset({"available", "deleted", "expired"})
FAILED = frozenset({"failed", "delete-failed"})
DRILLS = {"drill-passed": "succeeded", "drill-failed": "failed", "drill-skipped": "skipped"}  # a drill run's end


def outcome(record: report.Record) -> str:
    """succeeded / failed for final outcomes; warning or info for the steps on the way."""
    if record.action in DRILLS:
        return DRILLS[record.action]
    if record.action in SUCCEEDED:
        return "succeeded"
    if record.action in FAILED:
        return "failed"
    return "warning" if record.warning else "info"


def bounded(column: str, value: Any) -> Any:
    """A value as the column stores it: cut to the column's length, NUL characters (which PostgreSQL
    refuses in text) escaped. Writes and queries (`dbops audit --user`) cut the same way."""
    if not isinstance(value, str):
        return value
    limit = getattr(records.c[column].type, "length", None) or TEXT_LIMIT
    value = value.replace("\x00", "\\0")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def to_row(record: report.Record, record_id: str | None = None) -> dict[str, Any]:
    when = record.time.astimezone(UTC).replace(tzinfo=None) if record.time.tzinfo else record.time
    return {k: bounded(k, v) for k, v in _fields(record, record_id, when).items()}


def _fields(record: report.Record, record_id: str | None, when: datetime) -> dict[str, Any]:
    return {
        "record_id": record_id or str(uuid.uuid4()),
        "time": when.isoformat(),
        "kind": record.kind,
        "namespace": record.namespace,
        "name": record.name,
        "uid": record.uid,
        "action": record.action,
        "reason": record.reason,
        "outcome": outcome(record),
        "requester": record.requester,
        "requester_verified": record.requester_verified if record.requester else None,
        "requester_groups": json.dumps(list(record.requester_groups)),
        "source": record.source,
        "target": record.target,
        "aws_request_id": record.aws_request_id,
        "message": record.message,
        "details": json.dumps(record.details, default=str, sort_keys=True),
    }


def _from_spool(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "time": datetime.fromisoformat(row["time"])}


# --- schema ---------------------------------------------------------------------------------------


def engine_for(url: str) -> Engine:
    redact.register(url)  # its password, whichever way the URL came (settings, `dbops audit --url`)
    if url.startswith("sqlite"):
        return sa.create_engine(url, connect_args={"timeout": 30})
    # pre_ping: after the database restarts, a pooled connection is found dead before it is used.
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2, connect_args=_pg_args(url))


def _pg_args(url: str) -> dict[str, Any]:
    return {"connect_timeout": 5} if url.startswith("postgresql") else {}


def alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")


# --- the spool and its writer ---------------------------------------------------------------------


class Spool:
    """Records waiting for the database: one JSON file each, named so that sorting keeps their order."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._tmp = self.dir / ".tmp"
        self._tmp.mkdir(exist_ok=True)
        self._seq = 0
        self._lock = threading.Lock()
        self.on_rejected: Callable[[], None] | None = None

    def put(self, row: dict[str, Any]) -> pathlib.Path:
        with self._lock:
            self._seq += 1
            name = f"{time.time_ns():020d}-{self._seq:06d}-{row['record_id']}.json"
        tmp = self._tmp / name
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(row, f, default=str)
            f.flush()
            os.fsync(f.fileno())
        final = self.dir / name
        os.replace(tmp, final)
        _fsync_dir(self.dir)
        return final

    def pending(self, limit: int | None = None) -> list[pathlib.Path]:
        files = sorted(p for p in self.dir.iterdir() if p.suffix == ".json" and p.is_file())
        return files[:limit] if limit else files

    def depth(self) -> int:
        return sum(1 for p in self.dir.iterdir() if p.suffix == ".json")

    def set_aside(self, path: pathlib.Path, error: str) -> None:
        """A record the database refused: kept in rejected/ with the refusal beside it, for a person."""
        aside = self.dir / REJECTED
        aside.mkdir(exist_ok=True)
        (aside / f"{path.stem}.error").write_text(error + "\n", encoding="utf-8")
        os.replace(path, aside / path.name)
        _fsync_dir(aside)
        log.error("audit record %s refused by the database (%s): set aside in %s", path.stem, error, aside)
        if self.on_rejected is not None:
            self.on_rejected()

    def rejected(self) -> int:
        aside = self.dir / REJECTED
        return sum(1 for p in aside.iterdir() if p.suffix == ".json") if aside.is_dir() else 0

    @staticmethod
    def read(path: pathlib.Path) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return data
        except (OSError, ValueError):
            log.error("audit spool: unreadable record %s, moved aside", path.name)
            with contextlib.suppress(OSError):
                path.rename(path.with_suffix(".bad"))
            return None


def _fsync_dir(directory: pathlib.Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_batch(engine: Engine, files: Sequence[pathlib.Path], spool: Spool | None = None) -> int:
    """Insert the spooled records not yet in the database, in one transaction; then drop their files.
    When the database refuses the batch for what is in it, the records go one by one, and the ones it
    refuses are set aside (in `spool`'s rejected/ directory) instead of blocking every later record."""
    read = [(p, row) for p, row in ((p, Spool.read(p)) for p in files) if row is not None]
    try:
        _insert(engine, [row for _, row in read])
    except REFUSALS:
        for path, row in read:
            try:
                _insert(engine, [row])
            except REFUSALS as err:
                if spool is None:
                    raise
                spool.set_aside(path, _describe(err))
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return len(read)


def _insert(engine: Engine, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    ids = [r["record_id"] for r in rows]
    with engine.begin() as conn:
        present = set(conn.execute(sa.select(records.c.record_id).where(records.c.record_id.in_(ids))).scalars())
        fresh = [_from_spool(r) for r in rows if r["record_id"] not in present]
        if fresh:
            conn.execute(records.insert(), fresh)


class AuditTrail:
    """The report observer: spools each record and writes the spool to the database in the background."""

    def __init__(self, url: str, spool_dir: str | os.PathLike[str], retry_interval: float = 5.0) -> None:
        self.url = url
        self.spool = Spool(spool_dir)
        self.retry_interval = retry_interval
        self._engine: Engine | None = None
        self._migrated = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._depth_gauge: Any = None
        self._written: Any = None
        self._errors: Any = None
        self._depth = self.spool.depth()

    def attach_metrics(self, depth_gauge: Any, written: Any, errors: Any, rejected: Any = None) -> None:
        self._depth_gauge, self._written, self._errors = depth_gauge, written, errors
        if rejected is not None:
            self.spool.on_rejected = rejected.inc
        self._set_depth(self.spool.depth())

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        if self._depth_gauge is not None:
            self._depth_gauge.set(depth)

    def __call__(self, record: report.Record) -> None:
        self.spool.put(to_row(record))
        self._set_depth(self._depth + 1)
        self._idle.clear()
        self._wake.set()

    def start(self) -> AuditTrail:
        self._thread = threading.Thread(target=self._loop, name="dbops-audit", daemon=True)
        self._thread.start()
        self._wake.set()
        return self

    def stop(self, flush_timeout: float = 5.0) -> None:
        """Try to write what is spooled (bounded), then stop; anything left stays for the next start."""
        self.flush(flush_timeout)
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=flush_timeout)

    def flush(self, timeout: float) -> bool:
        self._wake.set()
        return self._idle.wait(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self.retry_interval)
            self._wake.clear()
            try:
                self.drain()
                self._idle.set()
            except Exception as exc:  # the database is down, or worse: keep the spool, retry later
                if self._errors is not None:
                    self._errors.inc()
                log.warning(
                    "audit database not writable (%s); %d record(s) kept in the spool, retrying in %.0fs",
                    _describe(exc),
                    self._depth,
                    self.retry_interval,
                )
                self._stop.wait(self.retry_interval)

    def drain(self) -> int:
        """Write everything spooled now; raises when the database cannot take it."""
        engine = self._get_engine()
        if not self._migrated:
            migrate(engine)
            self._migrated = True
        written = 0
        while files := self.spool.pending(BATCH):
            written += write_batch(engine, files, self.spool)
            if self._written is not None:
                self._written.inc(len(files))
            self._set_depth(self.spool.depth())
        self._set_depth(self.spool.depth())
        return written

    def _get_engine(self) -> Engine:
        if self._engine is None:
            self._engine = engine_for(self.url)
        return self._engine


def _describe(exc: Exception) -> str:
    """An error without the URL (and so without its password): SQLAlchemy's messages can quote it."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# --- the read path --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    namespace: str | None = None
    user: str | None = None
    target: str | None = None
    name: str | None = None
    kind: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 200


def _naive_utc(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def query(engine: Engine, q: Query) -> list[dict[str, Any]]:
    stmt = sa.select(records)
    for column, value in (
        (records.c.namespace, q.namespace),
        (records.c.requester, bounded("requester", q.user)),
        (records.c.target, q.target),
        (records.c.name, q.name),
        (records.c.kind, q.kind),
        (records.c.action, q.action),
    ):
        if value:
            stmt = stmt.where(column == value)
    if q.since:
        stmt = stmt.where(records.c.time >= _naive_utc(q.since))
    if q.until:
        stmt = stmt.where(records.c.time <= _naive_utc(q.until))
    stmt = stmt.order_by(records.c.time.desc(), records.c.id.desc())
    if q.limit:  # 0: every record (an auditor's export)
        stmt = stmt.limit(q.limit)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(stmt)]
    for row in rows:
        row["time"] = row["time"].replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
        row["requester_groups"] = json.loads(row["requester_groups"] or "[]")
        row["details"] = json.loads(row["details"] or "{}")
        row.pop("id", None)
    rows.reverse()  # oldest first, like a log
    return rows


TABLE_COLUMNS = ("time", "namespace", "name", "kind", "action", "outcome", "requester", "target", "reason", "message")


def _cell(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if column == "requester" and value and row.get("requester_verified") is not True:
        return f"{value}(unverified)"  # one word: the table's columns stay split by spaces
    return str(value) if value is not None else ""


def render_table(rows: Iterable[dict[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    cells = [[_cell(row, c) for c in columns] for row in rows]
    header = [c.upper() for c in columns]
    widths = [max([len(h)] + [min(len(r[i]), 80) for r in cells]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("  ".join(v[:80].ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


# An auditor's export: one row per record, the drills' evidence in columns of their own (RTO, RPO, probes).
CSV_COLUMNS = (
    "time",
    "kind",
    "namespace",
    "name",
    "action",
    "outcome",
    "reason",
    "requester",
    "source",
    "target",
    "message",
    "aws_request_id",
)
CSV_DETAILS = (
    "run",
    "trigger",
    "scheduled_time",
    "snapshot_time",
    "rpo_seconds",
    "rto_seconds",
    "rto_available_seconds",
    "rto_verified_seconds",
    "probes",
)


def render_csv(rows: Iterable[dict[str, Any]]) -> str:
    """CSV (RFC 4180) of records, oldest first: the columns of every record, then the drills' evidence, then
    any other detail as JSON (so that nothing recorded is left out)."""
    import csv  # noqa: PLC0415 - only the export needs it
    import io  # noqa: PLC0415

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*CSV_COLUMNS, *CSV_DETAILS, "other_details"])
    for row in rows:
        details = dict(row.get("details") or {})
        drill = [details.pop(k, None) for k in CSV_DETAILS]
        other = json.dumps(details, sort_keys=True, default=str) if details else ""
        writer.writerow([_cell(row, c) for c in CSV_COLUMNS] + [_plain(v) for v in drill] + [other])
    return out.getvalue()


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


@contextlib.contextmanager
def connect(url: str, *, migrate_schema: bool = True) -> Iterator[Engine]:
    engine = engine_for(url)
    try:
        if migrate_schema:
            migrate(engine)
        yield engine
    finally:
        engine.dispose()
