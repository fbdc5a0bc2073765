"""The newcomer's demo: dbops end to end on the embedded defaults, on this machine alone.

Starts a real kube-apiserver + etcd (built by hack/build-k8s.sh), the local AWS stand-in (moto, with
restores that take time like RDS), and the operator with the shipped DBOPS_POLICY=enforce, seeded as the
playground is (hack/playground.py, which `make up` leaves running instead); applies
examples/policy-demo.yaml (the DBPolicy that lets namespace default restore the orders snapshots: without
one, enforce refuses everything), shows a request the policy refuses, applies
examples/restore-from-snapshot.yaml and shows `kubectl get dbrestore -w` until the restore is Available,
then its events in time order and its audit trail (SQLite, the default). Everything stops when it ends.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hack.playground import say, start_stack  # noqa: E402
from tests.support import kube  # noqa: E402

NAME = "orders-from-snapshot"


def main() -> int:
    work = pathlib.Path(tempfile.mkdtemp(prefix="dbops-demo-"))
    stack = start_stack(work, policy="enforce", policy_file=ROOT / "examples" / "policy-demo.yaml")
    cluster = stack.cluster
    try:
        refused_by_policy(cluster)
        say("kubectl apply -f examples/restore-from-snapshot.yaml")
        print(cluster.kubectl("apply", "-f", str(ROOT / "examples" / "restore-from-snapshot.yaml")).stdout, end="")
        say("kubectl get dbrestore -w   (until Available)")
        watch(cluster, NAME)
        say(f"kubectl get events --field-selector=involvedObject.name={NAME}   (in time order)")
        print(events_in_order(cluster, NAME), end="")
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
        stack.stop()


def events_in_order(cluster: kube.Cluster, name: str) -> str:
    """The object's events oldest first: by when each first happened, then by when the API server stored
    it (kubectl lists them by name, which is random)."""
    found = json.loads(
        cluster.kubectl("get", "events", f"--field-selector=involvedObject.name={name}", "-o", "json").stdout
    )["items"]
    found.sort(key=lambda e: (e.get("firstTimestamp") or "", int(e["metadata"]["resourceVersion"])))
    rows = [("TIME", "TYPE", "REASON", "MESSAGE")]
    rows += [(e.get("firstTimestamp") or "", e["type"], e["reason"], e["message"]) for e in found]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}\n" for r in rows)


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
