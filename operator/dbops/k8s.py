"""The few direct Kubernetes API reads the operator makes besides kopf's watches: a Secret value
(the master password, never logged) and a DBRestore that a DBAttach refers to."""

from __future__ import annotations

import base64
import threading
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from dbops import redact
from dbops.models import GROUP, VERSION

_api: kubernetes.client.ApiClient | None = None
_lock = threading.Lock()


class K8sError(Exception):
    pass


def _client() -> kubernetes.client.ApiClient:
    global _api  # noqa: PLW0603 - one API client per process, made on first use
    with _lock:
        if _api is None:
            try:
                kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
            _api = kubernetes.client.ApiClient()
            for token in (_api.configuration.api_key or {}).values():  # the bearer token, from kubeconfig or the pod
                redact.register(str(token).removeprefix("Bearer "))
        return _api


def read_secret(namespace: str, name: str, key: str) -> str:
    try:
        secret = kubernetes.client.CoreV1Api(_client()).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        raise K8sError(f"Secret {namespace}/{name}: {exc.status} {exc.reason}") from None
    data = secret.data or {}
    if key not in data:
        raise K8sError(f"Secret {namespace}/{name} has no key {key!r}")
    value = base64.b64decode(data[key]).decode()
    redact.register(value)  # before anyone can log it: from here on it reads *** in every log line
    return value


def read_object(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """One of dbops' objects as the API server has it now, or None when there is none of that name."""
    api = kubernetes.client.CustomObjectsApi(_client())
    try:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise K8sError(f"{plural} {namespace}/{name}: {exc.status} {exc.reason}") from None
    result: dict[str, Any] = dict(obj)  # type: ignore[call-overload]
    return result


def read_dbrestore(namespace: str, name: str) -> dict[str, Any] | None:
    """A DBRestore as the API server has it, or None when there is none of that name."""
    return read_object("dbrestores", namespace, name)
