"""Prometheus metrics on /metrics (prometheus-client), fed by report records and AWS call observers.

Labels stay low-cardinality: kind (DBRestore, DBAttach), outcome, reason (a CamelCase reason or an AWS
error code), AWS operation and error code, notification channel. Never a namespace, name or UID.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dbops.core import report
from dbops.core.aws import THROTTLING_CODES, Aws

# From seconds (tests, small instances) to hours (large Aurora clusters).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 10800, 14400, 21600)
RECONCILE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# The age of the data a drill restored: from minutes (a fresh snapshot) to weeks.
RPO_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600, 604800, 1209600, 2592000)
DRILLS = {"drill-passed": "passed", "drill-failed": "failed", "drill-skipped": "skipped"}

# Actions that begin, continue and end a restore or attach (report.Record.action).
STARTING = frozenset({"requested"})
KINDS = ("DBRestore", "DBAttach")
ONGOING = frozenset(
    {"requested", "aws-call", "restore-started", "attach-started", "attaching", "waiting", "progress", "retrying"}
)
FINAL = {"available": "available", "failed": "failed"}
GONE = frozenset({"deleted", "expired"})


def _version() -> str:
    try:
        return metadata.version("dbops")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


class Metrics:
    """All of dbops' metrics, in one registry (the default one in the operator, a fresh one in tests)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.build_info = Info("dbops_build", "dbops version and runtime.", registry=registry)
        self.build_info.info({"version": _version(), "python_version": platform.python_version()})
        self.started = Counter(
            "dbops_restores_started_total", "Restores and attaches requested, by kind.", ["kind"], registry=registry
        )
        self.finished = Counter(
            "dbops_restores_total",
            "Restores and attaches that ended, by kind, outcome (available, failed) and reason.",
            ["kind", "outcome", "reason"],
            registry=registry,
        )
        self.duration = Histogram(
            "dbops_restore_duration_seconds",
            "Seconds from the request to the outcome, by kind and outcome.",
            ["kind", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "dbops_restores_in_flight",
            "Restores and attaches requested and not yet ended.",
            ["kind"],
            registry=registry,
        )
        self.aws_calls = Counter(
            "dbops_aws_api_calls_total",
            "AWS API requests (every attempt, retries included), by operation.",
            ["operation"],
            registry=registry,
        )
        self.aws_errors = Counter(
            "dbops_aws_api_errors_total",
            "AWS API requests that failed, by operation and AWS error code.",
            ["operation", "code"],
            registry=registry,
        )
        self.aws_throttled = Counter(
            "dbops_aws_api_throttled_total",
            "AWS API requests refused by throttling, by operation.",
            ["operation"],
            registry=registry,
        )
        self.reconcile = Histogram(
            "dbops_reconcile_duration_seconds",
            "Seconds spent in one reconcile pass, by kind.",
            ["kind"],
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        )
        self.records = Counter(
            "dbops_records_total",
            "Records reported (events), by kind and action.",
            ["kind", "action"],
            registry=registry,
        )
        self.spool_depth = Gauge(
            "dbops_audit_spool_records", "Audit records waiting in the local spool for the database.", registry=registry
        )
        self.audit_written = Counter(
            "dbops_audit_records_written_total", "Audit records written to the audit database.", registry=registry
        )
        self.audit_errors = Counter(
            "dbops_audit_write_errors_total",
            "Failed attempts to write the spool to the audit database.",
            registry=registry,
        )
        self.audit_rejected = Counter(
            "dbops_audit_records_rejected_total",
            "Audit records the database refused, set aside in the spool's rejected/ directory.",
            registry=registry,
        )
        self.notifications = Counter(
            "dbops_notifications_total",
            "Notifications by channel (slack, email) and outcome (sent, failed).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.notification_retries = Counter(
            "dbops_notification_retries_total",
            "Notification attempts that were retried.",
            ["channel"],
            registry=registry,
        )
        self._drills(registry)
        # kind -> uid -> when this process first saw it in flight (epoch seconds).
        self._flights: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()
        registry.register(_oldest_in_flight(self))
        for kind in KINDS:  # zeros from the start: dashboards and rate() see the first one
            self.started.labels(kind)
            self._flight(kind, "", None)

    def _drills(self, registry: CollectorRegistry) -> None:
        """Restore drills (DBRestoreSchedule): results, RTO and RPO. No schedule names: the latest success is
        the one of the schedule that has gone longest without one, which is what an alert needs."""
        self.drill_runs = Counter(
            "dbops_drill_runs_total",
            "Restore drill runs that ended, by outcome (passed, failed, skipped) and reason.",
            ["outcome", "reason"],
            registry=registry,
        )
        self.drill_rto = Histogram(
            "dbops_drill_rto_seconds",
            "Seconds from a drill's start to its database verified (available, for a drill without probes).",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.drill_rpo = Histogram(
            "dbops_drill_rpo_seconds",
            "Age of the data a drill restored: from the snapshot (or point in time) to the restore.",
            ["outcome"],
            buckets=RPO_BUCKETS,
            registry=registry,
        )
        self.drill_last_rto = Gauge(
            "dbops_drill_last_rto_seconds", "RTO of the latest drill that passed or failed.", registry=registry
        )
        self.drill_last_rpo = Gauge(
            "dbops_drill_last_rpo_seconds", "RPO of the latest drill that passed or failed.", registry=registry
        )
        self._schedules: dict[str, float] = {}  # schedule uid -> its latest success (or creation), epoch seconds
        registry.register(_least_recent_success(self))

    def observe_schedule(self, uid: str, last_success: float) -> None:
        """Each pass of a schedule says when its latest drill passed (its creation while none has)."""
        with self._lock:
            self._schedules[uid] = last_success

    def forget_schedule(self, uid: str) -> None:
        with self._lock:
            self._schedules.pop(uid, None)

    def least_recent_success(self) -> float | None:
        with self._lock:
            return min(self._schedules.values(), default=None)

    def observe_drill(self, record: report.Record) -> None:
        outcome = DRILLS[record.action]
        self.drill_runs.labels(outcome, record.reason or "Unknown").inc()
        if outcome == "skipped":
            return
        rto, rpo = record.details.get("rto_seconds"), record.details.get("rpo_seconds")
        if isinstance(rto, int | float):
            self.drill_rto.labels(outcome).observe(float(rto))
            self.drill_last_rto.set(float(rto))
        if isinstance(rpo, int | float):
            self.drill_rpo.labels(outcome).observe(float(rpo))
            self.drill_last_rpo.set(float(rpo))

    # --- observers ------------------------------------------------------------------------------

    def observe_record(self, record: report.Record) -> None:
        kind = record.kind or "unknown"
        self.records.labels(kind, record.action).inc()
        if record.action in ONGOING:
            # Started: "requested" (a DBRestore, also on a retry), or the first step in flight of a kind
            # that posts no "requested" (a DBAttach: its first aws-call, waiting or attaching).
            self._flight(kind, record.uid, record.time.timestamp())
            if record.action in STARTING:
                self.started.labels(kind).inc()
        elif record.action in FINAL:
            outcome = FINAL[record.action]
            self.finished.labels(kind, outcome, record.reason or "Unknown").inc()
            began = self._flight(kind, record.uid, None)
            seconds = record.details.get("duration_seconds")
            if not isinstance(seconds, int | float) and began is not None:
                seconds = record.time.timestamp() - began  # no duration in the record: since first seen
            if isinstance(seconds, int | float):
                self.duration.labels(kind, outcome).observe(max(0.0, float(seconds)))
        elif record.action in GONE:
            self._flight(kind, record.uid, None)
        elif record.action in DRILLS:
            self.observe_drill(record)

    def _flight(self, kind: str, uid: str, since: float | None) -> float | None:
        """Mark uid in flight since `since` (kept if already in flight), or ended (None); return
        when it was in flight since before this call (None: it was not)."""
        with self._lock:
            uids = self._flights.setdefault(kind, {})
            before = uids.get(uid)
            if since is None:
                uids.pop(uid, None)
            elif before is None:
                uids[uid] = since
            self.in_flight.labels(kind).set(len(uids))
            return before

    def oldest_in_flight(self) -> dict[str, float]:
        """kind -> seconds since the oldest object in flight was first seen (0 when none)."""
        now = time.time()
        with self._lock:
            return {kind: max(0.0, now - min(uids.values())) if uids else 0.0 for kind, uids in self._flights.items()}

    def observe_aws_call(self, operation: str, code: str | None) -> None:
        self.aws_calls.labels(operation).inc()
        if code:
            self.aws_errors.labels(operation, code).inc()
            if code in THROTTLING_CODES:
                self.aws_throttled.labels(operation).inc()

    def observe_pass(self, kind: str, seconds: float) -> None:
        self.reconcile.labels(kind).observe(seconds)


Samples = Callable[[], Iterable[tuple[list[str], float]]]


class _AtScrape(Collector):
    """A gauge computed when Prometheus scrapes, from the state of this process."""

    def __init__(self, name: str, documentation: str, labels: list[str], samples: Samples) -> None:
        self.name, self.documentation, self.labels, self.samples = name, documentation, labels, samples

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, value in self.samples():
            family.add_metric(values, value)
        yield family

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labels)


def _oldest_in_flight(m: Metrics) -> _AtScrape:
    """dbops_restore_oldest_in_flight_seconds (for the "stuck" alert)."""
    return _AtScrape(
        "dbops_restore_oldest_in_flight_seconds",
        "Age of the oldest restore or attach in flight, by kind (since this process first saw it; 0: none).",
        ["kind"],
        lambda: [([kind], seconds) for kind, seconds in sorted(m.oldest_in_flight().items())],
    )


def _least_recent_success(m: Metrics) -> _AtScrape:
    """dbops_drill_last_success_timestamp_seconds (for the "no successful drill" alert): absent without schedules."""
    return _AtScrape(
        "dbops_drill_last_success_timestamp_seconds",
        "When the latest restore drill passed, of the schedule that has gone longest without one (a schedule "
        "with none yet counts from its creation).",
        [],
        lambda: [([], oldest)] if (oldest := m.least_recent_success()) is not None else [],
    )


def serve(port: int, addr: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from outside the pod
    """Start the /metrics HTTP server in a daemon thread (port 0: no server)."""
    if port:
        start_http_server(port, addr=addr)


def subscribe(m: Metrics, reporter: report.Reporter, aws: Aws) -> None:
    """Feed the metrics from every record and every AWS call attempt, and read the pacing at scrape time."""
    reporter.observers.append(m.observe_record)
    aws.observers.append(m.observe_aws_call)
    m.registry.register(_Pacing(aws))


class _Pacing(Collector):
    """How much the shared AWS call budget holds the operator back (computed at scrape time)."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> Iterator[Metric]:
        waited = CounterMetricFamily(
            "dbops_aws_pacing_wait_seconds", "Seconds AWS calls waited for the shared call budget, all regions."
        )
        waited.add_metric([], self.aws.waited_total)
        yield waited
        rates = self.aws.rates()
        rate = GaugeMetricFamily(
            "dbops_aws_call_rate_limit",
            "AWS calls per second the budget allows now, lowest region (halved on each throttled answer).",
        )
        rate.add_metric([], min(rates.values()) if rates else self.aws.config.rate)
        yield rate


def count_orphans(m: Metrics, counts: Callable[[], dict[str, int]]) -> None:
    """dbops_orphaned_databases, read from the orphan sweep at scrape time."""

    def samples() -> list[tuple[list[str], float]]:
        found = counts()
        return [([kind], found.get(kind, 0)) for kind in KINDS]

    m.registry.register(
        _AtScrape(
            "dbops_orphaned_databases",
            "Databases dbops created whose DBRestore or DBAttach is gone (by the owner's kind), at the last sweep.",
            ["kind"],
            samples,
        )
    )
