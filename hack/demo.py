"""The newcomer's demo: dbops end to end on the embedded defaults, on this machine alone.

Starts a real kube-apiserver + etcd (built by hack/build-k8s.sh), the local AWS stand-in (moto, with
restores that take time like RDS), and the operator with the shipped DBOPS_POLICY=enforce; seeds a source
database with a snapshot; applies examples/policy-demo.yaml (the DBPolicy that lets namespace default
restore it: without one, enforce refuses everything), shows a request the policy refuses, applies
examples/restore-from-snapshot.yaml and shows `kubectl get dbrestore -w` until the restore is Available,
then its events and its audit trail (SQLite, the default). Everything stops when it ends.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import kube  # noqa: E402
from tests.support.fakeaws_fixture import seed_instance, start_server, stop_server  # noqa: E402
from tests.support.operator import Operator  # noqa: E402

RESTORE_SECONDS = 12.0


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def main() -> int:
    work = pathlib.Path(tempfile.mkdtemp(prefix="dbops-demo-"))
    say(f"starting kube-apiserver {kube.K8S_VERSION} + etcd on loopback (work dir {work})")
    cluster = kube.start(work / "k8s")
    fake, aws_proc = start_server(work / "fakeaws.log")
    operator: Operator | None = None
    try:
        kube.install_crds(cluster)
        say(f"AWS stand-in at {fake.endpoint}; seeding RDS instance 'orders' and snapshot 'orders-nightly'")
        seed_instance(fake.client("rds"), "orders", snapshot_identifier="orders-nightly")
        fake.configure(create_seconds=RESTORE_SECONDS)
        say("kubectl apply -f examples/policy-demo.yaml   (a cluster admin's: what namespace default may restore)")
        print(cluster.kubectl("apply", "-f", str(ROOT / "examples" / "policy-demo.yaml")).stdout, end="")
        say("starting the operator (python -m dbops run)")
        env = {
            **fake.env(),
            "KUBECONFIG": str(cluster.kubeconfig),
            "DBOPS_POLL_INTERVAL": "2",
            # The admission webhook (TLS, on loopback) records who asked: the audit trail names the user.
            "DBOPS_WEBHOOK_PORT": str(kube.free_port()),
            "DBOPS_WEBHOOK_HOST": "127.0.0.1",
            # Its certificate and signing key (shared by replicas in a cluster), kept in this Secret.
            "DBOPS_WEBHOOK_SECRET": "default/dbops-webhook",
            "DBOPS_POLICY": "enforce",  # the shipped default (manifests/base), said out loud
        }
        operator = Operator(work, env).start()
        refused_by_policy(cluster)
        say("kubectl apply -f examples/restore-from-snapshot.yaml")
        print(cluster.kubectl("apply", "-f", str(ROOT / "examples" / "restore-from-snapshot.yaml")).stdout, end="")
        say("kubectl get dbrestore -w   (until Available)")
        watch(cluster, "orders-from-snapshot")
        say("kubectl describe dbrestore orders-from-snapshot (events)")
        events = cluster.kubectl(
            "get",
            "events",
            "--field-selector=involvedObject.name=orders-from-snapshot",
            "-o",
            "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
        ).stdout
        print(events, end="")
        say("python -m dbops audit   (the audit trail, in the embedded SQLite default)")
        # The spool is written to the database in the background: give it a moment.
        time.sleep(3)
        trail = subprocess.run(
            [sys.executable, "-m", "dbops", "audit", "--url", f"sqlite:///{work / 'audit.db'}"],
            capture_output=True,
            text=True,
            check=True,
        )
        print(trail.stdout, end="")
        return 0
    finally:
        say("stopping everything")
        if operator:
            operator.stop()
        stop_server(aws_proc)
        cluster.stop()


PUBLIC = """apiVersion: dbops.dev/v1alpha1
kind: DBRestore
metadata:
  name: orders-public
spec:
  source:
    dbSnapshot: orders-nightly
  target:
    identifier: orders-public
    publiclyAccessible: true
"""


def refused_by_policy(cluster: kube.Cluster) -> None:
    """A request the policy forbids, refused at admission in kubectl's own output."""
    say("kubectl apply   (the same snapshot, publiclyAccessible: true: the policy refuses it)")
    for _ in range(50):  # the webhook answers within moments of the operator being live
        proc = cluster.kubectl("apply", "-f", "-", input=PUBLIC, check=False)
        if proc.returncode != 0:
            print(proc.stderr, end="")
            return
        cluster.kubectl("delete", "dbrestore", "orders-public", "--wait=false")
        time.sleep(0.2)
    raise SystemExit("the DBPolicy did not refuse a public database")


def watch(cluster: kube.Cluster, name: str, timeout: float = 120) -> None:
    proc = subprocess.Popen(
        [str(cluster.bin / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", "get", "dbrestore", "-w"],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            print(line, end="", flush=True)
            if f"{name} " in line and (" Available " in line or " Failed " in line):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} did not become Available in {timeout}s")
    finally:
        proc.terminate()


if __name__ == "__main__":
    sys.exit(main())
