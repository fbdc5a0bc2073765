"""DBRestoreSchedule's pure decisions: cron times in time zones across daylight-saving changes
(dbops/schedule/cron.py), what a pass starts, skips, replaces and prunes (plan.py), and each run's evidence
from its DBRestore (runs.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dbops.core.types import SpecError
from dbops.models import DBRestoreScheduleSpec
from dbops.schedule import cron, plan, runs


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def times(expr: str, zone: str, start: datetime, count: int) -> list[datetime]:
    c, out, moment = cron.parse(expr, zone), [], start
    for _ in range(count):
        nxt = cron.after(c, moment)
        assert nxt is not None
        out.append(nxt)
        moment = nxt
    return out


# --- cron: time zones and daylight saving ----------------------------------------------------------


def test_a_daily_run_in_the_hour_spring_skips_runs_when_the_clock_jumps() -> None:
    # Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    got = times("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), 3)
    assert got == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
    # America/New_York, 2026-03-08: the same, five hours behind UTC before and four after.
    got = times("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), 2)
    assert got == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]


def test_a_daily_run_in_the_hour_autumn_repeats_runs_once() -> None:
    # Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice, the run once.
    got = times("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24, 12), 3)
    assert got == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30), utc(2026, 10, 27, 1, 30)]


def test_a_run_every_half_hour_runs_in_both_halves_of_the_repeated_hour_with_names_of_its_own() -> None:
    got = times("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 50), 6)
    # 02:00 and 02:30 CEST, then 02:00 and 02:30 CET, then 03:00 CET: six distinct instants.
    assert got == [utc(2026, 10, 25, 0, 0) + timedelta(minutes=30 * n) for n in range(6)]
    assert len({cron.run_suffix(t) for t in got}) == 6  # the run names are in UTC: never the same twice


def test_the_schedule_is_read_in_its_time_zone_and_named_in_utc() -> None:
    c = cron.parse("0 3 * * 1", "Asia/Tokyo")
    assert cron.after(c, utc(2026, 11, 29)) == utc(2026, 11, 29, 18, 0)  # Monday 03:00 in Tokyo
    assert cron.run_suffix(utc(2026, 11, 29, 18, 0)) == "202611291800"
    assert c.words == "At 03:00 on Monday (Asia/Tokyo)"


def test_due_is_the_latest_time_in_the_span_and_the_missed_ones_before_it() -> None:
    c = cron.parse("* * * * *", "UTC")
    due = cron.due(c, utc(2026, 12, 1, 12, 0), utc(2026, 12, 1, 12, 0, 59))
    assert due.latest is None  # (since, until]: 12:00 itself was considered already
    due = cron.due(c, utc(2026, 12, 1, 12, 0), utc(2026, 12, 1, 12, 1))
    assert (due.latest, due.missed_count) == (utc(2026, 12, 1, 12, 1), 0)
    due = cron.due(c, utc(2026, 12, 1, 11, 0, 30), utc(2026, 12, 1, 12, 0, 10))
    assert due.latest == utc(2026, 12, 1, 12, 0) and due.missed_count == 59
    assert due.missed == [utc(2026, 12, 1, 11, 50) + timedelta(minutes=n) for n in range(cron.LISTED)]


@pytest.mark.parametrize(
    ("expr", "zone", "reason"),
    [
        ("61 * * * *", "UTC", "InvalidSchedule"),
        ("* * 31 2 *", "UTC", "InvalidSchedule"),
        ("* * * * *", "Mars/Olympus_Mons", "UnknownTimeZone"),
    ],
)
def test_what_cel_cannot_check_is_refused_in_words(expr: str, zone: str, reason: str) -> None:
    with pytest.raises(SpecError) as err:
        cron.parse(expr, zone)
    assert err.value.reason == reason and ("spec.schedule" in err.value.message or "spec.timeZone" in err.value.message)


# --- plan: what a pass does ------------------------------------------------------------------------

CREATED = utc(2026, 12, 1, 11, 59, 30)
TEMPLATE = {
    "source": {"dbSnapshot": "orders-snap"},
    "target": {"identifier": "orders-drill"},
    "deletionPolicy": "Delete",
    "ttl": "1h",
}


def sched(**kw: Any) -> DBRestoreScheduleSpec:
    return DBRestoreScheduleSpec.model_validate({"schedule": "* * * * *", "template": TEMPLATE, **kw})


def decide(
    spec: DBRestoreScheduleSpec,
    now: datetime,
    children: list[dict[str, Any]] | None = None,
    memory: runs.Memory | None = None,
    run_now: str | None = None,
    deleting: frozenset[str] = frozenset(),
) -> plan.Decision:
    c = cron.parse(spec.schedule, spec.time_zone)
    return plan.decide("nightly", spec, c, now, CREATED, children or [], memory or runs.Memory(), run_now, deleting)


def run(name: str, result: str, due: datetime, trigger: str = "schedule") -> dict[str, Any]:
    return {"name": name, "trigger": trigger, "scheduledTime": due.strftime("%Y-%m-%dT%H:%M:%SZ"), "result": result}


def test_nothing_is_due_before_the_schedule_existed_then_each_tick_starts_one_run() -> None:
    assert decide(sched(), utc(2026, 12, 1, 11, 59, 50)).create == []
    out = decide(sched(), utc(2026, 12, 1, 12, 0, 1))
    assert [(r.name, r.suffix, r.trigger) for r in out.create] == [("nightly-202612011200", "202612011200", "schedule")]
    assert out.last_schedule_time == utc(2026, 12, 1, 12, 0) and out.next_time == utc(2026, 12, 1, 12, 1)
    assert out.entries[-1]["result"] == "Running" and out.entries[-1]["target"] == "orders-drill-202612011200"


def test_a_restarted_operator_finds_the_run_and_does_not_start_it_again() -> None:
    child = run("nightly-202612011200", "Running", utc(2026, 12, 1, 12, 0))
    # The status that said so was never written (a crash): the run's DBRestore is the proof.
    assert decide(sched(), utc(2026, 12, 1, 12, 0, 40), [child]).create == []
    # ... and the status alone is one as well, once the DBRestore is gone.
    memory = runs.Memory(last_schedule_time=utc(2026, 12, 1, 12, 0))
    assert decide(sched(), utc(2026, 12, 1, 12, 0, 40), memory=memory).create == []


def test_forbid_skips_a_tick_while_a_run_is_going_and_replace_replaces_it() -> None:
    child = run("nightly-202612011200", "Running", utc(2026, 12, 1, 12, 0))
    out = decide(sched(), utc(2026, 12, 1, 12, 1, 1), [child])
    assert out.create == [] and [(e["name"], e["result"], e["reason"]) for e in out.entries] == [
        ("nightly-202612011201", "Skipped", "ConcurrencyForbid")
    ]
    out = decide(sched(concurrencyPolicy="Replace"), utc(2026, 12, 1, 12, 1, 1), [child])
    assert out.replace == ["nightly-202612011200"] and [r.name for r in out.create] == ["nightly-202612011201"]
    replaced = next(e for e in out.entries if e["name"] == "nightly-202612011200")
    assert (replaced["result"], replaced["reason"], replaced["scheduledTime"]) == (
        "Skipped",
        "Replaced",
        "2026-12-01T12:00:00Z",
    )
    finished = run("nightly-202612011200", "Passed", utc(2026, 12, 1, 12, 0))
    assert [r.name for r in decide(sched(), utc(2026, 12, 1, 12, 1, 1), [finished]).create] == ["nightly-202612011201"]


def test_runs_missed_past_the_starting_deadline_are_recorded_as_skipped() -> None:
    memory = runs.Memory(last_schedule_time=utc(2026, 12, 1, 12, 0))
    out = decide(sched(startingDeadline="10s"), utc(2026, 12, 1, 12, 3, 20), memory=memory)
    assert out.create == []
    assert [(e["name"], e["reason"]) for e in out.entries] == [
        ("nightly-202612011201", "Missed"),
        ("nightly-202612011202", "Missed"),
        ("nightly-202612011203", "MissedDeadline"),
    ]
    assert "startingDeadline 10s" in out.entries[-1]["message"] and out.last_schedule_time == utc(2026, 12, 1, 12, 3)
    # Within the deadline (or without one), the latest run due starts late; the earlier ones are missed.
    late = decide(sched(), utc(2026, 12, 1, 12, 3, 20), memory=memory)
    assert [r.name for r in late.create] == ["nightly-202612011203"]
    assert [e["reason"] for e in late.entries if e["result"] == "Skipped"] == ["Missed", "Missed"]


def test_suspend_starts_nothing_and_records_nothing_but_moves_on() -> None:
    out = decide(sched(suspend=True), utc(2026, 12, 1, 12, 5, 1))
    assert out.create == [] and out.entries == [] and out.next_time is None
    assert out.last_schedule_time == utc(2026, 12, 1, 12, 5)  # resumed, it does not make up for these


def test_run_now_starts_one_run_per_value_and_waits_under_forbid() -> None:
    quiet = sched(schedule="0 3 1 1 *")
    out = decide(quiet, utc(2026, 12, 1, 12, 0), run_now="1764590400")
    suffix = plan.run_now_suffix("1764590400")
    assert [(r.name, r.trigger) for r in out.create] == [(f"nightly-{suffix}", "run-now")] and out.run_now
    assert len(suffix) == 12 and suffix.startswith("now-")
    done = runs.Memory(last_run_now="1764590400")
    assert decide(quiet, utc(2026, 12, 1, 12, 0), memory=done, run_now="1764590400").create == []
    # Its DBRestore exists, the status was lost: not started again.
    child = run(f"nightly-{suffix}", "Running", utc(2026, 12, 1, 12, 0), "run-now")
    again = decide(quiet, utc(2026, 12, 1, 12, 1), [child], run_now="1764590400")
    assert again.create == [] and again.run_now == "1764590400"
    busy = run("nightly-202612011100", "Running", utc(2026, 12, 1, 11, 0))
    waits = decide(quiet, utc(2026, 12, 1, 12, 0), [busy], run_now="other")
    assert waits.create == [] and waits.run_now is None and "waits for run nightly-202612011100" in str(waits.waiting)
    # Suspended, a run asked for still starts: a person wants proof now.
    assert decide(sched(suspend=True), utc(2026, 12, 1, 12, 0, 1), run_now="x").create


def test_history_limits_delete_the_oldest_recorded_runs() -> None:
    children = [run(f"nightly-2026120112{m:02d}", "Passed", utc(2026, 12, 1, 12, m)) for m in range(4)]
    children.append(run("nightly-202612011204", "Failed", utc(2026, 12, 1, 12, 4)))
    children.append(run("nightly-202612011205", "Failed", utc(2026, 12, 1, 12, 5)))
    children.append(run("nightly-202612011206", "Passed", utc(2026, 12, 1, 12, 6)))  # not recorded yet
    memory = runs.Memory(runs=children[:-1])
    spec = sched(schedule="0 3 1 1 *", successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1)
    out = decide(spec, utc(2026, 12, 1, 12, 7), children, memory)
    assert sorted(out.prune) == ["nightly-202612011200", "nightly-202612011201", "nightly-202612011204"]
    going = decide(spec, utc(2026, 12, 1, 12, 7), children, memory, deleting=frozenset({"nightly-202612011200"}))
    assert "nightly-202612011200" not in going.prune  # being deleted already


def test_a_runs_dbrestore_is_the_template_with_a_target_of_its_own_owned_by_the_schedule() -> None:
    schedule = {"metadata": {"name": "nightly", "namespace": "team-a", "uid": "u-1"}}
    new = plan.NewRun("nightly-202612011200", "202612011200", "schedule", utc(2026, 12, 1, 12, 0))
    body = plan.child(schedule, TEMPLATE, "orders-drill", new)
    assert body["kind"] == "DBRestore" and body["metadata"]["name"] == "nightly-202612011200"
    assert body["spec"]["target"] == {"identifier": "orders-drill-202612011200"} and TEMPLATE["target"] == {
        "identifier": "orders-drill"
    }
    assert body["metadata"]["ownerReferences"][0] | {} == {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DBRestoreSchedule",
        "name": "nightly",
        "uid": "u-1",
        "controller": True,
    }
    assert body["metadata"]["labels"] == {runs.SCHEDULE_UID: "u-1"}
    annotations = body["metadata"]["annotations"]
    assert annotations[runs.RUN_TIME] == "2026-12-01T12:00:00Z" and annotations["dbops.dev/notify-slack"] == "off"


# --- runs: the evidence ----------------------------------------------------------------------------


def child_of(phase: str, verified: str | None = None, **status: Any) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True", "reason": phase, "message": f"{phase} now"}]
    if verified:
        conditions.append(
            {"type": "Verified", "status": verified, "reason": "Verified", "message": "m", "observedGeneration": 1}
        )
    return {
        "metadata": {
            "name": "nightly-202612011200",
            "generation": 1,
            "creationTimestamp": "2026-12-01T12:00:01Z",
            "annotations": {runs.RUN_TIME: "2026-12-01T12:00:00Z", runs.RUN_TRIGGER: "schedule"},
        },
        "spec": {"target": {"identifier": "orders-drill-202612011200"}, "verify": {"probes": []}},
        "status": {"phase": phase, "conditions": conditions, **status},
    }


def test_a_passed_run_carries_its_rpo_rto_and_probes() -> None:
    child = child_of(
        "Available",
        "True",
        source="snapshot:orders-snap",
        snapshotTime="2026-12-01T06:00:00Z",
        restoreCallTime="2026-12-01T12:00:03Z",
        completionTime="2026-12-01T12:10:01Z",
        verification={
            "result": "Passed",
            "completedAt": "2026-12-01T12:11:01Z",
            "probes": [{"name": "orders", "result": "Passed", "observed": "3"}],
        },
    )
    entry = runs.entry(child)
    assert entry["result"] == "Passed" and entry["rpoSeconds"] == 6 * 3600 + 3
    assert (entry["rtoAvailableSeconds"], entry["rtoVerifiedSeconds"]) == (600, 660)
    assert entry["probes"] == [{"name": "orders", "result": "Passed"}]  # no observed value in the schedule
    action, _, message, details = runs.record(entry)
    assert action == "drill-passed" and "RPO 6h00m03s" in message and "RTO 11m00s" in message
    assert details["rto_seconds"] == 660 and details["probes"] == "orders=Passed" and details["target"]


@pytest.mark.parametrize(
    ("phase", "verified", "result"),
    [
        ("Verifying", None, "Running"),
        ("Restoring", None, "Running"),
        ("Failed", "False", "Failed"),
        ("Failed", None, "Failed"),
        ("Expired", None, "Failed"),  # removed before it was verified
        ("Expired", "True", "Passed"),  # verified, then removed by its ttl: the evidence stays
    ],
)
def test_run_results(phase: str, verified: str | None, result: str) -> None:
    assert runs.result_of(child_of(phase, verified))[0] == result


def test_the_history_keeps_final_results_and_fails_runs_whose_dbrestore_went_early() -> None:
    previous = [run("a", "Passed", utc(2026, 12, 1, 10)), run("b", "Running", utc(2026, 12, 1, 11))]
    children = [run("a", "Failed", utc(2026, 12, 1, 10))]  # a final result stands
    history = runs.merge(previous, children, [run("c", "Running", utc(2026, 12, 1, 12))])
    assert [(r["name"], r["result"]) for r in history] == [("c", "Running"), ("b", "Failed"), ("a", "Passed")]
    assert history[1]["reason"] == "RunDeleted"
    memory = runs.Memory(runs=previous)
    assert [r["name"] for r in runs.newly_final(memory, history)] == ["b"]
    long = runs.merge([], [run(f"r{n:02d}", "Passed", utc(2026, 12, 1, 0, n)) for n in range(30)], [])
    assert len(long) == runs.HISTORY and long[0]["name"] == "r29"


def test_summary_of_the_latest_runs() -> None:
    history = [
        run("c", "Skipped", utc(2026, 12, 1, 12)),
        {**run("b", "Failed", utc(2026, 12, 1, 11)), "rtoAvailableSeconds": 90, "rpoSeconds": 30},
        {**run("a", "Passed", utc(2026, 12, 1, 10)), "verifiedAt": "2026-12-01T10:05:00Z"},
    ]
    out = runs.summary(history, runs.Memory(last_successful_time="2026-11-30T10:00:00Z"))
    assert out["lastResult"] == "Skipped" and out["lastRto"] == "1m30s" and out["lastRpoSeconds"] == 30
    assert out["lastSuccessfulTime"] == "2026-12-01T10:05:00Z"
