"""Benchmark: one operator with 10,000 objects, mostly Available (issue 12). Prints figures; asserts
only correctness (every object ends Available, one restore call per new object).

Run with `make bench PYTEST_ARGS="-k scale"`. BENCH_OBJECTS (10000) settled objects are applied while no
operator runs, and the fake AWS is given a database for each, tagged with the object's UID as the
operator tags what it creates, and a status as a previous operator left it: the steady state of a big
cluster after a restart, reached without 10,000 simulated restores. Then, with the operator as shipped
(default settings, one process):

* startup: seconds from exec to /healthz answering 200, and to /readyz (watches listed);
* the first pass over 10,000 objects whose status (Available, as a previous operator left it) and
  databases exist: its AWS calls and how long until every object had its pass;
* BENCH_NEW (200) restores applied at once on top: apply -> restore call p50/p99, and RDS "available"
  -> object Available p50/p99;
* idle for BENCH_IDLE_SECONDS (120): CPU share of one core and AWS calls per minute;
* peak RSS (VmHWM) and RSS at rest, from which manifests/base/deployment.yaml's limits are sized.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
import yaml

from dbops import settings
from dbops.core.types import ownership_tags
from tests.bench.test_restore_bench import TimedWatch, cpu_seconds, peak_rss_mib, percentile
from tests.e2e.restore_helpers import dbrestore
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import ROOT, Cluster, free_port
from tests.support.operator import Operator

OBJECTS = int(os.environ.get("BENCH_OBJECTS", "10000"))
NEW = int(os.environ.get("BENCH_NEW", "200"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "120"))
# The slow resync (and orphan sweep) interval; default: the operator's own. The idle window sees a resync
# only when it is longer than this, e.g. BENCH_RESYNC_INTERVAL=60 BENCH_IDLE_SECONDS=180.
RESYNC_INTERVAL = os.environ.get("BENCH_RESYNC_INTERVAL")
CREATE_SECONDS = 20.0
CHUNK = 500

pytestmark = [pytest.mark.bench, pytest.mark.timeout(3600)]


class PassWatch(TimedWatch):
    """Also notes each object whose status the operator has written (the seeded status has no endpoint)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.passed: set[str] = set()
        super().__init__(cluster, namespace)

    def _record(self, obj: dict[str, Any]) -> None:
        super()._record(obj)
        if (obj.get("status") or {}).get("endpoint"):
            self.passed.add(obj["metadata"]["name"])


def rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc status")


def apply_all(cluster: Cluster, docs: list[dict[str, Any]]) -> None:
    for start in range(0, len(docs), CHUNK):
        cluster.kubectl(
            "apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs[start : start + CHUNK]), timeout=600
        )


def uids(cluster: Cluster, namespace: str) -> dict[str, str]:
    listed = cluster.kubectl("get", "dbrestores", "-n", namespace, "-o", "json", timeout=300)
    return {o["metadata"]["name"]: o["metadata"]["uid"] for o in json.loads(listed.stdout)["items"]}


def settle(cluster: Cluster, namespace: str, names: list[str]) -> None:
    """The status a previous operator left: Available since its restore call (a restart's view)."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Available",
        "message": "available",
        "lastTransitionTime": when,
    }
    docs = [
        {
            "apiVersion": "dbops.dev/v1alpha1",
            "kind": "DBRestore",
            "metadata": {"name": n, "namespace": namespace},
            "status": {"phase": "Available", "restoreCallTime": when, "conditions": [ready]},
        }
        for n in names
    ]
    for start in range(0, len(docs), CHUNK):
        text = yaml.safe_dump_all(docs[start : start + CHUNK])
        cluster.kubectl(
            "apply",
            "--server-side",
            "--subresource=status",
            "--field-manager=bench",
            "-f",
            "-",
            input=text,
            timeout=600,
        )


def seed_owned_databases(rds: Any, namespace: str, owners: dict[str, str], snapshot: str) -> None:
    """A database per object, tagged exactly as the operator tags what it restores."""

    def one(name: str) -> None:
        rds.create_db_instance(
            DBInstanceIdentifier=f"s-{name}",
            Engine="postgres",
            DBInstanceClass="db.t3.micro",
            AllocatedStorage=20,
            MasterUsername="dbadmin",
            MasterUserPassword="not-a-secret-1",
            Tags=ownership_tags(owners[name], namespace, name, "DBRestore", source=f"snapshot {snapshot}"),
        )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, owners))


def started_to_healthy(
    cluster: Cluster, env: dict[str, str], workdir: pathlib.Path
) -> tuple[subprocess.Popen[bytes], float, float]:
    """Start `python -m dbops run` and time /healthz 200 and /readyz 200 from exec (polled every 10 ms)."""
    live = free_port()
    env = {**os.environ, **env, "DBOPS_LIVENESS_PORT": str(live), "DBOPS_METRICS_PORT": "0"}
    env.setdefault("DBOPS_AUDIT_URL", f"sqlite:///{workdir / 'audit.db'}")
    log = (workdir / "operator.log").open("ab")
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbops", "run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    healthy = ready = 0.0
    while not ready and time.monotonic() - began < 120:
        assert proc.poll() is None, (workdir / "operator.log").read_text()[-4000:]
        for path in ("healthz", "readyz"):
            try:
                ok = requests.get(f"http://127.0.0.1:{live}/{path}", timeout=0.5).ok
            except requests.RequestException:
                ok = False
            if ok and path == "healthz" and not healthy:
                healthy = time.monotonic() - began
            if ok and path == "readyz" and healthy:
                ready = time.monotonic() - began
        time.sleep(0.01)
    return proc, healthy, ready


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    began = time.monotonic()
    while not predicate():
        assert time.monotonic() - began < timeout, f"not {what} within {timeout:.0f}s"
        time.sleep(1)
    return time.monotonic() - began


def test_10000_objects_mostly_available(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str, tmp_path: pathlib.Path
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "scale-src")
    names = [f"s{i:05d}" for i in range(OBJECTS)]
    apply_all(cluster, [dbrestore(n, own_namespace, {"dbSnapshot": src.snapshot_identifier}, f"s-{n}") for n in names])
    fake_aws.configure(create_seconds=0)
    seed_owned_databases(rds, own_namespace, uids(cluster, own_namespace), src.snapshot_identifier)
    settle(cluster, own_namespace, names)
    fake_aws.configure(create_seconds=CREATE_SECONDS)
    fake_aws.reset_calls()

    env = {k: v for k, v in own_operator.env.items() if k not in ("DBOPS_POLL_INTERVAL", "DBOPS_RESYNC_INTERVAL")}
    if RESYNC_INTERVAL:
        env["DBOPS_RESYNC_INTERVAL"] = RESYNC_INTERVAL
    watch = PassWatch(cluster, own_namespace)
    proc, healthy, ready = started_to_healthy(cluster, env, tmp_path)
    try:
        settled_in = wait_until(lambda: len(watch.passed) >= OBJECTS, 1800, f"all {OBJECTS} passed")
        first_pass_calls = fake_aws.calls()

        fresh = [f"n{i:03d}" for i in range(NEW)]
        fake_aws.reset_calls()
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=yaml.safe_dump_all(
                [dbrestore(n, own_namespace, {"dbSnapshot": src.snapshot_identifier}, f"n-{n}") for n in fresh]
            ),
            timeout=300,
        )
        wait_until(lambda: len(watch.finished) >= OBJECTS + NEW, CREATE_SECONDS + 900, f"all {NEW} new ones Available")
        burst_calls = fake_aws.calls()
        created = {
            db["DBInstanceIdentifier"]: db["InstanceCreateTime"].timestamp()
            for page in rds.get_paginator("describe_db_instances").paginate(
                Filters=[{"Name": "db-instance-id", "Values": [f"n-{n}" for n in fresh]}]
            )
            for db in page["DBInstances"]
        }
        to_call = [created[f"n-{n}"] - watch.seen[n] for n in fresh]
        to_available = [watch.finished[n][0] - (created[f"n-{n}"] + CREATE_SECONDS) for n in fresh]

        time.sleep(10)  # the last status writes and events of the burst
        fake_aws.reset_calls()
        cpu_before, idle_began = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle = time.monotonic() - idle_began
        idle_cpu = (cpu_seconds(proc.pid) - cpu_before) / idle
        idle_by_op = fake_aws.calls()
        idle_calls = sum(idle_by_op.values()) * 60 / idle
        peak, rest = peak_rss_mib(proc.pid), rss_mib(proc.pid)
    finally:
        watch.stop()
        proc.terminate()
        proc.wait(timeout=30)

    assert {phase for _, phase in watch.finished.values()} == {"Available"}
    assert burst_calls.get("RestoreDBInstanceFromDBSnapshot") == NEW  # exactly one restore per new object
    assert not first_pass_calls.get("RestoreDBInstanceFromDBSnapshot")  # nothing settled is restored again

    defaults = settings.Settings()
    resync = float(RESYNC_INTERVAL or defaults.resync_interval)
    print(
        f"\n== {OBJECTS} settled DBRestores + {NEW} new, one operator, "
        f"{'default settings' if not RESYNC_INTERVAL else 'default settings but the resync'} "
        f"(poll {defaults.poll_interval:.0f}s, resync {resync:.0f}s)"
    )
    print(f"   startup: /healthz 200 after {healthy:.2f}s, /readyz after {ready:.2f}s")
    print(
        f"   first pass: all {OBJECTS} looked at and written {settled_in:.0f}s after start, "
        f"AWS calls {sum(first_pass_calls.values())} ({dict(first_pass_calls)})"
    )
    print(
        f"   {NEW} new at once: apply -> restore call p50 {percentile(to_call, 0.5):.2f}s "
        f"p99 {percentile(to_call, 0.99):.2f}s"
    )
    print(
        f"   {NEW} new at once: RDS available -> Available p50 {percentile(to_available, 0.5):.2f}s "
        f"p99 {percentile(to_available, 0.99):.2f}s"
    )
    print(
        f"   idle {idle:.0f}s: CPU {idle_cpu * 100:.2f}% of a core, AWS calls {idle_calls:.1f}/min "
        f"({dict(idle_by_op)}: {idle / resync:.1f} resyncs)"
    )
    print(f"   memory: peak RSS {peak:.0f} MiB, at rest {rest:.0f} MiB")
