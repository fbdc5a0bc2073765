"""`make up` / `make down` as a newcomer uses them: up leaves the API server, the AWS stand-in and the
operator running and prints what to export; every file in examples/ works against its seed with plain
kubectl; down stops it all, leaving nothing running or listening."""

from __future__ import annotations

import os
import pathlib
import re
import socket
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.kube import ROOT, bin_dir

# Every example a user applies; the DBPolicies are a cluster admin's (the playground runs DBOPS_POLICY=open,
# and a policy applied there would hold the other examples to its rules).
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if not p.name.startswith("policy-"))
SETTLED = ("Available", "Failed", "Degraded")


def make(target: str, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(
        ["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"make {target}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def exports(text: str) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)=(\S+)$", text, re.MULTILINE))


def kubectl(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [str(bin_dir() / "kubectl"), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((parts.hostname or "", parts.port or 0)) == 0


def phases(env: dict[str, str]) -> dict[str, str]:
    """name -> phase of every DBRestore and DBAttach."""
    out = kubectl(env, "get", "dbrestores,dbattaches", "-o", "yaml")
    return {o["metadata"]["name"]: (o.get("status") or {}).get("phase", "") for o in yaml.safe_load(out)["items"]}


def mentions(state: pathlib.Path) -> list[int]:
    """Processes whose command line or environment name the playground's directory."""
    found = []
    for proc in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(state).encode() in text and int(proc.name) != os.getpid():
            found.append(int(proc.name))
    return found


def watch_until(env: dict[str, str], name: str, timeout: float) -> list[str]:
    """`kubectl get dbrestore -w` lines, until `name` is settled."""
    cmd = [str(bin_dir() / "kubectl"), "get", "dbrestore", "-w"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(f"{name} ") and any(f" {p} " in line for p in SETTLED):
                break
            assert time.monotonic() < deadline, f"{name} not settled in {timeout}s:\n{''.join(lines)}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return lines


@pytest.mark.side
def test_make_up_runs_every_example_by_hand_and_make_down_leaves_nothing(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "playground"
    base = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"DBOPS_PLAYGROUND": str(state)}
    started: dict[str, Any] = {}
    urls: list[str] = []
    try:
        out = make("up", base, timeout=600)
        started = exports(out)
        assert {"KUBECONFIG", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"} <= started.keys(), out
        assert "make down" in out
        env = {**base, **started}
        config = yaml.safe_load(pathlib.Path(started["KUBECONFIG"]).read_text())
        urls = [started["AWS_ENDPOINT_URL"], config["clusters"][0]["cluster"]["server"]]
        assert all(listening(url) for url in urls)
        assert make("up", base, timeout=60).count("export KUBECONFIG=") == 1  # again: says where it runs

        kubectl(env, "apply", "-f", str(ROOT / "examples" / "restore-from-snapshot.yaml"))
        lines = watch_until(env, "orders-from-snapshot", timeout=240)
        seen = " ".join(lines)
        assert " Restoring " in seen and " Available " in seen, seen

        # Every other example against the seed, as a user would apply them.
        for example in EXAMPLES:
            kubectl(env, "apply", "-f", str(example))
        docs = [d for f in EXAMPLES for d in yaml.safe_load_all(f.read_text()) if d]
        names = {d["metadata"]["name"] for d in docs if d["kind"] in ("DBRestore", "DBAttach")}
        # A verification connects to the database: no server answers behind the stand-in's endpoints
        # here (test_verify.py and test_drills.py run the probes against real PostgreSQL and MariaDB).
        probed = {d["metadata"]["name"] for d in docs if d["kind"] == "DBRestore" and "verify" in d["spec"]}
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and not all(p in SETTLED for n, p in phases(env).items() if n not in probed):
            time.sleep(2)
        now = phases(env)
        assert set(now) == names, now
        assert all(p == "Available" for n, p in now.items() if n not in probed), now
        schedules = {d["metadata"]["name"] for d in docs if d["kind"] == "DBRestoreSchedule"}
        assert set(kubectl(env, "get", "dbrestoreschedules", "-o", "name").split()) == {
            f"dbrestoreschedule.dbops.dev/{n}" for n in schedules
        }
    finally:
        make("down", base, timeout=180)
    assert not state.exists()
    assert urls and not [url for url in urls if listening(url)], urls
    assert not mentions(state), "processes of the playground still running"
