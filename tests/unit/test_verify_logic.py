"""Restore verification's pure decisions (operator/dbops/restore/verify.py): what a probe's rows mean, what
status says after an attempt, and that only the value checked (bounded) ever reaches it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from dbops.core.status import View
from dbops.models import Expectation, Verify
from dbops.restore import verify

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
AVAILABLE = View("Available", "True", "Available", "instance x is available at x.rds", {"endpoint": "x.rds"})
INFO = {"engine": "postgres", "database": "orders", "tls": "verify-full"}


def expect(**kw: Any) -> Expectation:
    return Expectation.model_validate(kw)


@pytest.mark.parametrize(
    ("expectation", "rows", "result", "observed"),
    [
        ({"minRows": 2}, [(1,), (2,)], "Passed", "at least 2 rows"),
        ({"minRows": 3}, [(1,)], "Failed", "1 row"),
        ({"minRows": 1}, [], "Failed", "0 rows"),
        ({"compare": {"op": ">=", "value": 1000}}, [(Decimal("1000"),)], "Passed", "1000"),
        ({"compare": {"op": ">", "value": 1000}}, [(999,)], "Failed", "999"),
        ({"compare": {"op": "==", "value": 0.5}}, [("0.5",)], "Passed", "0.5"),
        ({"compare": {"op": "!=", "value": 0}}, [(None,)], "Failed", "NULL"),
        ({"compare": {"op": "<", "value": 1}}, [("abc",)], "Failed", "abc"),
        ({"compare": {"op": "<=", "value": 1}}, [], "Failed", "no rows"),
        ({"equals": "true"}, [(True,)], "Passed", "true"),
        ({"equals": "2026-11-30"}, [(datetime(2026, 11, 30).date(),)], "Passed", "2026-11-30"),
        ({"equals": "ok"}, [("not ok",)], "Failed", "not ok"),
    ],
)
def test_expectations(expectation: dict[str, Any], rows: list[tuple[Any, ...]], result: str, observed: str) -> None:
    out = verify.check("p", expect(**expectation), rows, 0.1)
    assert (out.result, out.observed) == (result, observed)
    assert (out.message is None) == (result == "Passed")


def test_only_the_checked_value_reaches_status_and_it_is_bounded() -> None:
    rows = [("x" * 500, "secret column"), ("second row",)]
    out = verify.check("p", expect(equals="y"), rows, 0.1)
    assert out.observed is not None and len(out.observed) <= verify.OBSERVED_MAX
    assert "secret column" not in repr(out) and "second row" not in repr(out)
    counted = verify.check("p", expect(minRows=2), rows, 0.1)
    assert "x" * 10 not in repr(counted)  # a row count shows no row


def test_an_error_message_is_one_bounded_line() -> None:
    out = verify.error("p", expect(minRows=1), 'ERROR: relation "invoices" does not exist\nLINE 1: ...' * 50, 1.0)
    assert out.result == "Error" and "\n" not in (out.message or "") and len(out.message or "") <= 512


def spec(**kw: Any) -> Verify:
    return Verify.model_validate({"probes": [{"name": "p", "query": "select 1", "expect": {"minRows": 1}}], **kw})


def test_unreachable_is_retried_until_connect_within_then_fails() -> None:
    attempt = verify.Attempt(unreachable="ConnectFailed", message="127.0.0.1:5432: connection refused")
    early, again = verify.decide(AVAILABLE, spec(connectWithin="10m"), attempt, NOW, NOW + timedelta(seconds=30), INFO)
    assert early.phase == "Verifying" and again is not None and 2 <= again <= 60
    assert early.fields["verification"]["reason"] == "ConnectFailed" and "result" not in early.fields["verification"]
    late, again = verify.decide(AVAILABLE, spec(connectWithin="10m"), attempt, NOW, NOW + timedelta(minutes=11), INFO)
    assert late.phase == "Failed" and late.reason == "ConnectFailed" and again is None
    assert "connection refused" in late.message and "connectWithin 10m" in late.message
    assert late.fields["verification"]["result"] == "Failed"


def test_a_final_failure_is_not_retried() -> None:
    attempt = verify.Attempt(unreachable="UnsupportedEngine", message="oracle-ee is none of them", final=True)
    view, again = verify.decide(AVAILABLE, spec(), attempt, NOW, NOW, INFO)
    assert view.phase == "Failed" and view.reason == "UnsupportedEngine" and again is None


def test_results_and_what_status_shows_on_later_passes() -> None:
    passed = verify.ProbeOutcome("count", "Passed", "at least 1 row", "at least 1 rows", None, 0.01)
    view, _ = verify.decide(AVAILABLE, spec(), verify.Attempt(outcomes=(passed,)), NOW, NOW, INFO)
    assert (view.phase, view.ready, view.reason) == ("Available", "True", "Verified")
    cond = view.conditions[-1]
    assert (cond.type, cond.status) == (verify.VERIFIED, "True")
    status = {
        "verification": view.fields["verification"],
        "conditions": [{"type": "Verified", "status": "True", "observedGeneration": 1}],
    }
    assert verify.recorded(status, 1) == view.fields["verification"]
    assert verify.recorded(status, 2) is None  # a new generation is verified again
    shown = verify.shown(AVAILABLE, view.fields["verification"])
    assert shown.phase == "Available" and "1 probe passed" in shown.message

    failed = verify.ProbeOutcome("count", "Failed", "at least 9 rows", "1 row", "expected at least 9 rows", 0.01)
    errored = verify.ProbeOutcome("other", "Error", "at least 1 row", None, "syntax error", 0.01)
    view, _ = verify.decide(AVAILABLE, spec(), verify.Attempt(outcomes=(failed, errored)), NOW, NOW, INFO)
    assert (view.phase, view.reason) == ("Failed", "ProbeFailed")
    assert "probe count: expected at least 9 rows; probe other: syntax error" in view.message
    only_errors, _ = verify.decide(AVAILABLE, spec(), verify.Attempt(outcomes=(errored,)), NOW, NOW, INFO)
    assert only_errors.reason == "ProbeError"
    assert verify.shown(AVAILABLE, view.fields["verification"]).phase == "Failed"


def test_engine_families() -> None:
    assert verify.family("aurora-postgresql") == verify.family("postgres") == "postgresql"
    assert verify.family("aurora-mysql") == verify.family("mariadb") == verify.family("mysql") == "mysql"
    assert verify.family("sqlserver-ee") is None
