"""The probe is served before the settings are read (pydantic is slow to import): its port comes
straight from the environment, with the same default as the settings, and a port that is no number
still ends the process with the settings' own words, not a traceback from the early read."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest
import requests

from dbops.core import health
from dbops.settings import Settings
from tests.support.kube import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_early_port_has_the_settings_default_and_reads_the_same_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBOPS_LIVENESS_PORT", raising=False)
    assert health.early_port() == 8080 == Settings().liveness_port
    monkeypatch.setenv("DBOPS_LIVENESS_PORT", "18081")
    assert health.early_port() == 18081 == Settings().liveness_port
    monkeypatch.setenv("DBOPS_LIVENESS_PORT", "0")
    assert health.early_port() == 0  # 0: no probe, as in the settings
    monkeypatch.setenv("DBOPS_LIVENESS_PORT", "eighty")
    assert health.early_port() is None


def _run(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dbops", "run"],
        cwd=ROOT,
        env={**os.environ, "DBOPS_METRICS_PORT": "0", "KUBECONFIG": "/nonexistent", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_port_that_is_no_number_is_refused_in_the_settings_words() -> None:
    proc = _run({"DBOPS_LIVENESS_PORT": "eighty"})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "liveness_port" in out and "valid integer" in out, out[-2000:]


def test_healthz_answers_before_the_operator_has_a_cluster() -> None:
    """The probe answers while the rest starts: here the rest never gets a cluster (no kubeconfig)."""
    port = free_port()
    proc = _run({"DBOPS_LIVENESS_PORT": str(port)})
    try:
        deadline = time.monotonic() + 30
        answer = None
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except requests.ConnectionError:
                time.sleep(0.01)
        assert answer is not None and answer.status_code == 200, proc.poll()
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 503
    finally:
        proc.kill()
        proc.wait()


def test_a_prober_that_hangs_up_early_leaves_no_traceback_on_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """The operator's log is one format (JSON lines with DBOPS_LOG_FORMAT=json): the standard library's
    traceback for a probe closed before its answer must not land in it."""
    import socket

    port = free_port()
    server = health.Health().serve(port, "127.0.0.1")
    try:
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.sendall(b"GET /readyz HTTP/1.0\r\n\r\n")
        time.sleep(0.5)
    finally:
        server.stop()
    assert "Traceback" not in capfd.readouterr().err
