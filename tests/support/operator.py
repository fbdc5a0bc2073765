"""The operator as a child process, exactly as users run it (`python -m dbops run`).

A subprocess rather than an in-process runner: tests can kill it mid-restore and start it again,
and the operator sees only what a deployed one sees (KUBECONFIG, AWS_ENDPOINT_URL, DBOPS_*).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import requests

from tests.support.kube import ROOT, free_port


class Operator:
    def __init__(self, workdir: pathlib.Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "operator.log"
        self.liveness_port = 0
        self.metrics_port = 0

    def start(self, *args: str, **extra_env: str) -> Operator:
        """`python -m dbops run ARGS` (e.g. -v) with the test's environment and `extra_env`; returns once live."""
        self.liveness_port, self.metrics_port = free_port(), free_port()
        env = {
            **os.environ,
            # The audit trail of this operator stays in its workdir (never the repository), unless set.
            "DBOPS_AUDIT_URL": f"sqlite:///{self.workdir / 'audit.db'}",
            "DBOPS_AUDIT_SPOOL": str(self.workdir / "audit-spool"),
            **self.env,
            **extra_env,
            "DBOPS_LIVENESS_PORT": str(self.liveness_port),
            "DBOPS_METRICS_PORT": str(self.metrics_port),
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbops", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"operator exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(f"http://127.0.0.1:{self.liveness_port}/readyz", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"operator not live in 60s:\n{self.tail()}")

    def kill(self) -> None:
        """A crash, not a shutdown: no cleanup runs (the restart test needs exactly that)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def __enter__(self) -> Operator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
