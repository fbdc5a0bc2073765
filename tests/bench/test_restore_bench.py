"""Benchmark: many DBRestores applied at once (issue 3). Prints figures; asserts only correctness.

Run with `make bench` (BENCH_RESTORES=200 by default, BENCH_CREATE_SECONDS=20 of simulated RDS work).
The operator runs as shipped (its own poll interval setting, one process), against the real API server
and the fake AWS server. Figures printed:

* AWS API calls by operation (batched polling should keep Describe* far below one call per object);
* seconds from apply (the API server announcing the object) to the restore call (the DB's create time
  in AWS), p50/p99;
* seconds from the DB turning "available" in AWS to the object's phase Available, p50/p99;
* the operator's peak RSS (VmHWM).
"""

from __future__ import annotations

import datetime
import os
import pathlib
import resource
import statistics
import threading
import time
from typing import Any

import kubernetes
import pytest
import urllib3
import yaml

from dbops import settings
from tests.e2e.restore_helpers import dbrestore
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

COUNT = int(os.environ.get("BENCH_RESTORES", "200"))
CREATE_SECONDS = float(os.environ.get("BENCH_CREATE_SECONDS", "20"))
POLL_INTERVAL = os.environ.get("BENCH_POLL_INTERVAL")  # default: the operator's own default setting

pytestmark = pytest.mark.bench


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (fields 14 and 15 of /proc/PID/stat, in clock ticks)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """The CPU seconds each process has used, sampled every 0.2 s against the wall clock, so that the
    CPU of any window (apply to the last restore call, known only afterwards) can be read off."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.time(), {name: cpu_seconds(pid) for name, pid in self.pids.items()}))

    def spent(self, start: float, end: float) -> dict[str, float]:
        first = min(self.samples, key=lambda s: abs(s[0] - start))[1]
        last = min(self.samples, key=lambda s: abs(s[0] - end))[1]
        return {name: last[name] - first[name] for name in self.pids}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


class TimedWatch:
    """Every DBRestore event in a namespace with the wall-clock time it arrived (kubernetes client).

    The first time each object was seen and the first time it reached a final phase are all the
    benchmark needs; the watch resumes from its last resourceVersion when the server closes it.
    """

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.api = kubernetes.client.CustomObjectsApi(
            kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        )
        self.namespace = namespace
        self.seen: dict[str, float] = {}
        self.pending: dict[str, float] = {}  # first seen Pending: the object's first pass has written
        self.finished: dict[str, tuple[float, str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        version = None
        while not self._stop.is_set():
            stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
                self.api.list_namespaced_custom_object,
                "dbops.dev",
                "v1alpha1",
                self.namespace,
                "dbrestores",
                resource_version=version,
                timeout_seconds=60,
            )
            try:
                for event in stream:
                    self._record(event["object"])
                    version = event["object"]["metadata"]["resourceVersion"]
            except kubernetes.client.ApiException as err:
                if err.status == 410:  # Gone: the version is too old, list again
                    version = None
            except urllib3.exceptions.HTTPError:
                if self._stop.is_set():  # the cluster goes away at teardown
                    return

    def _record(self, obj: dict[str, Any]) -> None:
        when, name = time.time(), obj["metadata"]["name"]
        self.seen.setdefault(name, when)
        phase = (obj.get("status") or {}).get("phase")
        if phase == "Pending":
            self.pending.setdefault(name, when)
        if phase in ("Available", "Failed") and name not in self.finished:
            self.finished[name] = (when, phase)

    def stop(self) -> None:
        self._stop.set()


def test_200_restores_at_once(cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "bench-src")
    fake_aws.configure(create_seconds=CREATE_SECONDS)
    # As shipped: the tests' short poll and resync (a sweep of the region every 5 s) would be measured too.
    own_operator.env.pop("DBOPS_POLL_INTERVAL", None)
    own_operator.env.pop("DBOPS_RESYNC_INTERVAL", None)
    if POLL_INTERVAL:
        own_operator.env["DBOPS_POLL_INTERVAL"] = POLL_INTERVAL
    own_operator.start()
    assert own_operator.proc is not None
    fake_aws.reset_calls()
    watch = TimedWatch(cluster, own_namespace)
    time.sleep(1)  # the watch is established before the first object exists
    names = [f"b-{i:03d}" for i in range(COUNT)]
    docs = [dbrestore(n, own_namespace, {"dbSnapshot": src.snapshot_identifier}, f"bench-{n}") for n in names]
    assert fake_aws.pid is not None
    pids = {
        "kube-apiserver": cluster.process("kube-apiserver").pid,
        "etcd": cluster.process("etcd").pid,
        "operator": own_operator.proc.pid,
        "fake AWS": fake_aws.pid,
    }
    sampler = CpuSampler(pids)
    time.sleep(0.5)
    started, wall_started = time.monotonic(), time.time()
    kubectl_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs), timeout=300)
    applied_in = time.monotonic() - started
    kubectl_after = resource.getrusage(resource.RUSAGE_CHILDREN)

    deadline = time.monotonic() + CREATE_SECONDS + 900
    while time.monotonic() < deadline and len(watch.finished) < COUNT:
        time.sleep(1)
    total = time.monotonic() - started
    calls = fake_aws.calls()
    rss = peak_rss_mib(own_operator.proc.pid)
    watch.stop()
    sampler.stop()

    assert len(watch.finished) == COUNT, f"{COUNT - len(watch.finished)} objects never finished"
    assert {phase for _, phase in watch.finished.values()} == {"Available"}, watch.finished
    assert calls.get("RestoreDBInstanceFromDBSnapshot") == COUNT  # exactly one restore per object

    created = {
        db["DBInstanceIdentifier"]: datetime.datetime.fromisoformat(str(db["InstanceCreateTime"])).timestamp()
        for page in rds.get_paginator("describe_db_instances").paginate()
        for db in page["DBInstances"]
    }
    to_call, to_available, to_pending, pending_to_call = [], [], [], []
    for n in names:
        to_call.append(created[f"bench-{n}"] - watch.seen[n])
        if n in watch.pending:  # (a watch may skip a version: then the object is left out of the split)
            to_pending.append(watch.pending[n] - watch.seen[n])
            pending_to_call.append(created[f"bench-{n}"] - watch.pending[n])
        to_available.append(watch.finished[n][0] - (created[f"bench-{n}"] + CREATE_SECONDS))

    print(f"\n== {COUNT} DBRestores applied at once (kubectl apply: {applied_in:.1f}s), all Available in {total:.0f}s")
    print(
        f"   simulated RDS restore time {CREATE_SECONDS:.0f}s; operator poll interval "
        f"{POLL_INTERVAL or settings.Settings().poll_interval}s, resync {settings.Settings().resync_interval:.0f}s"
    )
    print("   AWS API calls by operation:")
    for op, count in sorted(calls.items(), key=lambda kv: -kv[1]):
        print(f"     {op:40s} {count:6d}")
    print(f"   apply -> restore call      p50 {percentile(to_call, 0.5):6.2f}s  p99 {percentile(to_call, 0.99):6.2f}s")
    print(
        f"     of which apply -> Pending (first pass) p50 {percentile(to_pending, 0.5):.2f}s "
        f"p99 {percentile(to_pending, 0.99):.2f}s, Pending -> restore call p50 "
        f"{percentile(pending_to_call, 0.5):.2f}s p99 {percentile(pending_to_call, 0.99):.2f}s "
        f"({len(to_pending)} of {COUNT} seen Pending)"
    )
    print(
        f"   RDS available -> Available p50 {percentile(to_available, 0.5):6.2f}s  "
        f"p99 {percentile(to_available, 0.99):6.2f}s  (mean {statistics.mean(to_available):.2f}s)"
    )
    print(f"   operator peak RSS {rss:.0f} MiB")
    # Is the burst bound by the machine? The CPU every process spent from apply to the last restore call,
    # against what the machine's cores offer in that time.
    window = max(created[f"bench-{n}"] for n in names) - wall_started
    spent = sampler.spent(wall_started, wall_started + window)
    spent["kubectl"] = sum(getattr(kubectl_after, f) - getattr(kubectl_before, f) for f in ("ru_utime", "ru_stime"))
    total_cpu, cores = sum(spent.values()), os.cpu_count() or 1
    print(
        f"   CPU from apply to the last restore call ({window:.1f}s): "
        + ", ".join(f"{name} {sec:.1f}s" for name, sec in spent.items())
        + f"; {total_cpu:.1f} CPU-s in all, {total_cpu / COUNT * 1000:.0f} ms per object, "
        f"{total_cpu / (cores * window) * 100:.0f}% of what {cores} cores offer in that time"
    )
