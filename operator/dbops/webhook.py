"""The validating admission webhook of DBRestore and DBAttach: policies at admission, and who asked.

- CREATE and UPDATE: the DBPolicies of the namespace (dbops.policy: the very verdict every pass of the
  reconcile core reaches again before any AWS call). A request that breaks one is refused with a message
  naming the field, the policy and what it allows, and recorded (create-refused, update-refused); an
  admitted one is recorded (create-requested, update-requested). An UPDATE is refused only for what it
  makes worse: an object admitted under an older policy can still be changed in other ways.
- DELETE: never refused; recorded, and the deleter written on the object itself (report.DELETED_BY,
  signed with the operator's key), so that the operator's deletion records name the deleter after any
  restart.

It must never make the cluster unusable, so its configuration (ValidatingWebhookConfiguration dbops.dev,
kept by the operator, see `configuration`) has failurePolicy Ignore (with no replica answering, requests
go through and the reconcile-time check is the backstop), a 5 s timeout, no kube-system, and
matchConditions that send it only what a user changes: never the operator's own status and finalizer
writes, nor a finalizer removal by an admin.

Who asked comes from the AdmissionReview. With DBOPS_WEBHOOK_CLIENT_CA, only an API server presenting a
client certificate from that CA (its admission configuration) can connect, and the records are verified;
without it anyone who reaches the port could forge a review, and the records say "unverified".

Every replica serves with the same certificate, from the keys Secret (core.keys), so the configuration's
caBundle holds whichever replica the Service picks.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import pathlib
import ssl
import tempfile
from typing import Any

import kopf
from kopf._cogs.structs.references import NamespaceName, match_namespace
from pydantic import ValidationError

from dbops import settings
from dbops.attach import tenancy as attach_tenancy
from dbops.core import keys as keys_mod
from dbops.core import report
from dbops.core.types import SpecError
from dbops.models import GROUP, VERSION, DBAttachSpec, DBRestoreSpec
from dbops.policy.request import Request
from dbops.restore import tenancy as restore_tenancy

log = logging.getLogger(__name__)

PLURALS = {"DBRestore": "dbrestores", "DBAttach": "dbattaches"}
CONFIGURATION = GROUP  # the ValidatingWebhookConfiguration's name (and an older dbops' mutating one's)
ACTIONS = {"CREATE": "create-requested", "UPDATE": "update-requested", "DELETE": "delete-requested"}
REFUSED = {"CREATE": "create-refused", "UPDATE": "update-refused"}
SERVICE_ACCOUNT_NAMESPACE = pathlib.Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# dbops.dev/ annotations that dbops writes itself: a change of these alone is no user's request.
OWN_ANNOTATIONS = (report.REQUESTED_BY, report.DELETED_BY)
_OWN = ", ".join(f"'{a}'" for a in OWN_ANNOTATIONS)


def _user_annotations(obj: Any) -> dict[str, str]:
    annotations = dict(((obj or {}).get("metadata") or {}).get("annotations") or {})
    return {k: v for k, v in annotations.items() if k.startswith(f"{GROUP}/") and k not in OWN_ANNOTATIONS}


def meaningful_change(old: Any, new: Any) -> bool:
    """A change a user asks for: the spec, or a dbops.dev/ annotation (retry, notifications). The
    configuration's matchConditions (USER_CHANGE) say the same to the API server."""
    return bool(
        dict((old or {}).get("spec") or {}) != dict((new or {}).get("spec") or {})
        or _user_annotations(old) != _user_annotations(new)
    )


def _user_keys(obj: str) -> str:
    return f"{obj}.metadata.?annotations.orValue({{}}).filter(k, k.startsWith('{GROUP}/') && !(k in [{_OWN}]))"


# CEL (matchConditions): what meaningful_change says, so that nothing else reaches the webhook.
USER_CHANGE = (
    "request.operation != 'UPDATE' || object.spec != oldObject.spec"
    f" || {_user_keys('object')}.exists(k, oldObject.metadata.?annotations.orValue({{}})[?k].orValue('')"
    " != object.metadata.annotations[k] || !(k in oldObject.metadata.?annotations.orValue({})))"
    f" || {_user_keys('oldObject')}.exists(k, !(k in object.metadata.?annotations.orValue({{}})))"
)


# --- the handler --------------------------------------------------------------------------------------


def review(
    operation: str,
    body: kopf.Body,
    old: kopf.Body | None,
    new: kopf.Body | None,
    userinfo: dict[str, Any],
    dryrun: bool,
    memo: kopf.Memo,
    sslpeer: Any = None,
    **_: Any,
) -> None:
    """Refuses (AdmissionError) only for a policy; a failure of its own lets the request through."""
    services = memo.get("services")
    if services is None or operation not in ACTIONS:
        return  # still starting: the reconcile-time check decides
    cfg: settings.Settings = services.settings
    who = report.Requester(
        str(userinfo.get("username", "")),
        tuple(str(g) for g in userinfo.get("groups") or ()),
        verified=bool(cfg.webhook_client_ca and sslpeer),
    )
    try:
        if operation == "DELETE":
            _deleting(services, body, who, dryrun)
            return
        if operation == "UPDATE" and not meaningful_change(old, new):
            return
        violations = _violations(services, body, old if operation == "UPDATE" else None)
        if not dryrun:
            _record(services, body, REFUSED[operation] if violations else ACTIONS[operation], who, violations)
    except Exception:  # a fault of dbops' own must never refuse a user's request
        log.exception("admission review of %s failed; the request goes through", operation)
        return
    if violations:
        raise kopf.AdmissionError("; ".join(violations), code=403)


def _violations(services: Any, body: kopf.Body, old: kopf.Body | None) -> list[str]:
    """The policy violations of the request; for an UPDATE, only those the old object did not have."""
    namespace = str(body.get("metadata", {}).get("namespace", ""))
    if not _watched(services.settings, namespace):
        return []  # another operator's namespace: not ours to judge
    found = _judge(services, body, namespace)
    if old is not None:
        before = set(_judge(services, old, namespace))
        found = [v for v in found if v not in before]
    return found


def _judge(services: Any, obj: Any, namespace: str) -> list[str]:
    asked = request_of(str(obj.get("kind", "")), dict(obj.get("spec") or {}), namespace, services.settings.region)
    return [] if asked is None else list(services.tenancy.review(asked))


def request_of(kind: str, spec: dict[str, Any], namespace: str, region: str) -> Request | None:
    """The request of a spec; None when it cannot be read (the reconcile core then fails it, in words)."""
    try:
        if kind == "DBRestore":
            return restore_tenancy.request(DBRestoreSpec.model_validate(spec), namespace, region)
        if kind == "DBAttach":
            return attach_tenancy.request(DBAttachSpec.model_validate(spec), namespace, region)
    except (ValidationError, SpecError):
        pass
    return None


def _watched(cfg: settings.Settings, namespace: str) -> bool:
    patterns = [p.strip() for p in cfg.namespace.split(",") if p.strip()]
    # kopf's own matching, so that the webhook judges exactly the namespaces this operator serves.
    return not patterns or any(match_namespace(NamespaceName(namespace), p) for p in patterns)


def _deleting(services: Any, body: kopf.Body, who: report.Requester, dryrun: bool) -> None:
    """Write the deleter on the object (signed, bound to its UID), then record the request."""
    if dryrun:
        return
    meta = body.get("metadata", {})
    plural = PLURALS.get(str(body.get("kind")))
    signer = services.reporter.signer
    if plural and signer is not None and meta.get("uid"):
        value = report.deleter_annotation(signer, str(meta["uid"]), who)
        if (meta.get("annotations") or {}).get(report.DELETED_BY) == value:
            # The API server asks again when the object changed under its DELETE (our own annotation
            # did): the same deleter, already written and recorded.
            return
        services.kube.annotate(plural, str(meta["namespace"]), str(meta["name"]), {report.DELETED_BY: value})
    _record(services, body, ACTIONS["DELETE"], who, [])


def _record(services: Any, body: kopf.Body, action: str, who: report.Requester, violations: list[str]) -> None:
    meta = body.get("metadata", {})
    spec = body.get("spec", {})
    annotations = meta.get("annotations") or {}
    verb = action.split("-", maxsplit=1)[0]
    message = f"{verb} refused ({'; '.join(violations)})" if violations else f"{verb} requested"
    services.reporter.notify(
        report.Record(
            kind=str(body.get("kind", "")),
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            action=action,
            reason="PolicyViolation" if violations else "Admission",
            message=f"{message} by {who.username}",
            warning=bool(violations),
            source=(body.get("status") or {}).get("source"),
            target=(spec.get("target") or {}).get("identifier")
            or spec.get("identifier")
            or spec.get("identifierPrefix"),
            requester=who.username,
            requester_groups=who.groups,
            requester_verified=who.verified,
            annotations={k: str(v) for k, v in annotations.items() if k.startswith(f"{GROUP}/")},
        )
    )


for _kind, _plural in PLURALS.items():
    kopf.on.validate(
        GROUP,
        VERSION,
        _plural,
        id=f"validate.{_plural}",
        operations=["CREATE", "UPDATE", "DELETE"],
        side_effects=True,
        ignore_failures=True,
    )(review)  # type: ignore[arg-type]


# --- the configuration, kept by the operator (not kopf: kopf's has no matchConditions) ---------------------


def configuration(client: dict[str, Any], ca_bundle: bytes) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration: one webhook per kind, unable to block anyone (module docstring)."""
    bundle = base64.b64encode(ca_bundle).decode()
    hooks = []
    for plural in PLURALS.values():
        path = f"/validate.{plural}"
        ref = {"url": client["url"] + path} if "url" in client else {"service": {**client["service"], "path": path}}
        hooks.append(
            {
                "name": f"{plural}.{GROUP}",
                "clientConfig": {**ref, "caBundle": bundle},
                "rules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "resources": [plural],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "scope": "Namespaced",
                    }
                ],
                "failurePolicy": "Ignore",
                "sideEffects": "NoneOnDryRun",
                "timeoutSeconds": 5,
                "matchPolicy": "Equivalent",
                "admissionReviewVersions": ["v1"],
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system"]}
                    ]
                },
                "matchConditions": [{"name": "a-user-asks-for-a-change", "expression": USER_CHANGE}],
            }
        )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION, "labels": {"app.kubernetes.io/name": "dbops"}},
        "webhooks": hooks,
    }


def client_config(cfg: settings.Settings) -> dict[str, Any]:
    """How the API server reaches the webhook: a Service (in-cluster), or a URL (a host: tests, dev)."""
    if cfg.webhook_service:
        namespace, name, port = _service(cfg.webhook_service)
        return {"service": {"namespace": namespace, "name": name, "port": port}}
    return {"url": f"https://{cfg.webhook_host or '127.0.0.1'}:{cfg.webhook_port}"}


def _service(text: str) -> tuple[str, str, int]:
    ref, _, port = text.partition(":")
    namespace, _, name = ref.partition("/")
    if not namespace or not name:
        raise ValueError(f"DBOPS_WEBHOOK_SERVICE must be NAMESPACE/NAME[:PORT], not {text!r}")
    return namespace, name, int(port or 443)


def secret_ref(cfg: settings.Settings) -> tuple[str, str]:
    """Where the keys Secret is: DBOPS_WEBHOOK_SECRET, else the pod's own namespace."""
    if cfg.webhook_secret:
        namespace, _, name = cfg.webhook_secret.partition("/")
        return namespace, name or "dbops-webhook"
    own = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() if SERVICE_ACCOUNT_NAMESPACE.exists() else "dbops-system"
    return own, "dbops-webhook"


def hostnames(cfg: settings.Settings) -> list[str]:
    names = [cfg.webhook_host or "", "127.0.0.1", "localhost"]
    if cfg.webhook_service:
        ns, name, _ = _service(cfg.webhook_service)
        names += [f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
    return names


def server(cfg: settings.Settings, keys: keys_mod.Keys) -> tuple[kopf.WebhookServer, bytes]:
    """The HTTPS server, and the CA bundle the API server must trust for it: a mounted certificate
    (cert-manager), else the replicas' shared one from the keys Secret."""
    if cfg.webhook_certfile and cfg.webhook_keyfile:
        certfile, keyfile = cfg.webhook_certfile, cfg.webhook_keyfile
        bundle = pathlib.Path(cfg.webhook_cafile or certfile).read_bytes()
    else:
        directory = pathlib.Path(tempfile.mkdtemp(prefix="dbops-webhook-"))
        (directory / "tls.crt").write_bytes(keys.cert_pem)
        (directory / "tls.key").touch(mode=0o600)
        (directory / "tls.key").write_bytes(keys.key_pem)
        certfile, keyfile, bundle = str(directory / "tls.crt"), str(directory / "tls.key"), keys.ca_bundle
    verify: dict[str, Any] = {}
    if cfg.webhook_client_ca:  # only the API server's client certificate gets through the handshake
        verify = {"verify_mode": ssl.CERT_REQUIRED, "verify_cafile": cfg.webhook_client_ca}
    hook = kopf.WebhookServer(
        addr=cfg.webhook_addr,
        port=cfg.webhook_port,
        host=cfg.webhook_host,
        certfile=certfile,
        pkeyfile=keyfile,
        cadata=bundle,
        **verify,
    )
    return hook, bundle


@kopf.on.startup()
async def configure_admission(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    services = memo.get("services")
    if services is None:  # dbops.app's startup builds them first
        raise kopf.TemporaryError("waiting for the operator's services", delay=1)
    cfg = services.settings
    namespace, name = secret_ref(cfg)
    keys = await asyncio.to_thread(keys_mod.load_or_create, services.kube, namespace, name, hostnames(cfg))
    services.reporter.signer = keys
    settings.admission.server, bundle = server(cfg, keys)
    settings.admission.managed = None  # kept below, with matchConditions kopf's would not write
    await asyncio.to_thread(services.kube.put_webhook_configuration, configuration(client_config(cfg), bundle))
    await asyncio.to_thread(services.kube.empty_mutating_webhooks, CONFIGURATION)
    # Ready (the Service sends this replica reviews) only once the server listens: kopf starts it after
    # the startup handlers.
    asyncio.get_running_loop().create_task(_ready_when_listening(services.health, cfg))
    log.info(
        "admission webhook on %s:%d (ValidatingWebhookConfiguration %s)",
        cfg.webhook_addr,
        cfg.webhook_port,
        CONFIGURATION,
    )


async def _ready_when_listening(health: Any, cfg: settings.Settings) -> None:
    host = "127.0.0.1" if cfg.webhook_addr in ("0.0.0.0", "::", "") else cfg.webhook_addr  # noqa: S104 - compares
    while True:
        try:
            _, writer = await asyncio.open_connection(host, cfg.webhook_port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        writer.close()
        health.ready.set()
        return
