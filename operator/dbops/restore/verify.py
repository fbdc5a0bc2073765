"""Restore verification (a DBRestore's spec.verify): what the probes' results mean, and what status says.

Pure functions: probe.py connects and runs the queries, and hands over what came back. Only what a probe
checks reaches status, bounded: a row count, or the one value compared (at most OBSERVED_MAX characters).
Never another column, a row, or a credential: status and events are readable by anyone who may read the
object, and a restored database is a copy of production data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from dbops.core.status import Cond, View, condition, timestamp
from dbops.models import Expectation, Verify
from dbops.restore.source import parse_duration

VERIFIED = "Verified"
OBSERVED_MAX = 64
MESSAGE_MAX = 512
Family = Literal["postgresql", "mysql"]
Result = Literal["Passed", "Failed", "Error"]


@dataclass(frozen=True)
class ProbeOutcome:
    name: str
    result: Result
    expected: str
    observed: str | None = None
    message: str | None = None
    seconds: float | None = None

    def as_status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "result": self.result,
            "expected": self.expected,
            "observed": self.observed,
            "message": self.message,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Attempt:
    """One try at verifying: every probe's outcome, or why there was no connection to run them on."""

    outcomes: tuple[ProbeOutcome, ...] = ()
    unreachable: str | None = None  # the reason (ConnectFailed, CredentialsUnavailable, ...) when no probe ran
    message: str = ""
    final: bool = False  # no later try can mend it (an engine dbops has no driver for, a CA that is missing)


def family(engine: str | None) -> Family | None:
    """Which driver speaks to an RDS engine: psycopg2 for PostgreSQL ones, PyMySQL for MySQL and MariaDB."""
    name = (engine or "").lower()
    if "postgres" in name:
        return "postgresql"
    if "mysql" in name or "mariadb" in name:
        return "mysql"
    return None


def bounded(text: str, limit: int = MESSAGE_MAX) -> str:
    """One line, at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def expected_words(expect: Expectation) -> str:
    if expect.min_rows is not None:
        return f"at least {expect.min_rows} row{'s' if expect.min_rows != 1 else ''}"
    if expect.compare is not None:
        return f"first value {expect.compare.op} {_number_text(expect.compare.value)}"
    return f"first value equals {expect.equals!r}"


def check(name: str, expect: Expectation, rows: list[tuple[Any, ...]], seconds: float) -> ProbeOutcome:
    """The outcome of a probe whose query returned `rows` (at most what the expectation needs)."""
    words = expected_words(expect)
    if expect.min_rows is not None:
        got = len(rows)
        observed = f"at least {got} rows" if got >= expect.min_rows else f"{got} row{'s' if got != 1 else ''}"
        result: Result = "Passed" if got >= expect.min_rows else "Failed"
        return ProbeOutcome(name, result, words, observed, None if result == "Passed" else f"expected {words}", seconds)
    if not rows or not rows[0]:
        return ProbeOutcome(name, "Failed", words, "no rows", f"expected {words}, the query returned no rows", seconds)
    value = rows[0][0]
    observed = bounded(value_text(value), OBSERVED_MAX)
    if expect.compare is not None:
        number = as_number(value)
        if number is None:
            return ProbeOutcome(
                name, "Failed", words, observed, f"expected {words}, got {observed} (not a number)", seconds
            )
        ok = _compare(number, expect.compare.op, expect.compare.value)
    else:
        ok = value_text(value) == expect.equals
    message = None if ok else f"expected {words}, got {observed}"
    return ProbeOutcome(name, "Passed" if ok else "Failed", words, observed, message, seconds)


def error(name: str, expect: Expectation, message: str, seconds: float) -> ProbeOutcome:
    """A probe whose query did not run to the end (a syntax error, a missing table, a timeout)."""
    return ProbeOutcome(name, "Error", expected_words(expect), None, bounded(message), seconds)


def value_text(value: Any) -> str:
    """A value as `equals` compares it: booleans true/false, NULL, numbers and dates as SQL prints them."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError):
        return None
    return number if math.isfinite(number) else None


def _compare(a: float, op: str, b: float) -> bool:
    return {
        "<": a < b,
        "<=": a <= b,
        "==": a == b,
        "!=": a != b,
        ">=": a >= b,
        ">": a > b,
    }[op]


def _number_text(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


# --- what status says ---------------------------------------------------------------------------------


def recorded(status: dict[str, Any], generation: int | None) -> dict[str, Any] | None:
    """The verification already made for this generation (its probes run once per generation)."""
    cond = condition(status.get("conditions"), VERIFIED) or {}
    done = cond.get("status") in ("True", "False") and cond.get("observedGeneration") == generation
    found = status.get("verification")
    return found if done and isinstance(found, dict) and found.get("result") else None


def shown(view: View, verification: dict[str, Any]) -> View:
    """The status of a database verified earlier: the result stands until the spec changes."""
    fields = {**view.fields, "verification": verification}
    message = str(verification.get("message") or "")
    if verification.get("result") == "Passed":
        return View("Available", "True", "Verified", f"{view.message}; {message}", fields, view.conditions)
    reason = str(verification.get("reason") or "VerificationFailed")
    return View("Failed", "False", reason, message, fields, view.conditions)


def waiting(view: View, why: str) -> View:
    """Available, not verified yet: e.g. the master password is still being set."""
    cond = Cond(VERIFIED, "Unknown", "Waiting", why)
    return View(
        "Verifying", "False", "Waiting", f"{view.message}; verifying once {why}", view.fields, (*view.conditions, cond)
    )


def decide(
    view: View, spec: Verify, attempt: Attempt, started: datetime, now: datetime, info: dict[str, Any]
) -> tuple[View, float | None]:
    """The status after an attempt, and when to try again (None: verified or failed for good). `info`:
    engine, database and TLS mode, for status."""
    within = parse_duration(spec.connect_within)
    base = {**info, "startedAt": timestamp(started)}
    if attempt.unreachable and not attempt.final and now - started < within:
        delay = retry_delay(now - started)
        text = bounded(attempt.message)
        message = (
            f"{view.message}; verifying: cannot connect yet ({text}); trying again in {delay:.0f}s until "
            f"{timestamp(started + within)} (connectWithin {spec.connect_within})"
        )
        verification = {**base, "reason": attempt.unreachable, "message": text}
        cond = Cond(VERIFIED, "Unknown", "Connecting", bounded(message, 1024))
        fields = {**view.fields, "verification": verification}
        return View("Verifying", "False", "Connecting", message, fields, (*view.conditions, cond)), delay
    if attempt.unreachable:
        tried = "" if attempt.final else f" (tried for connectWithin {spec.connect_within})"
        message = bounded(f"verification failed: {attempt.message}{tried}")
        return _failed(view, base, attempt.unreachable, message, [], now)
    probes = [o.as_status() for o in attempt.outcomes]
    bad = [o for o in attempt.outcomes if o.result != "Passed"]
    if bad:
        reason = "ProbeFailed" if any(o.result == "Failed" for o in bad) else "ProbeError"
        detail = "; ".join(f"probe {o.name}: {o.message}" for o in bad)
        return _failed(view, base, reason, bounded(f"verification failed: {detail}"), probes, now)
    names = ", ".join(o.name for o in attempt.outcomes)
    message = f"verified: {len(probes)} probe{'s' if len(probes) != 1 else ''} passed ({names})"
    verification = {**base, "result": "Passed", "reason": "Verified", "message": bounded(message)}
    verification |= {"completedAt": timestamp(now), "probes": probes}
    cond = Cond(VERIFIED, "True", "Verified", bounded(message, 1024))
    fields = {**view.fields, "verification": verification}
    conditions = (*view.conditions, cond)
    return View("Available", "True", "Verified", f"{view.message}; {bounded(message)}", fields, conditions), None


def _failed(
    view: View, base: dict[str, Any], reason: str, message: str, probes: list[dict[str, Any]], now: datetime
) -> tuple[View, float | None]:
    """Failed, with the reason: the database is still removed per deletionPolicy when its ttl is up."""
    verification = {**base, "result": "Failed", "reason": reason, "message": message}
    verification |= {"completedAt": timestamp(now), "probes": probes or None}
    cond = Cond(VERIFIED, "False", reason, message)
    fields = {**view.fields, "verification": verification}
    return View("Failed", "False", reason, message, fields, (*view.conditions, cond)), None


def retry_delay(elapsed: timedelta) -> float:
    """Tries soon after the database became available, then less often: 2 s up to a minute apart."""
    return float(min(60.0, max(2.0, elapsed.total_seconds() / 4)))
