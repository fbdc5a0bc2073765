"""Shared bits of the audit, metrics, notification and webhook tests."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.kube import ROOT, Cluster


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, keyed by (name, sorted labels)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def audit_output(url: str, *args: str) -> str:
    """What `python -m dbops audit --url URL ARGS` prints, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "dbops", "audit", "--url", url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def audit_rows(url: str, *args: str) -> list[dict[str, Any]]:
    """Records through the read path, as a user runs it: `python -m dbops audit ... -o json`."""
    rows: list[dict[str, Any]] = json.loads(audit_output(url, "-o", "json", *args))
    return rows


def eventually(check: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout}s; last: {last!r}")


def secret(name: str, namespace: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


class SlackServer:
    """A local HTTP server standing in for Slack's incoming webhooks: records each POST by path, and
    answers 500 to the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.attempts = 0
        self.fail_first = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                outer.attempts += 1
                if outer.attempts <= outer.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.messages.append((self.path, payload))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/services/T000/B000/XXXX") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def texts(self, path: str | None = None) -> list[str]:
        return [str(p.get("text", "")) for pth, p in self.messages if path is None or pth == path]

    def __enter__(self) -> SlackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def grant(cluster: Cluster, namespace: str, *users: str) -> None:
    """Let `users` manage DBRestores, DBAttaches and DBRestoreSchedules in `namespace`."""
    rules = [
        {
            "apiGroups": ["dbops.dev"],
            "resources": ["dbrestores", "dbattaches", "dbrestoreschedules"],
            "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
        }
    ]
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "dbops-users", "namespace": namespace},
            "rules": rules,
        }
    )
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "dbops-users", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dbops-users"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u} for u in users],
        }
    )


def in_flight_above(port: int, before: dict[tuple[str, tuple[tuple[str, str], ...]], float], kind: str) -> Any:
    """The first scrape whose dbops_restores_in_flight{kind} is above what `before` had."""
    return eventually(
        lambda: (
            (s := scrape(port))
            and value(s, "dbops_restores_in_flight", kind=kind) > value(before, "dbops_restores_in_flight", kind=kind)
            and s
        ),
        what=f"a {kind} in flight",
    )
