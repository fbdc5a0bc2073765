"""DBRestoreSchedule end to end: restore drills through the real API server, the operator as a process,
the fake AWS restoring snapshots whose data lives in the test PostgreSQL server.

Runs asked for with dbops.dev/run-now need no clock: the evidence, the history limits, Replace and the
auditor's CSV are proven with them. The semantics of the clock (one run per tick and none twice across a
restart, Forbid, suspend, a missed run past its deadline) are proven in one test that spans two minute
boundaries, with a schedule per case.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.drill_helpers import (
    GOOD_PROBES,
    MOTO_MANAGED_PASSWORD,
    SnapshotData,
    mariadb_over_tls,
    postgres_data,
    probes,
)
from tests.e2e.obs_helpers import SlackServer, audit_output, eventually, scrape, secret, value
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

PLURAL = "dbrestoreschedule"


@pytest.fixture
def pg_data() -> Iterator[SnapshotData]:
    yield from postgres_data()


def template(snapshot: str, prefix: str, verify: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"dbSnapshot": snapshot},
        "target": {"identifier": prefix},
        "deletionPolicy": "Delete",
        "ttl": "1h",
        **spec,
    }
    if verify is not None:
        body |= {"verify": verify, "masterPassword": {"secretRef": {"name": "drill-password"}}}
    return body


def schedule(name: str, namespace: str, tmpl: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DBRestoreSchedule",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"schedule": "0 3 1 1 *", "template": tmpl, **spec},  # yearly: only run-now runs
    }


def runs_of(cluster: Cluster, name: str, namespace: str) -> list[dict[str, Any]]:
    return list((cluster.get(PLURAL, name, namespace).get("status") or {}).get("runs") or [])


def wait_runs(
    cluster: Cluster, name: str, namespace: str, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 90
) -> list[dict[str, Any]]:
    obj = cluster.wait_for(
        PLURAL,
        name,
        namespace,
        lambda o: check((o.get("status") or {}).get("runs") or []),
        timeout=timeout,
        what="runs",
    )
    return list(obj["status"]["runs"])


def run_now(cluster: Cluster, name: str, namespace: str, token: str) -> None:
    cluster.kubectl("annotate", PLURAL, name, "-n", namespace, f"dbops.dev/run-now={token}", "--overwrite")


def children(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    out = cluster.kubectl("get", "dbrestore", "-n", namespace, "-o", "json").stdout
    return {o["metadata"]["name"]: o for o in json.loads(out)["items"]}


def finished(n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda runs: sum(r["result"] in ("Passed", "Failed") for r in runs) >= n


def audit_csv(operator: Operator, *args: str) -> list[dict[str, str]]:
    """The auditor's export, as they run it."""
    out = audit_output(f"sqlite:///{operator.workdir / 'audit.db'}", *args)
    return list(csv.DictReader(io.StringIO(out)))


def test_drills_prove_the_backup_and_keep_the_evidence(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str, pg_data: SnapshotData
) -> None:
    """Runs asked for with run-now: a passing drill (RPO, RTO, probes in the schedule's status), a failing
    one (the mismatch, a Slack message, an alertable metric), history limits that delete the oldest runs'
    DBRestores and so their databases, and the audit trail's CSV for an auditor."""
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "orders", master_username=pg_data.user)
    fake_aws.restores_to(src.snapshot_identifier, pg_data.host, pg_data.port)
    cluster.apply(secret("drill-password", namespace, password=pg_data.password))
    verify = {"database": pg_data.database, "tls": {"mode": "disable"}, "probes": GOOD_PROBES}
    tmpl = template(src.snapshot_identifier, "orders-drill", verify)
    with SlackServer() as slack:
        cluster.apply(secret("drill-slack", namespace, **{"webhook-url": slack.url()}))
        body = schedule("orders", namespace, tmpl, successfulRunsHistoryLimit=1, failedRunsHistoryLimit=1)
        body["metadata"]["annotations"] = {"dbops.dev/notify-slack": "drill-slack"}
        cluster.apply(body)
        cluster.wait_for(PLURAL, "orders", namespace, lambda o: (o.get("status") or {}).get("phase"), what="seen")

        run_now(cluster, "orders", namespace, "first")
        first = wait_runs(cluster, "orders", namespace, finished(1))[0]
        assert first["result"] == "Passed" and first["trigger"] == "run-now", first
        assert first["source"] == f"snapshot:{src.snapshot_identifier}" and first["target"].startswith(
            "orders-drill-now-"
        )
        assert first["rpoSeconds"] >= 0 and first["rtoVerifiedSeconds"] >= first["rtoAvailableSeconds"] >= 0
        assert [p["result"] for p in first["probes"]] == ["Passed"] * 3
        obj = cluster.get(PLURAL, "orders", namespace)
        st = obj["status"]
        assert st["lastResult"] == "Passed" and st["lastRto"] and st["lastSuccessfulTime"]
        assert st["lastRunNow"] == "first" and st["scheduleDescription"] == "At 03:00 on January 1 (UTC)"
        header, row = cluster.kubectl("get", "dbrs", "orders", "-n", namespace).stdout.splitlines()
        assert header.split() == [
            "NAME",
            "SCHEDULE",
            "LAST",
            "RUN",
            "LAST",
            "RESULT",
            "LAST",
            "RTO",
            "NEXT",
            "RUN",
            "AGE",
        ]
        assert st["nextScheduleTime"] in row and "<invalid>" not in row, row  # a time to come, as a timestamp

        run_now(cluster, "orders", namespace, "second")
        wait_runs(cluster, "orders", namespace, finished(2))
        # The failed drill: a probe whose expectation the data does not meet.
        bad = probes(("enough-orders", "SELECT id FROM orders", {"minRows": 1000}))
        patch = {"spec": {"template": {"verify": {**verify, "probes": bad}}}}
        cluster.kubectl("patch", PLURAL, "orders", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        run_now(cluster, "orders", namespace, "third")
        runs = wait_runs(cluster, "orders", namespace, finished(3))
        failed = runs[0]
        assert failed["result"] == "Failed" and failed["reason"] == "ProbeFailed", failed
        assert "expected at least 1000 rows" in failed["message"] and pg_data.password not in json.dumps(runs)
        obj = cluster.get(PLURAL, "orders", namespace)
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "LastRunFailed")

        # History limits: one passed and one failed run keep their DBRestore; the first passed one went, and
        # its database with it (deletionPolicy Delete).
        def kept() -> Any:
            names = set(children(cluster, namespace))
            return names if len(names) == 2 else None

        names = eventually(kept, timeout=60, what="the oldest run's DBRestore deleted")
        assert names == {runs[0]["name"], runs[1]["name"]}
        gone = runs[2]["target"]
        eventually(
            lambda: (
                not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [gone]}])["DBInstances"]
            ),
            what=f"{gone} deleted",
        )
        assert [r["result"] for r in runs_of(cluster, "orders", namespace)] == ["Failed", "Passed", "Passed"]

        # The failed drill was told to the schedule's Slack channel (its runs' own DBRestores stay quiet).
        texts = eventually(slack.texts, what="a Slack message")
        assert len(texts) == 1 and "restore drill FAILED" in texts[0] and "enough-orders=Failed" in texts[0], texts

    # Metrics: runs by outcome, RTO and RPO, and the least recent success (for "no drill passed in N days").
    samples = scrape(operator.metrics_port)
    assert value(samples, "dbops_drill_runs_total", outcome="passed") >= 2
    assert value(samples, "dbops_drill_runs_total", outcome="failed", reason="ProbeFailed") >= 1
    assert value(samples, "dbops_drill_rto_seconds_count", outcome="passed") >= 2
    assert value(samples, "dbops_drill_last_success_timestamp_seconds") > 0

    # The year's evidence in one file: a row per run, RTO and RPO in columns of their own.
    rows = eventually(
        lambda: (
            [
                r
                for r in audit_csv(operator, "--kind", "DBRestoreSchedule", "--since", "365d", "-o", "csv")
                if r["namespace"] == namespace
            ]
            or None
        ),
        what="drill records",
    )
    drills = [r for r in rows if r["action"].startswith("drill-")]
    assert [(r["action"], r["outcome"]) for r in drills] == [
        ("drill-passed", "succeeded"),
        ("drill-passed", "succeeded"),
        ("drill-failed", "failed"),
    ], rows
    assert all(r["rto_seconds"] and r["rpo_seconds"] and r["snapshot_time"] and r["target"] for r in drills)
    assert drills[2]["probes"] == "enough-orders=Failed" and drills[0]["source"].startswith("snapshot:")
    assert all(pg_data.password not in json.dumps(r) for r in rows)


def test_a_mariadb_drill_over_verify_full_tls_with_the_rds_managed_password_passes_then_fails_on_its_probe(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    """The MySQL path of a drill: the run's database answers with MariaDB's data, checked over TLS
    verify-full against the server's CA with the password RDS manages (the server checks it); a probe
    whose expectation the data does not meet fails the next run, the mismatch said, no secret shown."""
    for snapshot, verify in mariadb_over_tls(fake_aws, cluster, namespace):
        tmpl = {
            **template(snapshot, "shop-drill"),
            "verify": verify,
            "masterPassword": {"manageMasterUserPassword": True},
        }
        cluster.apply(schedule("shop", namespace, tmpl))
        cluster.wait_for(PLURAL, "shop", namespace, lambda o: (o.get("status") or {}).get("phase"), what="seen")

        run_now(cluster, "shop", namespace, "first")
        first = wait_runs(cluster, "shop", namespace, finished(1))[0]
        assert first["result"] == "Passed", first
        assert [p["result"] for p in first["probes"]] == ["Passed"] * 3
        verification = children(cluster, namespace)[first["name"]]["status"]["verification"]
        assert (verification["engine"], verification["tls"]) == ("mariadb", "verify-full"), verification

        bad = probes(("enough-orders", "SELECT id FROM orders", {"minRows": 1000}))
        patch = {"spec": {"template": {"verify": {**verify, "probes": bad}}}}
        cluster.kubectl("patch", PLURAL, "shop", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
        run_now(cluster, "shop", namespace, "second")
        failed = wait_runs(cluster, "shop", namespace, finished(2))[0]
        assert (failed["result"], failed["reason"]) == ("Failed", "ProbeFailed"), failed
        assert "expected at least 1000 rows" in failed["message"]
        shown = json.dumps(runs_of(cluster, "shop", namespace)) + json.dumps(cluster.events(namespace, "shop"))
        assert MOTO_MANAGED_PASSWORD not in shown
        assert fake_aws.calls().get("GetSecretValue", 0) >= 2  # each run read the managed password


def test_a_drill_that_cannot_connect_fails_with_the_reason_and_its_database_still_goes(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    """The drill database answers nowhere: the run fails with ConnectFailed in the schedule's status and the
    audit trail, and its ttl still removes the database per deletionPolicy (Snapshot: a final snapshot)."""
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "ledger")
    fake_aws.restores_to(src.snapshot_identifier, "127.0.0.1", 9)  # nothing listens on the discard port
    cluster.apply(secret("drill-password", namespace, password="not-a-real-one"))
    verify = {"connectWithin": "4s", "timeout": "2s", "tls": {"mode": "disable"}, "probes": GOOD_PROBES[:1]}
    tmpl = template(src.snapshot_identifier, "ledger-drill", verify, deletionPolicy="Snapshot")
    cluster.apply(schedule("ledger", namespace, tmpl))
    cluster.wait_for(PLURAL, "ledger", namespace, lambda o: (o.get("status") or {}).get("phase"), what="seen")
    run_now(cluster, "ledger", namespace, "today")
    (run,) = wait_runs(cluster, "ledger", namespace, finished(1))
    assert (run["result"], run["reason"]) == ("Failed", "ConnectFailed"), run
    assert "127.0.0.1:9" in run["message"] and "not-a-real-one" not in json.dumps(runs_of(cluster, "ledger", namespace))

    # The drill database's ttl is up (the fake AWS's clock moved on): it goes, with a final snapshot.
    fake_aws.age(run["target"], 7200)
    eventually(
        lambda: (
            not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [run["target"]]}])[
                "DBInstances"
            ]
        ),
        timeout=60,
        what=f"{run['target']} deleted",
    )
    snaps = rds.describe_db_snapshots(DBInstanceIdentifier=run["target"])["DBSnapshots"]
    assert len(snaps) == 1 and snaps[0]["DBSnapshotIdentifier"].startswith(f"{run['target']}-final-"), snaps
    assert [r["result"] for r in runs_of(cluster, "ledger", namespace)] == ["Failed"]  # the evidence stays
    rows = [r for r in audit_csv(operator, "--kind", "DBRestoreSchedule", "-o", "csv") if r["namespace"] == namespace]
    assert [(r["action"], r["reason"]) for r in rows if r["action"].startswith("drill-")] == [
        ("drill-failed", "ConnectFailed")
    ], rows


def test_replace_deletes_the_unfinished_run_for_the_new_one(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "slow")
    fake_aws.restores_to(src.snapshot_identifier, "127.0.0.1", 9, create_seconds=600)  # never done in time
    cluster.apply(
        schedule("slow", namespace, template(src.snapshot_identifier, "slow-drill"), concurrencyPolicy="Replace")
    )
    run_now(cluster, "slow", namespace, "1")
    first = wait_runs(cluster, "slow", namespace, lambda r: bool(r) and r[0]["result"] == "Running")[0]
    run_now(cluster, "slow", namespace, "2")
    runs = wait_runs(cluster, "slow", namespace, lambda r: any(x["result"] == "Skipped" for x in r))
    replaced = next(r for r in runs if r["name"] == first["name"])
    assert replaced["reason"] == "Replaced" and "concurrencyPolicy Replace" in replaced["message"]
    assert [r["result"] for r in runs if r["name"] != first["name"]] == ["Running"]
    eventually(lambda: first["name"] not in children(cluster, namespace), what="the replaced run's DBRestore gone")
    eventually(
        lambda: (
            not rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [first["target"]]}])[
                "DBInstances"
            ]
        ),
        what="the replaced run's database deleted",
    )


def seconds_into_minute() -> float:
    now = datetime.now(UTC)
    return now.second + now.microsecond / 1e6


def until_boundary(after: float = 0.0) -> None:
    """Sleep until `after` seconds past the next minute boundary."""
    time.sleep(60 - seconds_into_minute() + after)


@pytest.mark.side
def test_every_minute_one_run_per_tick_across_a_restart_with_forbid_suspend_and_a_missed_deadline(
    cluster: Cluster, own_operator: Operator, own_namespace: str, fake_aws: FakeAWS
) -> None:
    """Four schedules of `* * * * *` over two minute boundaries B1 and B2, with the operator killed between
    them and started again after B2: `plain` starts one run at B1 and one (late) for B2, and never one twice;
    `deadline` (startingDeadline 5s) runs at B1 and records B2 as skipped; `busy` (Forbid) skips both while
    its run-now run is still restoring; `paused` (suspend) starts nothing."""
    rds = fake_aws.client("rds")
    fast = seed_instance(rds, "fast")
    slow = seed_instance(rds, "slow")
    fake_aws.restores_to(slow.snapshot_identifier, "127.0.0.1", 9, create_seconds=900)
    own_operator.start()
    if seconds_into_minute() > 40:  # room before B1 to create all four and let the operator see them
        until_boundary(1)
    every = {"schedule": "* * * * *"}
    ns = own_namespace
    cluster.apply(schedule("plain", ns, template(fast.snapshot_identifier, "plain"), timeZone="Europe/Berlin", **every))
    cluster.apply(
        schedule("deadline", ns, template(fast.snapshot_identifier, "deadline"), startingDeadline="5s", **every)
    )
    busy = schedule("busy", ns, template(slow.snapshot_identifier, "busy"), **every)
    busy["metadata"]["annotations"] = {"dbops.dev/run-now": "at-creation"}
    cluster.apply(busy)
    cluster.apply(schedule("paused", ns, template(fast.snapshot_identifier, "paused"), suspend=True, **every))

    def tick_runs(name: str) -> list[str]:
        return sorted(n for n, o in children(cluster, ns).items() if n.startswith(f"{name}-2"))

    # B1: plain and deadline start a run each, busy skips (Forbid), paused does nothing.
    wait_runs(cluster, "plain", ns, finished(1), timeout=100)
    wait_runs(cluster, "deadline", ns, finished(1), timeout=30)
    busy_runs = wait_runs(cluster, "busy", ns, lambda r: any(x["result"] == "Skipped" for x in r), timeout=30)
    (b1,) = tick_runs("plain")
    b1_time = b1.removeprefix("plain-")
    assert [r["reason"] for r in busy_runs if r["result"] == "Skipped"] == ["ConcurrencyForbid"]
    assert any(r["trigger"] == "run-now" and r["result"] == "Running" for r in busy_runs)
    assert tick_runs("deadline") == [f"deadline-{b1_time}"] and tick_runs("busy") == []

    # The operator crashes, and is down at B2 for longer than deadline's startingDeadline.
    own_operator.kill()
    until_boundary(8)
    own_operator.start()

    plain = wait_runs(cluster, "plain", ns, finished(2), timeout=60)
    assert len(tick_runs("plain")) == 2 and tick_runs("plain")[0] == b1, tick_runs("plain")
    b2_time = tick_runs("plain")[1].removeprefix("plain-")
    due = [datetime.strptime(t, "%Y%m%d%H%M") for t in (b1_time, b2_time)]
    assert (due[1] - due[0]).total_seconds() == 60  # the next minute
    deadline = wait_runs(cluster, "deadline", ns, lambda r: any(x["result"] == "Skipped" for x in r), timeout=30)
    skipped = next(r for r in deadline if r["result"] == "Skipped")
    assert skipped["reason"] == "MissedDeadline" and skipped["name"] == f"deadline-{b2_time}", deadline
    assert tick_runs("deadline") == [f"deadline-{b1_time}"]
    busy_runs = wait_runs(cluster, "busy", ns, lambda r: sum(x["result"] == "Skipped" for x in r) == 2, timeout=30)
    assert {r["reason"] for r in busy_runs if r["result"] == "Skipped"} == {"ConcurrencyForbid"}
    assert runs_of(cluster, "paused", ns) == [] and tick_runs("paused") == []
    assert cluster.get(PLURAL, "paused", ns)["status"]["phase"] == "Suspended"

    # No run twice: a few passes later, still one DBRestore per tick, each restored once.
    time.sleep(3)
    assert len(tick_runs("plain")) == 2 and [r["result"] for r in plain] == ["Passed", "Passed"]
    assert fake_aws.calls()["RestoreDBInstanceFromDBSnapshot"] == 4  # plain x2, deadline x1, busy's run-now x1
