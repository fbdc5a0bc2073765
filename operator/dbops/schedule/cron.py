"""When a DBRestoreSchedule's runs are due: its five cron fields read in its time zone.

Pure functions over cronsim (a maintained cron evaluator that follows Debian's cron, DST included): a run
due in the hour a daylight-saving change skips runs when the clock jumps forward; one due in the hour that
repeats runs once; a schedule of minutes or hours (*/15 * * * *) runs on the wall clock in both halves of a
repeated hour. Every time returned is in UTC.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from cronsim.explain import explain

from dbops.core.types import SpecError

LISTED = 10  # the missed runs listed by name (the count is always told)
COUNTED = 100_000  # a minute schedule's 70 days: past that, missed runs are told as "more than"


@dataclass(frozen=True)
class Cron:
    expr: str
    zone: ZoneInfo

    @property
    def words(self) -> str:
        """The schedule as a person reads it, e.g. "At 03:00 on Monday (Europe/Berlin)"."""
        try:
            text = explain(self.expr)
        except (ValueError, KeyError, IndexError):  # explain is best effort: a valid schedule it cannot put in words
            text = self.expr
        return f"{text} ({self.zone.key})"


@dataclass(frozen=True)
class Due:
    """Runs due in a span: the latest, and those before it, which can no longer start (missed)."""

    latest: datetime | None = None
    missed: list[datetime] = field(default_factory=list)  # the newest LISTED of them, oldest first
    missed_count: int = 0
    counted_all: bool = True


def parse(expr: str, time_zone: str) -> Cron:
    """The schedule, or a SpecError naming the field (CEL checks the shape; only cron knows the ranges)."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError(
            "UnknownTimeZone",
            f"spec.timeZone {time_zone!r} is not a time zone the operator knows: use an IANA name such as "
            "Europe/Berlin or UTC",
        ) from None
    normalized = " ".join(expr.split())
    try:
        next(CronSim(normalized, datetime.now(zone)))
    except CronSimError as err:
        raise SpecError("InvalidSchedule", f"spec.schedule {expr!r} is not a valid cron schedule: {err}") from None
    except StopIteration:
        raise SpecError("InvalidSchedule", f"spec.schedule {expr!r} is never due (no such date)") from None
    return Cron(normalized, zone)


def after(cron: Cron, moment: datetime) -> datetime | None:
    """The first time due strictly after `moment` (None: never again)."""
    try:
        return next(CronSim(cron.expr, moment.astimezone(cron.zone))).astimezone(UTC)
    except StopIteration:
        return None


def latest(cron: Cron, moment: datetime) -> datetime | None:
    """The last time due at or before `moment` (cronsim's reverse iteration is strictly before)."""
    it = CronSim(cron.expr, (moment + timedelta(minutes=1)).astimezone(cron.zone), reverse=True)
    try:
        for _ in range(3):
            when = next(it).astimezone(UTC)
            if when <= moment:
                return when
    except StopIteration:
        return None
    return None


def due(cron: Cron, since: datetime, until: datetime) -> Due:
    """The runs due in (since, until]."""
    last = latest(cron, until)
    if last is None or last <= since:
        return Due()
    missed: deque[datetime] = deque(maxlen=LISTED)
    count = 0
    it = CronSim(cron.expr, since.astimezone(cron.zone))
    for _ in range(COUNTED):
        when = next(it).astimezone(UTC)
        if when >= last:
            return Due(last, list(missed), count)
        missed.append(when)
        count += 1
    return Due(last, list(missed), count, counted_all=False)


def run_suffix(moment: datetime) -> str:
    """A scheduled run's part of its names: the time it was due, in UTC, to the minute (12 characters)."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M")
