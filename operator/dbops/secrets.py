"""Reading a Kubernetes Secret value for the operator (the master password). Never logged."""

from __future__ import annotations

import base64
import threading

import kubernetes
from kubernetes.client.exceptions import ApiException

_api: kubernetes.client.CoreV1Api | None = None
_lock = threading.Lock()


class SecretError(Exception):
    pass


def _core() -> kubernetes.client.CoreV1Api:
    global _api  # noqa: PLW0603 - one API client per process, made on first use
    with _lock:
        if _api is None:
            try:
                kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
            _api = kubernetes.client.CoreV1Api()
        return _api


def read(namespace: str, name: str, key: str) -> str:
    try:
        secret = _core().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        raise SecretError(f"Secret {namespace}/{name}: {exc.status} {exc.reason}") from None
    data = secret.data or {}
    if key not in data:
        raise SecretError(f"Secret {namespace}/{name} has no key {key!r}")
    return base64.b64decode(data[key]).decode()
