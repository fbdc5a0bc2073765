"""A TCP proxy in front of the fake AWS that a test can cut: `refuse` (connections are closed at once,
as by an endpoint that is down), `hang` (accepted, never answered, as by an overloaded one), `pass`.

The operator knows only AWS_ENDPOINT_URL: pointing it at the proxy is how a test puts a network between
the two.

With several upstreams (`route`), it is a Service as kube-proxy makes one: each new connection goes to
the next endpoint in turn, established ones stay where they are when the endpoints change.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Iterator
from typing import Literal

Mode = Literal["pass", "refuse", "hang"]
Address = tuple[str, int]


class Proxy:
    def __init__(self, upstream_port: int | None, listen_port: int = 0) -> None:
        self.upstreams: list[Address] = [] if upstream_port is None else [("127.0.0.1", upstream_port)]
        self._turn = itertools.count()
        self.mode: Mode = "pass"
        self._listener = socket.create_server(("127.0.0.1", listen_port))
        self.port = int(self._listener.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: Mode) -> None:
        """Change the mode; connections open until now are cut (an outage does not spare them)."""
        self.mode = mode
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def route(self, *upstreams: Address) -> None:
        """Where new connections go from now on, in turn; none: each is closed at once (a Service without
        endpoints). Open connections are not cut: kube-proxy leaves established ones alone."""
        self.upstreams = list(upstreams)

    def close(self) -> None:
        self._closed = True
        self.set("refuse")
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            self._track(client)
            if self.mode == "hang":
                continue  # held open, never answered, until the mode changes
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._open.update(sockets)

    def _serve(self, client: socket.socket) -> None:
        upstreams = self.upstreams
        try:
            if not upstreams:
                raise ConnectionRefusedError
            upstream = socket.create_connection(upstreams[next(self._turn) % len(upstreams)], timeout=30)
        except OSError:
            client.close()
            return
        self._track(upstream)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    for sock in (src, dst):
        with contextlib.suppress(OSError):
            sock.close()


@contextlib.contextmanager
def proxy_to(endpoint: str) -> Iterator[Proxy]:
    proxy = Proxy(int(endpoint.rsplit(":", 1)[1]))
    try:
        yield proxy
    finally:
        proxy.close()
