"""The Kubernetes API calls of the reconcile core: read an object fresh, write its status, add and
remove the finalizer, read a Secret value (never logged), post events.

kopf watches the objects and wakes the core; everything a pass writes goes through this module with
the kubernetes client, from the worker threads (kopf's own API helpers are asyncio-only).
"""

from __future__ import annotations

import base64
import threading
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from dbops import redact
from dbops.models import GROUP, VERSION

FINALIZER = f"{GROUP}/finalizer"
_RAISE = object()  # Kube._do: a 404 raises unless told what it stands for
Items = list[dict[str, Any]]
MERGE_PATCH = "application/merge-patch+json"


class K8sError(Exception):
    """The API server refused or could not be reached; `status` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ConflictError(K8sError):
    """The object changed since it was read (409): the next pass starts from the new version."""


class Kube:
    """One API client per process (made at startup, kept in kopf's memo)."""

    def __init__(self, request_timeout: float = 20.0, pool: int = 24) -> None:
        self._api: kubernetes.client.ApiClient | None = None
        self._lock = threading.Lock()
        self.timeout = request_timeout
        self.pool = pool

    def api(self) -> kubernetes.client.ApiClient:
        with self._lock:
            if self._api is None:
                try:
                    kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
                except kubernetes.config.ConfigException:
                    kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
                config = kubernetes.client.Configuration.get_default_copy()
                config.retries = 1  # a pass that fails is retried by a later pass: no pile of urllib3 retries
                # A connection for every worker and the event poster: a smaller pool discards a connection
                # after each burst and pays a new TLS handshake for the next request.
                config.connection_pool_maxsize = self.pool
                self._api = kubernetes.client.ApiClient(config)
                for token in (self._api.configuration.api_key or {}).values():  # kubeconfig's or the pod's
                    redact.register(str(token).removeprefix("Bearer "))
            return self._api

    def _custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.api())

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object as the API server has it now, or None when there is none of that name."""
        call = self._custom().get_namespaced_custom_object
        found: dict[str, Any] | None = self._do(
            f"{plural} {namespace}/{name}", call, GROUP, VERSION, namespace, plural, name, missing=None
        )
        return found

    def list_in(self, plural: str, namespace: str, selector: str) -> Items:
        """The objects of a namespace with the labels `selector` selects (e.g. a schedule's runs)."""
        call = self._custom().list_namespaced_custom_object
        found = self._do(f"{plural} in {namespace}", call, GROUP, VERSION, namespace, plural, label_selector=selector)
        return list(found.get("items") or [])

    def list(self, plural: str, namespace: str | None = None) -> Items:
        """Every object of a kind, cluster-wide, or in one namespace (what a Role allows)."""
        api = self._custom()
        if namespace:
            found = self._do(plural, api.list_namespaced_custom_object, GROUP, VERSION, namespace, plural)
        else:
            found = self._do(plural, api.list_cluster_custom_object, GROUP, VERSION, plural)
        return list(found.get("items") or [])

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> bool:
        """Create an object; False when one of that name exists already (names are how a creator that
        restarted knows it made one: it never makes a second)."""
        call = self._custom().create_namespaced_custom_object
        try:
            self._do(f"{plural} {namespace}/{body['metadata']['name']}", call, GROUP, VERSION, namespace, plural, body)
        except ConflictError:
            return False
        return True

    def delete(self, plural: str, namespace: str, name: str, uid: str) -> None:
        """Delete the object of that name if it is still the one with `uid` (gone already is fine)."""
        options = kubernetes.client.V1DeleteOptions(
            preconditions=kubernetes.client.V1Preconditions(uid=uid), propagation_policy="Background"
        )
        call = self._custom().delete_namespaced_custom_object
        try:
            self._do(f"{plural} {namespace}/{name}", call, GROUP, VERSION, namespace, plural, name, body=options)
        except K8sError as err:
            if err.status not in (404, 409):  # gone, or another object of that name now: not ours to delete
                raise

    def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource with the whole status (None removes a field)."""
        call = self._custom().patch_namespaced_custom_object_status
        out: dict[str, Any] = self._do(
            f"{plural} {namespace}/{name}", call, GROUP, VERSION, namespace, plural, name, {"status": status}
        )
        return out

    def set_finalizer(self, plural: str, body: dict[str, Any], present: bool) -> dict[str, Any]:
        """Add or remove dbops' finalizer, only if the object is still the version read (a merge
        patch replaces the list whole: the resourceVersion keeps another writer's finalizer safe)."""
        meta = body["metadata"]
        current = list(meta.get("finalizers") or [])
        wanted = [f for f in current if f != FINALIZER] + ([FINALIZER] if present else [])
        if wanted == current:
            return body
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"], "finalizers": wanted}}
        call = self._custom().patch_namespaced_custom_object
        name, namespace = meta["name"], meta["namespace"]
        what = f"{plural} {namespace}/{name}"
        out: dict[str, Any] = self._do(what, call, GROUP, VERSION, namespace, plural, name, patch)
        return out

    def _do(self, what: str, call: Any, *args: Any, missing: Any = _RAISE, **options: Any) -> Any:
        """One CustomObjectsApi call, its answer as plain data; K8sError on a refusal or no answer,
        `missing` for a 404 when given."""
        try:
            out = call(*args, _request_timeout=self.timeout, **options)
        except ApiException as exc:
            if exc.status == 404 and missing is not _RAISE:
                return missing
            raise _error(exc, what) from None
        except Exception as exc:  # urllib3's connection errors: the API server is unreachable
            raise K8sError(f"{what}: {type(exc).__name__}") from None
        return self.api().sanitize_for_serialization(out)  # type: ignore[no-untyped-call]

    # --- built-in kinds, by REST path ---------------------------------------------------------------------
    # The client's generated CoreV1Api and AdmissionregistrationV1Api modules alone take about 100 MiB
    # once imported (most of an idle operator's memory); the dozen calls dbops makes to them go through
    # the same ApiClient (auth, TLS, retries, ApiException) by path instead.

    def _rest(
        self,
        what: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        missing: Any = _RAISE,
    ) -> Any:
        """One API call by path, its answer as a dict; K8sError on a refusal or no answer, `missing`
        for a 404 when given."""
        api = self.api()
        headers = {"Accept": "application/json", "Content-Type": content_type}

        def send(_request_timeout: float) -> Any:
            request = api.param_serialize(method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
            response = api.call_api(*request, _request_timeout=_request_timeout)
            response.read()  # type: ignore[no-untyped-call]
            return api.response_deserialize(response, {"2XX": "object"}).data

        return self._do(what, send, missing=missing)

    def read_secret(self, namespace: str, name: str, key: str) -> str:
        secret = self._rest(f"Secret {namespace}/{name}", "GET", _core_path(namespace, "secrets", name))
        data = secret.get("data") or {}
        if key not in data:
            raise SecretKeyMissingError(f"Secret {namespace}/{name} has no key {key!r}", 404)
        value = base64.b64decode(data[key]).decode()
        redact.register(value)  # before anyone can log it: from here on it reads *** in every log line
        return value

    def create_event(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._rest("event", "POST", _core_path(namespace, "events"), event)
        return out

    def patch_event(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self._rest("event", "PATCH", _core_path(namespace, "events", name), patch, content_type=MERGE_PATCH)

    # --- Secrets and ConfigMaps dbops writes (connection details, its own keys) --------------------------

    def read_core(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret or ConfigMap as stored (Secret data base64), or None when there is none."""
        found: dict[str, Any] | None = self._rest(
            f"{kind} {namespace}/{name}", "GET", _core_path(namespace, CORE_PLURALS[kind], name), missing=None
        )
        return found

    def create_core(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        """Create; ConflictError when one of that name exists (another replica made it first)."""
        what = f"{kind} {namespace}/{body['metadata']['name']}"
        self._rest(what, "POST", _core_path(namespace, CORE_PLURALS[kind]), body)

    def replace_core(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        """PUT with the body's resourceVersion: a concurrent writer makes it fail (409), never lose."""
        name = body["metadata"]["name"]
        self._rest(f"{kind} {namespace}/{name}", "PUT", _core_path(namespace, CORE_PLURALS[kind], name), body)

    def delete_core(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete only the object of that UID (a precondition: a namesake made since is left alone)."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}}
        try:
            self._rest(f"{kind} {namespace}/{name}", "DELETE", _core_path(namespace, CORE_PLURALS[kind], name), options)
        except K8sError as err:
            if err.status not in (404, 409):  # gone already, or another object of that name now
                raise

    # --- tenancy and admission: cluster-scoped objects, annotations ---------------------------------------

    def list_all(self, plural: str) -> Items:
        """Every object of a cluster-scoped kind of dbops (DBPolicy)."""
        found = self._do(plural, self._custom().list_cluster_custom_object, GROUP, VERSION, plural)
        return list(found.get("items") or [])

    def namespaces(self) -> Items:
        found = self._rest("namespaces", "GET", "/api/v1/namespaces")
        return list(found.get("items") or [])

    def patch_cluster_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        call = self._custom().patch_cluster_custom_object_status
        self._do(f"{plural} {name}", call, GROUP, VERSION, plural, name, {"status": status})

    def annotate(self, plural: str, namespace: str, name: str, annotations: dict[str, str]) -> bool:
        """Merge annotations into an object; False when it is gone already."""
        call = self._custom().patch_namespaced_custom_object
        patch = {"metadata": {"annotations": annotations}}
        return (
            self._do(f"{plural} {namespace}/{name}", call, GROUP, VERSION, namespace, plural, name, patch, missing=None)
            is not None
        )

    def webhook_configuration(self, name: str) -> dict[str, Any] | None:
        what = f"ValidatingWebhookConfiguration {name}"
        found: dict[str, Any] | None = self._rest(what, "GET", _admission_path(VALIDATING, name), missing=None)
        return found

    def put_webhook_configuration(self, body: dict[str, Any]) -> None:
        """Create the configuration, or set its webhooks (a merge patch: the list is replaced whole)."""
        name = body["metadata"]["name"]
        what = f"ValidatingWebhookConfiguration {name}"
        if self.webhook_configuration(name) is None:
            try:
                self._rest(what, "POST", _admission_path(VALIDATING), body)
                return
            except ConflictError:  # another replica created it meanwhile: set ours
                pass
        patch = {"webhooks": body["webhooks"]}
        self._rest(what, "PATCH", _admission_path(VALIDATING, name), patch, content_type=MERGE_PATCH)

    def empty_mutating_webhooks(self, name: str) -> None:
        """An older dbops' mutating webhook (fail-closed): left without webhooks, if it is there."""
        what, path = f"MutatingWebhookConfiguration {name}", _admission_path(MUTATING, name)
        found = self._rest(what, "GET", path, missing=None)
        if found and found.get("webhooks"):
            self._rest(what, "PATCH", path, {"webhooks": []}, content_type=MERGE_PATCH)

    def admission_policy_installed(self, name: str) -> bool:
        """The MutatingAdmissionPolicy `name` and its binding of the same name are in place (the API
        server stamps the requester then: a user cannot write it)."""
        found = [
            self._rest(f"{plural} {name}", "GET", _admission_path(plural, name), missing=None)
            for plural in ("mutatingadmissionpolicies", "mutatingadmissionpolicybindings")
        ]
        return all(f is not None for f in found)


CORE_PLURALS = {"Secret": "secrets", "ConfigMap": "configmaps"}
VALIDATING = "validatingwebhookconfigurations"
MUTATING = "mutatingwebhookconfigurations"


def _core_path(namespace: str, plural: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def _admission_path(plural: str, name: str = "") -> str:
    return f"/apis/admissionregistration.k8s.io/v1/{plural}" + (f"/{name}" if name else "")


class SecretKeyMissingError(K8sError):
    """The Secret exists but lacks the key the spec names."""


def _error(exc: ApiException, what: str) -> K8sError:
    cls = ConflictError if exc.status == 409 else K8sError
    return cls(f"{what}: {exc.status} {exc.reason}", int(exc.status or 0))
