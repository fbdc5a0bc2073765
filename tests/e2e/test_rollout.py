"""A rolling update of the operator refuses no write (issue 12, "Always on"), measured.

What is emulated is the shipped Deployment (manifests/base/deployment.yaml): 2 replicas, RollingUpdate
with maxSurge 1 and maxUnavailable 0, one active replica by a Lease, every replica serving the validating
webhook with the certificate of the keys Secret, behind the Service dbops-webhook; the requester is
stamped inside the API server (the MutatingAdmissionPolicy, installed for the session by install_crds).

The test cluster has no kubelet and no Service routing, and a webhook URL names one port. So:
- the Service is a TCP forwarder (tests/support/proxy.Proxy) on 127.0.0.1:P, the URL every replica
  writes into the webhook configuration (DBOPS_WEBHOOK_HOST/PORT); each replica listens on a loopback
  address of its own, 127.0.0.N:P (DBOPS_WEBHOOK_ADDR), as a pod on its pod IP. The forwarder's
  endpoints are the replicas whose /readyz answered 200 (readinessProbe, EndpointSlice controller);
- the rollout, as the Deployment controller and the kubelet do it: start a new replica, wait until it is
  ready, add it to the endpoints, delete an old one: it leaves the endpoints ENDPOINT_LAG later (kube-proxy
  hears of a terminating pod a moment after), and gets SIGTERM after the shipped preStop sleep; the next new replica
  starts at once (a terminating pod counts for nothing against maxSurge), until two new replicas run.
Meanwhile alice, with a kubernetes client of her own, writes every WRITE_EVERY seconds what users write:
creates, spec patches (ttl, deletionPolicy), labels, deletes. Timings are printed, never asserted.
"""

from __future__ import annotations

import json
import math
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import kubernetes
import pytest
import yaml

from tests.e2e.obs_helpers import audit_rows, eventually, grant
from tests.e2e.restore_helpers import dbrestore, instances, wait_phase
from tests.support import kube
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.operator import Operator
from tests.support.proxy import Address, Proxy

RESTORE = "RestoreDBInstanceFromDBSnapshot"
REQUESTED_BY = "dbops.dev/requested-by"
LEASE = "dbops-operator"
WRITE_EVERY = 0.2
ENDPOINT_LAG = 1.0


def _pre_stop_seconds() -> float:
    """The Deployment's preStop sleep: the seconds between a pod's deletion and its SIGTERM."""
    docs = yaml.safe_load_all((kube.ROOT / "manifests" / "base" / "deployment.yaml").read_text())
    (deployment,) = [d for d in docs if d and d.get("kind") == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return float(container["lifecycle"]["preStop"]["sleep"]["seconds"])


PRE_STOP = _pre_stop_seconds()
OPS = ("create", "ttl", "label", "policy", "delete")


def client(kubeconfig: pathlib.Path) -> Any:
    return kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]


# --- the user ---------------------------------------------------------------------------------------------


@dataclass
class Write:
    op: str
    name: str
    at: float
    seconds: float
    error: str | None


@dataclass
class Writer:
    """alice at a steady pace: each write is timed, and any error is a refusal (every write she makes is
    valid, names an object that exists, and carries no resourceVersion that could conflict)."""

    api: kubernetes.client.CustomObjectsApi
    namespace: str
    snapshot: str
    writes: list[Write] = field(default_factory=list)
    created: dict[str, dict[str, Any]] = field(default_factory=dict)  # name: the object the create returned
    live: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        due = time.monotonic()
        for tick in range(10**6):
            if self._stop.is_set():
                return
            self._write(OPS[tick % len(OPS)], tick)
            due += WRITE_EVERY
            self._stop.wait(max(0.0, due - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()

    def _write(self, op: str, tick: int) -> None:
        if op == "create":
            name = f"r{len(self.created)}"
            body = dbrestore(
                name, self.namespace, {"dbSnapshot": self.snapshot}, f"roll-{name}", deletionPolicy="Delete"
            )
            made = self._timed(op, name, lambda: self._api("create_namespaced_custom_object", body))
            if made is not None:
                self.created[name] = made
                self.live.append(name)
            return
        if op == "delete" and (doomed := self._deletable()):
            if self._timed(op, doomed, lambda: self._api("delete_namespaced_custom_object", doomed)) is not None:
                self.live.remove(doomed)
                self.deleted.append(doomed)
            return
        if not self.live:
            return
        name = self.live[tick % len(self.live)]
        patch = {
            "ttl": {"spec": {"ttl": f"{2 + tick % 3}h"}},
            "policy": {"spec": {"deletionPolicy": ("Snapshot", "Delete")[tick % 2]}},
        }.get(op, {"metadata": {"labels": {"dbops-test/tick": str(tick)}}})
        self._timed(
            "label" if op == "delete" else op, name, lambda: self._api("patch_namespaced_custom_object", name, patch)
        )

    def _deletable(self) -> str | None:
        """The oldest object whose database is available (so that each one has had its restore call)."""
        if not self.live:
            return None
        name = self.live[0]
        try:
            obj = self._api("get_namespaced_custom_object", name)
        except Exception:  # a read, not a write: the tick writes a label instead
            return None
        return name if (obj.get("status") or {}).get("phase") == "Available" else None

    def _api(self, method: str, *args: Any) -> Any:
        return getattr(self.api, method)(
            "dbops.dev", "v1alpha1", self.namespace, "dbrestores", *args, _request_timeout=30
        )

    def _timed(self, op: str, name: str, call: Callable[[], Any]) -> Any:
        start = time.monotonic()
        result, error = None, None
        try:
            result = call()
        except kubernetes.client.ApiException as exc:
            error = f"{exc.status} {exc.reason}: {exc.body}"
        except Exception as exc:  # no answer at all is a refusal too
            error = f"{type(exc).__name__}: {exc}"
        self.writes.append(Write(op, name, start, time.monotonic() - start, error))
        return result


# --- the cluster's side: the Service, the Deployment controller, the kubelet ------------------------------


class LeaseWatch:
    """The Lease's holder, polled every 0.1 s: [(time, holder)] at every change."""

    def __init__(self, api: kubernetes.client.CoordinationV1Api, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.changes: list[tuple[float, str | None]] = []
        self._stop = threading.Event()
        threading.Thread(target=self._run, name="lease-watch", daemon=True).start()

    def holder(self) -> str | None:
        return self.changes[-1][1] if self.changes else None

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                spec = self.api.read_namespaced_lease(LEASE, self.namespace, _request_timeout=5).spec
                holder = spec.holder_identity if spec else None
            except Exception:  # not made yet, or a slow answer: look again
                continue
            if not self.changes or self.changes[-1][1] != holder:
                self.changes.append((time.monotonic(), holder))

    def handover(self, since: float, left: str) -> float | None:
        """Seconds from `since` until another replica than `left` held the Lease."""
        return next((t - since for t, h in self.changes if t >= since and h and h != left), None)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Rollout:
    service: Proxy
    replicas: dict[str, Operator]
    endpoints: dict[str, Address] = field(default_factory=dict)
    stops: list[tuple[str, float, bool]] = field(default_factory=list)  # name, when SIGTERMed, was leading
    exits: dict[str, float] = field(default_factory=dict)  # name: seconds from SIGTERM to its exit

    def start(self, name: str) -> None:
        """A replica is ready (Operator.start waits for its /readyz) and becomes an endpoint."""
        op = self.replicas[name].start()
        self.endpoints[name] = (op.env["DBOPS_WEBHOOK_ADDR"], int(op.env["DBOPS_WEBHOOK_PORT"]))
        self.service.route(*self.endpoints.values())

    def terminate(self, name: str, leading: bool) -> None:
        """The pod is deleted: the endpoints drop it ENDPOINT_LAG later while the kubelet runs the shipped
        preStop sleep, then SIGTERM."""
        proc = self.replicas[name].proc
        assert proc is not None and proc.poll() is None, f"{name} is not running"
        threading.Timer(ENDPOINT_LAG, self._unroute, args=(name,)).start()

        def stop() -> None:
            time.sleep(PRE_STOP)
            self.stops.append((name, time.monotonic(), leading))
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait()
            self.exits[name] = time.monotonic() - signalled

        threading.Thread(target=stop, daemon=True).start()

    def _unroute(self, name: str) -> None:
        self.endpoints.pop(name, None)
        self.service.route(*self.endpoints.values())


@pytest.fixture
def service(admission_webhook: dict[str, str]) -> Iterator[Proxy]:
    """The Service in front of the webhook: on the address and port the configuration names. Closed just
    before admission_webhook's teardown removes the configuration; in between a call finds no one and,
    failurePolicy Ignore, lets the request through."""
    proxy = Proxy(None, listen_port=int(admission_webhook["DBOPS_WEBHOOK_PORT"]))
    yield proxy
    proxy.close()


def test_a_rolling_update_refuses_no_write(
    cluster: kube.Cluster,
    fake_aws: FakeAWS,
    own_operator: Operator,
    own_namespace: str,
    admission_webhook: dict[str, str],
    service: Proxy,
    pg_url: str,
    tmp_path: pathlib.Path,
) -> None:
    src = seed_instance(fake_aws.client("rds"), "roll-src")
    fake_aws.configure(create_seconds=2, delete_seconds=1)
    fake_aws.reset_calls()
    grant(cluster, own_namespace, "alice")
    own_operator.env.update(
        admission_webhook,
        DBOPS_LEADER_ELECTION="true",
        DBOPS_LEASE_NAMESPACE=own_namespace,
        DBOPS_AUDIT_URL=pg_url,  # one trail for all replicas, as a Deployment is run for a durable one
        DBOPS_AUDIT_RETRY_INTERVAL="1",
    )
    names = ("old-a", "old-b", "new-a", "new-b")
    replicas = {"old-a": own_operator}  # its log comes with a failure report
    for n, name in enumerate(names):
        replicas[name] = replicas.get(name) or Operator(tmp_path / name, dict(own_operator.env))
        (tmp_path / name).mkdir(exist_ok=True)
        replicas[name].env.update(POD_NAME=name, DBOPS_WEBHOOK_ADDR=f"127.0.0.{n + 2}")
    rollout = Rollout(service, replicas)
    lease = LeaseWatch(kubernetes.client.CoordinationV1Api(client(cluster.kubeconfig)), own_namespace)
    writer = Writer(
        kubernetes.client.CustomObjectsApi(client(cluster.kubeconfig_for("alice"))),
        own_namespace,
        src.snapshot_identifier,
    )
    writing = threading.Thread(target=writer.run, name="alice", daemon=True)
    try:
        rollout.start("old-a")
        rollout.start("old-b")
        eventually(lease.holder, timeout=60, what="a leader")
        writing.start()
        eventually(lambda: len(writer.writes) >= 15, timeout=60, what="alice writing before the rollout")
        began = time.monotonic()
        for new, old in (("new-a", "old-a"), ("new-b", "old-b")):
            rollout.start(new)
            rollout.terminate(old, leading=lease.holder() == old)
        for old in ("old-a", "old-b"):
            proc = replicas[old].proc
            assert proc is not None and proc.wait(timeout=90) == 0, replicas[old].tail()
        ended = time.monotonic()
        eventually(lambda: len([w for w in writer.writes if w.at > ended]) >= 15, timeout=60, what="writes after")
        writer.stop()
        writing.join(timeout=60)
        report(writer, lease, rollout, began, ended)
        spooled = [f for old in ("old-a", "old-b") for f in (replicas[old].workdir / "audit-spool").glob("*.json")]
        print(f"audit records left in the spools of the stopped replicas (lost with their pods): {len(spooled)}")

        refused = [w for w in writer.writes if w.error]
        assert not refused, refused
        end_states(cluster, fake_aws, writer, own_namespace)
        for name, made in writer.created.items():  # stamped by the API server, whichever replica was up
            assert json.loads(made["metadata"]["annotations"][REQUESTED_BY])["username"] == "alice", name
        for name in writer.live:  # and still, after alice's patches and the operator's own writes
            stamp = cluster.get("dbrestore", name, own_namespace)["metadata"]["annotations"][REQUESTED_BY]
            assert json.loads(stamp)["username"] == "alice", name
        audit(pg_url, own_namespace, writer)
    finally:
        writer.stop()
        lease.stop()
        kube.delete_all(cluster, own_namespace, "dbrestores.dbops.dev", timeout=90)
        for op in replicas.values():
            op.stop()


def end_states(cluster: kube.Cluster, fake_aws: FakeAWS, writer: Writer, namespace: str) -> None:
    """Every object kept is Available with one database, every deleted one gone; one restore call each."""
    rds = fake_aws.client("rds")
    for name in writer.live:
        obj = wait_phase(cluster, name, namespace, "Available", "Failed", timeout=180)
        assert obj["status"]["phase"] == "Available", (name, obj["status"])
        assert len(instances(rds, f"roll-{name}")) == 1, name
    for name in writer.deleted:
        eventually(
            lambda name=name: cluster.kubectl("get", "dbrestore", name, "-n", namespace, check=False).returncode != 0,
            timeout=120,
            what=f"{name} gone",
        )
    assert fake_aws.calls().get(RESTORE) == len(writer.created), fake_aws.calls()


def audit(url: str, namespace: str, writer: Writer) -> None:
    """The operator's record of each request names alice, verified (from the stamp); how many of the
    webhook's own records (create-requested) the rollout cost is printed."""
    rows = eventually(
        lambda: (
            (r := audit_rows(url, "-n", namespace, "--limit", "0"))
            and {x["name"] for x in r if x["action"] == "requested"} >= set(writer.created)
            and r
        ),
        timeout=60,
        what="a requested record of every object",
    )
    requested = [(r["requester"], r["requester_verified"]) for r in rows if r["action"] == "requested"]
    assert set(requested) == {("alice", True)}, requested
    reviewed = {r["name"] for r in rows if r["action"] == "create-requested"}
    print(
        f"audit: {len(writer.created)} created, {len(reviewed & set(writer.created))} create-requested by the "
        f"webhook, {len(requested)} requested records (one per object: {len(writer.created)})"
    )


def report(writer: Writer, lease: LeaseWatch, rollout: Rollout, began: float, ended: float) -> None:
    during = sorted(w.seconds for w in writer.writes if began <= w.at <= ended)
    p99 = during[max(0, math.ceil(0.99 * len(during)) - 1)] if during else 0.0
    refused = [w for w in writer.writes if w.error]
    ops = {op: len([w for w in writer.writes if w.op == op]) for op in OPS}
    print(
        f"\nrollout: {ended - began:.1f}s; writes {len(writer.writes)} ({ops}), {len(during)} during the rollout;"
        f" refused {len(refused)}; latency during the rollout: max {max(during, default=0):.3f}s,"
        f" p99 {p99:.3f}s, median {during[len(during) // 2] if during else 0:.3f}s"
    )
    for name, at, leading in rollout.stops:
        handover = lease.handover(at, name) if leading else None
        said = f"{handover:.1f}s" if handover is not None else ("none seen" if leading else "it was not leading")
        print(f"SIGTERM {name}: exited after {rollout.exits.get(name, math.nan):.1f}s; leader handover {said}")
    print(f"lease holders: {[(round(t - began, 1), h) for t, h in lease.changes]}")
