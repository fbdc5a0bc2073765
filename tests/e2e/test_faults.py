"""Faults survived, through real processes: the operator killed with SIGKILL at every point of a restore,
two replicas with the active one killed mid-restore, and outages of kube-apiserver (5 minutes), etcd
(1 minute) and AWS (refusing, then hanging, 2 minutes), with a stalled loop failing liveness.

After each: exactly one database per object, every object reaches its right end state, and the
operator was not restarted to get there."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.conftest import operator_env
from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support import kube
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.operator import Operator
from tests.support.proxy import proxy_to

RESTORE = "RestoreDBInstanceFromDBSnapshot"


def instances(rds: Any, ident: str) -> int:
    return len(rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [ident]}])["DBInstances"])


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached in {timeout}s")


# --- kill -9 --------------------------------------------------------------------------------------------

KILL_POINTS = ("just-applied", "pending", "restore-call-in-flight", "restoring", "mid-restore")


def test_killed_at_any_point_of_a_restore_twenty_times(
    cluster: kube.Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "kill")
    fake_aws.configure(create_seconds=3)
    fake_aws.reset_calls()
    own_operator.start()
    for n in range(20):
        point = KILL_POINTS[n % len(KILL_POINTS)]
        name, target = f"k{n}", f"kill-copy-{n}"
        if point == "restore-call-in-flight":
            fake_aws.delay(RESTORE, seconds=4)  # done in AWS at once, answered late: the kill comes first
        cluster.apply(dbrestore(name, own_namespace, {"dbSnapshot": src.snapshot_identifier}, target))
        _reach(point, cluster, fake_aws, name, own_namespace, calls_before=n)
        own_operator.kill()  # SIGKILL: no cleanup, as in a node failure
        own_operator.start()
        obj = wait_phase(cluster, name, own_namespace, "Available", "Failed", timeout=90)
        assert obj["status"]["phase"] == "Available", (point, obj["status"])
        assert instances(rds, target) == 1, point
        assert fake_aws.calls()[RESTORE] == n + 1, (point, fake_aws.calls())  # never a second create


def _reach(point: str, cluster: kube.Cluster, fake: FakeAWS, name: str, namespace: str, calls_before: int) -> None:
    def phase() -> str | None:
        proc = cluster.kubectl("get", "dbrestore", name, "-n", namespace, "-o", "json", check=False)
        return (json.loads(proc.stdout).get("status") or {}).get("phase") if proc.returncode == 0 else None

    if point == "pending":
        until(lambda: phase() == "Pending", 30, "Pending")
    elif point == "restore-call-in-flight":
        until(lambda: fake.calls().get(RESTORE, 0) > calls_before, 30, "the restore call in AWS")
    elif point == "restoring":
        until(lambda: phase() == "Restoring", 30, "Restoring")
    elif point == "mid-restore":
        until(lambda: phase() == "Restoring", 30, "Restoring")
        time.sleep(1.5)


# --- two replicas ---------------------------------------------------------------------------------------


def test_two_replicas_hand_over_within_15s_without_a_second_create(
    cluster: kube.Cluster, fake_aws: FakeAWS, own_namespace: str, tmp_path: pathlib.Path
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "pair")
    fake_aws.configure(create_seconds=20)
    fake_aws.reset_calls()
    env = operator_env(
        fake_aws,
        cluster,
        DBOPS_NAMESPACE=own_namespace,
        DBOPS_LEADER_ELECTION="true",
        DBOPS_LEASE_NAMESPACE=own_namespace,
    )
    replicas = {n: Operator(tmp_path / n, {**env, "POD_NAME": n}) for n in ("replica-a", "replica-b")}
    for workdir in (tmp_path / "replica-a", tmp_path / "replica-b"):
        workdir.mkdir()
    try:
        for op in replicas.values():
            op.start()
        holder = lambda: (cluster.get("lease", "dbops-operator", own_namespace)["spec"] or {}).get("holderIdentity")  # noqa: E731
        leader = until(
            lambda: cluster.kubectl("get", "lease", "-n", own_namespace, check=False).returncode == 0 and holder(),
            60,
            "a leader",
        )
        for n in range(10):
            cluster.apply(dbrestore(f"p{n}", own_namespace, {"dbSnapshot": src.snapshot_identifier}, f"pair-copy-{n}"))
        until(lambda: fake_aws.calls().get(RESTORE, 0) == 10, 60, "10 restore calls")
        killed = time.monotonic()
        replicas[leader].kill()
        other = until(lambda: (h := holder()) != leader and h, 30, "the other replica leading")
        handover = time.monotonic() - killed
        print(f"\nhandover after SIGKILL of the leader: {handover:.1f}s (to {other})")
        assert handover < 15, handover
        for n in range(10):
            obj = wait_phase(cluster, f"p{n}", own_namespace, "Available", "Failed", timeout=120)
            assert obj["status"]["phase"] == "Available", obj["status"]
            assert instances(rds, f"pair-copy-{n}") == 1
        assert fake_aws.calls()[RESTORE] == 10  # zero duplicate create calls
    finally:
        for op in replicas.values():
            op.stop()


# --- outages --------------------------------------------------------------------------------------------

API_DOWN, ETCD_DOWN, AWS_REFUSING, AWS_HANGING = 300, 60, 60, 60


def _restores(cluster: kube.Cluster, namespace: str, snapshot: str, prefix: str, count: int) -> list[str]:
    names = [f"{prefix}-{n}" for n in range(count)]
    for name in names:
        cluster.apply(dbrestore(name, namespace, {"dbSnapshot": snapshot}, name))
    return names


def _all_available(cluster: kube.Cluster, namespace: str, names: list[str], rds: Any, timeout: float) -> None:
    for name in names:
        obj = wait_phase(cluster, name, namespace, "Available", "Failed", timeout=timeout)
        assert obj["status"]["phase"] == "Available", (name, obj["status"])
        assert instances(rds, name) == 1, name


def _own_cluster_scenario(
    base: pathlib.Path, fake: FakeAWS, snapshot: str, prefix: str, process: str, seconds: int
) -> str:
    """A cluster of its own (the outage must not touch the other tests'), 10 restores in flight, then
    `process` (kube-apiserver or etcd) down for `seconds`: RDS finishes meanwhile; afterwards every object
    is Available without a restart of the operator."""
    cluster = kube.start(base / "k8s")
    op = Operator(base, operator_env(fake, cluster, DBOPS_NAMESPACE="outage"))
    try:
        kube.install_crds(cluster)
        cluster.kubectl("create", "namespace", "outage")
        op.start()
        pid = op.proc.pid if op.proc else 0
        names = _restores(cluster, "outage", snapshot, prefix, 10)
        for name in names:
            wait_phase(cluster, name, "outage", "Restoring", timeout=90)
        cluster.stop_process(process)
        time.sleep(seconds)
        cluster.start_process(process)
        until(cluster.ready, 120, f"{process} back")
        _all_available(cluster, "outage", names, fake.client("rds"), timeout=120)
        assert op.proc is not None and op.proc.pid == pid and op.proc.poll() is None  # no restart
        health = requests.get(f"http://127.0.0.1:{op.liveness_port}/healthz", timeout=5)
        assert health.status_code == 200, health.text
        return f"{process} down {seconds}s: 10/10 Available, no restart"
    finally:
        op.stop()
        cluster.stop()


def _aws_scenario(cluster: kube.Cluster, fake: FakeAWS, snapshot: str, namespace: str, workdir: pathlib.Path) -> str:
    """AWS refusing connections, then accepting and never answering: the objects show it, and get there."""
    with proxy_to(fake.endpoint) as proxy:
        env = operator_env(fake, cluster, DBOPS_NAMESPACE=namespace, AWS_ENDPOINT_URL=proxy.url)
        op = Operator(workdir, {**env, "DBOPS_AWS_TIMEOUT": "5"})
        try:
            op.start()
            names = _restores(cluster, namespace, snapshot, "aws-out", 10)
            for name in names:
                wait_phase(cluster, name, namespace, "Restoring", timeout=90)
            proxy.set("refuse")
            time.sleep(AWS_REFUSING)
            proxy.set("hang")
            time.sleep(AWS_HANGING)
            reasons = {
                c["reason"]
                for name in names
                for c in cluster.get("dbrestore", name, namespace)["status"]["conditions"]
                if c["type"] == "Ready"
            }
            proxy.set("pass")
            _all_available(cluster, namespace, names, fake.client("rds"), timeout=180)
            assert op.proc is not None and op.proc.poll() is None
            outage = f"AWS refusing {AWS_REFUSING}s then hanging {AWS_HANGING}s"
            return f"{outage}: 10/10 Available; Ready said {sorted(reasons)}"
        finally:
            op.stop()


def _stalled_scenario(
    cluster: kube.Cluster, fake: FakeAWS, snapshot: str, namespace: str, workdir: pathlib.Path
) -> str:
    """One worker, an AWS call that hangs longer than the stall limit: /healthz fails (so the kubelet would
    restart the pod), and recovers once the call returns."""
    with proxy_to(fake.endpoint) as proxy:
        env = operator_env(fake, cluster, DBOPS_NAMESPACE=namespace, AWS_ENDPOINT_URL=proxy.url)
        extra = {"DBOPS_MAX_WORKERS": "1", "DBOPS_AWS_TIMEOUT": "600", "DBOPS_STALL_SECONDS": "10"}
        op = Operator(workdir, {**env, **extra})
        try:
            op.start()
            proxy.set("hang")
            _restores(cluster, namespace, snapshot, "stall", 2)
            healthz = lambda: requests.get(f"http://127.0.0.1:{op.liveness_port}/healthz", timeout=5)  # noqa: E731
            # (a Response is falsy when not ok: compare its status, keep its body)
            failed = until(lambda: (r := healthz()).status_code == 500 and r.json(), 90, "/healthz failing")
            proxy.set("pass")
            until(lambda: healthz().status_code == 200, 120, "/healthz ok again")
            return f"stalled loop: /healthz said {failed['problems']}"
        finally:
            op.stop()


@pytest.mark.side
@pytest.mark.timeout(1500)
def test_outages_of_the_api_server_etcd_and_aws_and_a_stalled_loop(
    cluster: kube.Cluster, fake_aws: FakeAWS, tmp_path: pathlib.Path
) -> None:
    """The four run at once (each on its own namespace, or cluster): the longest, 5 minutes of
    kube-apiserver away, sets the test's length."""
    src = seed_instance(fake_aws.client("rds"), "out")
    fake_aws.configure(create_seconds=20)
    aws_ns, stall_ns = cluster.create_namespace("own"), cluster.create_namespace("own")
    for d in ("api", "etcd", "aws", "stall"):
        (tmp_path / d).mkdir()
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(
                _own_cluster_scenario,
                tmp_path / "api",
                fake_aws,
                src.snapshot_identifier,
                "api-out",
                "kube-apiserver",
                API_DOWN,
            ),
            pool.submit(
                _own_cluster_scenario,
                tmp_path / "etcd",
                fake_aws,
                src.snapshot_identifier,
                "etcd-out",
                "etcd",
                ETCD_DOWN,
            ),
            pool.submit(_aws_scenario, cluster, fake_aws, src.snapshot_identifier, aws_ns, tmp_path / "aws"),
            pool.submit(_stalled_scenario, cluster, fake_aws, src.snapshot_identifier, stall_ns, tmp_path / "stall"),
        ]
        results = [f.result() for f in futures]
    print("\n" + "\n".join(results))
    for ns in (aws_ns, stall_ns):  # their operators are gone: finalizers are let go after a short wait
        kube.delete_all(cluster, ns, "dbrestores.dbops.dev", timeout=10)
