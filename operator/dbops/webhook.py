"""Admission webhooks for DBRestore and DBAttach: who asked.

The requesting user is known only at admission, so dbops serves kopf's admission webhooks (HTTPS) and
kopf manages their configurations in the cluster (settings.admission.managed):

- mutating, on CREATE and UPDATE: stamps ``dbops.dev/requested-by`` (username and groups, JSON) with the
  requester, overwriting whatever the request carried, so it cannot be forged. An UPDATE that does not
  change the spec or a dbops.dev/ annotation (the operator's own finalizer and progress patches, label
  edits) keeps the previous value. failurePolicy Fail and persistent (left in place when the operator
  stops): while it cannot answer, DBRestore and DBAttach writes are refused, rather than accepted with
  an unverifiable requester. Nothing is lost by refusing: without the operator nothing would act on them.
- validating, on CREATE, UPDATE and DELETE: never rejects (the CRD schema and CEL rules already refuse
  malformed objects); it records the request in the audit trail with the requester, and remembers who
  asked for a deletion so that the operator's deletion records carry the deleter. failurePolicy Ignore
  and not persistent: it only observes, and must never block a user's request.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import pathlib
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dbops import settings
from dbops.core import report
from dbops.models import GROUP, VERSION

log = logging.getLogger(__name__)

PLURALS = ("dbrestores", "dbattaches")
ACTIONS = {"CREATE": "create-requested", "UPDATE": "update-requested", "DELETE": "delete-requested"}


def _requester(userinfo: dict[str, Any]) -> report.Requester:
    return report.Requester(str(userinfo.get("username", "")), tuple(str(g) for g in userinfo.get("groups") or ()))


def _user_annotations(obj: Any) -> dict[str, str]:
    annotations = dict(((obj or {}).get("metadata") or {}).get("annotations") or {})
    return {k: v for k, v in annotations.items() if k.startswith(f"{GROUP}/") and k != report.REQUESTED_BY}


def meaningful_change(old: Any, new: Any) -> bool:
    """A change a user asks for: the spec, or a dbops.dev/ annotation (retry, notifications)."""
    return bool(
        dict((old or {}).get("spec") or {}) != dict((new or {}).get("spec") or {})
        or _user_annotations(old) != _user_annotations(new)
    )


def _annotation(obj: Any, key: str) -> str | None:
    value = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(key)
    return None if value is None else str(value)


def stamp(
    operation: str, body: kopf.Body, old: kopf.Body | None, userinfo: dict[str, Any], patch: kopf.Patch, **_: Any
) -> None:
    current = _annotation(body, report.REQUESTED_BY)
    if operation == "CREATE" or meaningful_change(old, body):
        wanted: str | None = _requester(userinfo).to_annotation()
    else:
        wanted = _annotation(old, report.REQUESTED_BY)
    if current != wanted:
        patch.metadata.annotations[report.REQUESTED_BY] = wanted


def record(
    operation: str,
    body: kopf.Body,
    old: kopf.Body | None,
    new: kopf.Body | None,
    userinfo: dict[str, Any],
    dryrun: bool,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Never raises an AdmissionError: an observer, not a gate."""
    if dryrun or operation not in ACTIONS:
        return
    if operation == "UPDATE" and not meaningful_change(old, new):
        return
    try:
        who = _requester(userinfo)
        meta = body.get("metadata", {})
        uid = str(meta.get("uid", ""))
        reporter: report.Reporter = memo["services"].reporter
        if operation == "DELETE" and uid:
            reporter.deleted_by(uid, who)
        spec = body.get("spec", {})
        annotations = meta.get("annotations") or {}
        reporter.notify(
            report.Record(
                kind=str(body.get("kind", "")),
                namespace=str(meta.get("namespace", "")),
                name=str(meta.get("name", "")),
                uid=uid,
                action=ACTIONS[operation],
                reason="Admission",
                message=f"{operation.lower()} requested by {who.username}",
                source=(body.get("status") or {}).get("source"),
                target=(spec.get("target") or {}).get("identifier") or spec.get("identifier"),
                requester=who.username,
                requester_groups=who.groups,
                annotations={k: str(v) for k, v in annotations.items() if k.startswith(f"{GROUP}/")},
            )
        )
    except Exception:  # an audit failure must never turn into a rejected request
        log.exception("recording an admission request failed")


for _plural in PLURALS:
    kopf.on.mutate(
        GROUP,
        VERSION,
        _plural,
        id=f"requester.{_plural}",
        operations=["CREATE", "UPDATE"],
        persistent=True,
        ignore_failures=False,
    )(stamp)  # type: ignore[arg-type]
    kopf.on.validate(
        GROUP,
        VERSION,
        _plural,
        id=f"audit.{_plural}",
        operations=["CREATE", "UPDATE", "DELETE"],
        side_effects=True,
        ignore_failures=True,
    )(record)  # type: ignore[arg-type]


# --- the HTTPS server ----------------------------------------------------------------------------


def self_signed(directory: pathlib.Path, hostnames: list[str]) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed serving certificate (also its own CA bundle) for the given names and IPs."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys(h for h in hostnames if h):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dbops-webhook")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / "tls.crt", directory / "tls.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.touch(mode=0o600)
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certfile, keyfile


class ServiceWebhookServer(kopf.WebhookServer):
    """kopf's server, but the webhook configurations point at a Service (in-cluster) instead of a URL."""

    def __init__(self, *, service: tuple[str, str, int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service

    async def __call__(self, fn: Any) -> AsyncIterator[Any]:
        namespace, name, port = self.service
        async for config in super().__call__(fn):
            ref: dict[str, Any] = {"service": {"namespace": namespace, "name": name, "port": port, "path": ""}}
            if config.get("caBundle"):
                ref["caBundle"] = config["caBundle"]
            yield ref


def _service(text: str) -> tuple[str, str, int]:
    ref, _, port = text.partition(":")
    namespace, _, name = ref.partition("/")
    if not namespace or not name:
        raise ValueError(f"DBOPS_WEBHOOK_SERVICE must be NAMESPACE/NAME[:PORT], not {text!r}")
    return namespace, name, int(port or 443)


def server(cfg: settings.Settings) -> kopf.WebhookServer:
    """The admission server from the settings: a mounted certificate, else a self-signed one."""
    certfile, keyfile = cfg.webhook_certfile, cfg.webhook_keyfile
    service = _service(cfg.webhook_service) if cfg.webhook_service else None
    if not (certfile and keyfile):
        names = [cfg.webhook_host or "", cfg.webhook_addr, "127.0.0.1", "localhost"]
        if service:
            ns, name, _ = service
            names += [f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
        names = [n for n in names if n not in ("0.0.0.0", "::")]  # noqa: S104 - filters the wildcard out; binds nothing
        directory = pathlib.Path(tempfile.mkdtemp(prefix="dbops-webhook-"))
        generated = self_signed(directory, names)
        certfile, keyfile = str(generated[0]), str(generated[1])
    options: dict[str, Any] = {
        "addr": cfg.webhook_addr,
        "port": cfg.webhook_port,
        "host": cfg.webhook_host,
        "certfile": certfile,
        "pkeyfile": keyfile,
        "cafile": cfg.webhook_cafile,
    }
    if service:
        return ServiceWebhookServer(service=service, **options)
    return kopf.WebhookServer(**options)


@kopf.on.startup()
def configure_admission(settings: kopf.OperatorSettings, **_: Any) -> None:
    cfg = _settings()
    settings.admission.server = server(cfg)
    settings.admission.managed = GROUP
    log.info("admission webhooks on %s:%d (configurations managed as %s)", cfg.webhook_addr, cfg.webhook_port, GROUP)


def _settings() -> settings.Settings:
    return settings.get()
