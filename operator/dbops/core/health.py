"""/healthz and /readyz, served from the first instant of the process (standard library only, started
before kopf, boto3 and the rest are imported, so that a probe answers within a fraction of a second).

- /healthz (liveness) fails when a registered check fails: a stalled reconcile loop, kopf's event loop
  not ticking. While the process is still starting it answers ok: startup is the startupProbe's job.
- /readyz (readiness) is ok once the operator has started (watching, webhook served when enabled).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dbops.defaults import LIVENESS_PORT

Check = Callable[[], str | None]  # None: fine; else what is wrong


def early_port() -> int | None:
    """DBOPS_LIVENESS_PORT read straight from the environment, for a probe served before the settings
    (pydantic alone takes a quarter of a second to import); None when it is not a number, for the
    settings to refuse in words."""
    try:
        return int(os.environ.get("DBOPS_LIVENESS_PORT", LIVENESS_PORT))
    except ValueError:
        return None


class Health:
    def __init__(self) -> None:
        self.checks: dict[str, Check] = {}
        self.ready = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    def problems(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for name, check in list(self.checks.items()):
            try:
                problem = check()
            except Exception as exc:  # a check that cannot run is a failed check
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                found[name] = problem
        return found

    def serve(self, port: int, addr: str = "0.0.0.0") -> Health:  # noqa: S104 - probed from outside the pod
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/healthz"):
                    problems = health.problems()
                    self._answer(500 if problems else 200, {"ok": not problems, "problems": problems})
                elif self.path.startswith("/readyz"):
                    ready = health.ready.is_set()
                    self._answer(200 if ready else 503, {"ready": ready})
                else:
                    self._answer(404, {"error": "not found"})

            def _answer(self, code: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:  # probes every few seconds are not news
                return

        self._server = _Server((addr, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="dbops-health", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A prober that hung up before its answer is not an error. The standard library's default prints
        a traceback to stderr, a line of no log format; anything else goes to the log."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        logging.getLogger(__name__).exception("health probe from %s failed", client_address[0])
