"""The playground: a local API server, the AWS stand-in and the operator, left running to try dbops by hand.

    make up      start them in the background (or say where the running ones are) and print the lines
                 to export: KUBECONFIG, and AWS_ENDPOINT_URL with its test credentials for the aws CLI
    make down    stop them all; nothing is left running or listening

The stand-in is seeded with what every file in examples/ names: the RDS instance orders (snapshot
orders-nightly) and the Aurora clusters orders, billing (cluster snapshot billing-weekly) and, in
eu-west-1, reports, at the very endpoint hostnames the examples use. Then, for instance:

    kubectl apply -f examples/restore-from-snapshot.yaml && kubectl get dbrestore -w

One supervisor process (`serve`, in a session of its own) starts everything and stops everything when
`down` sends it SIGTERM; hack/demo.py starts the same stack in the foreground (start_stack). The state
is in .playground/ (DBOPS_PLAYGROUND elsewhere): logs, the kubeconfig, the supervisor's pid.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import kube  # noqa: E402
from tests.support.fakeaws import ENDPOINT_HASH  # noqa: E402
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance, start_server, stop_server  # noqa: E402
from tests.support.operator import Operator  # noqa: E402

RESTORE_SECONDS = 12.0
EXAMPLES_HASH = "c9akciq32"  # the account hash in the examples' endpoint hostnames
STATE = pathlib.Path(os.environ.get("DBOPS_PLAYGROUND") or ROOT / ".playground")
START_TIMEOUT = 300.0


@dataclass
class Stack:
    cluster: kube.Cluster
    fake: FakeAWS
    aws_proc: subprocess.Popen[bytes]
    operator: Operator

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.cluster.kubeconfig), **self.fake.env()}

    def stop(self) -> None:
        self.operator.stop()
        stop_server(self.aws_proc)
        self.cluster.stop()


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def start_stack(work: pathlib.Path, policy: str = "open", policy_file: pathlib.Path | None = None) -> Stack:
    """API server + etcd, the seeded AWS stand-in and the operator, all on loopback under `work`.

    `policy` is DBOPS_POLICY: the demo runs the shipped `enforce` with the DBPolicy it needs
    (`policy_file`); the playground runs `open`, so that every file in examples/ can be applied as it is."""
    say(f"starting kube-apiserver {kube.K8S_VERSION} + etcd on loopback (work dir {work})")
    cluster = kube.start(work / "k8s")
    fake, aws_proc = start_server(work / "fakeaws.log", **{ENDPOINT_HASH: EXAMPLES_HASH})
    try:
        kube.install_crds(cluster)
        say(f"AWS stand-in at {fake.endpoint}; seeding what examples/ names")
        seed(fake)
        fake.configure(create_seconds=RESTORE_SECONDS)
        if policy_file is not None:
            say(f"kubectl apply -f {policy_file.relative_to(ROOT)}   (a cluster admin's policy for namespace default)")
            print(cluster.kubectl("apply", "-f", str(policy_file)).stdout, end="")
        say(f"starting the operator (python -m dbops run, DBOPS_POLICY={policy})")
        env = {
            **fake.env(),
            "KUBECONFIG": str(cluster.kubeconfig),
            "DBOPS_POLL_INTERVAL": "2",
            # The admission webhook (TLS, on loopback) records who asked: the audit trail names the user.
            "DBOPS_WEBHOOK_PORT": str(kube.free_port()),
            "DBOPS_WEBHOOK_HOST": "127.0.0.1",
            # Its certificate and signing key (shared by replicas in a cluster), kept in this Secret.
            "DBOPS_WEBHOOK_SECRET": "default/dbops-webhook",
            "DBOPS_POLICY": policy,
        }
        operator = Operator(work, env).start()
    except BaseException:
        stop_server(aws_proc)
        cluster.stop()
        raise
    return Stack(cluster, fake, aws_proc, operator)


def seed(fake: FakeAWS) -> None:
    """The sources the examples name, in their regions."""
    rds = fake.client("rds")
    seed_instance(rds, "orders", snapshot_identifier="orders-nightly")
    seed_cluster(rds, "orders", network="orders-aurora")  # attach-by-identifier
    seed_cluster(rds, "billing", snapshot_identifier="billing-weekly")
    west = fake.client("rds", region="eu-west-1")
    seed_cluster(west, "reports")
    west.create_db_parameter_group(
        DBParameterGroupName="reports-analytics-params",
        DBParameterGroupFamily="aurora-postgresql16",
        Description="attach-by-endpoint's readers",
    )


# --- up / serve / down ------------------------------------------------------------------------------


def _pid() -> int | None:
    try:
        pid = int((STATE / "pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _exports() -> str:
    return (STATE / "env").read_text()


def up() -> int:
    if _pid() is not None and (STATE / "env").exists():
        print(f"the playground is running (state in {STATE}):\n{_exports()}", end="")
        return 0
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    with (STATE / "playground.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "serve"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    (STATE / "pid").write_text(str(proc.pid))
    deadline = time.monotonic() + START_TIMEOUT
    while not (STATE / "env").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print((STATE / "playground.log").read_text(errors="replace")[-6000:], file=sys.stderr)
            down()
            return 1
        time.sleep(0.5)
    print(f"the playground is up (logs in {STATE}); `make down` stops it. In your shell:\n{_exports()}", end="")
    print("then: kubectl apply -f examples/restore-from-snapshot.yaml && kubectl get dbrestore -w")
    return 0


def serve() -> int:
    """The supervisor: start the stack, say how to reach it, and stop it all on SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = start_stack(STATE / "work")
    try:
        lines = [f"export {k}={v}" for k, v in stack.env().items()]
        (STATE / "env.tmp").write_text("\n".join(lines) + "\n")
        (STATE / "env.tmp").rename(STATE / "env")  # whole, or not at all: `up` waits for it
        while not stop.wait(1.0):
            if stack.operator.proc is not None and stack.operator.proc.poll() is not None:
                say(f"the operator exited ({stack.operator.proc.returncode}); starting it again")
                stack.operator.start()
    finally:
        say("stopping everything")
        stack.stop()
    return 0


def down() -> int:
    pid = _pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.3)
        if _alive(pid):  # the stack did not stop in time: take its whole session down
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(STATE, ignore_errors=True)
    print("the playground is down")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a child of this process that exited is a zombie until reaped
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return _state(pid) not in ("Z", "X", "")


def _state(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


COMMANDS: dict[str, Any] = {"up": up, "serve": serve, "down": down}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: {sys.argv[0]} up|down")
    sys.exit(COMMANDS[sys.argv[1]]())
