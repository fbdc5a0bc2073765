"""The operator's own keys, kept in one Secret of its namespace so that every replica has the same ones:
the admission webhook's serving certificate (so that the webhook configuration's caBundle holds for
whichever replica answers) and the key that signs what the webhook writes on objects (the deleter).

Whichever replica comes first creates the Secret (create is atomic: the others get a conflict and read
it). A certificate that has less than RENEW_DAYS left is replaced by the next replica to start, and the
previous one stays in the CA bundle until it expires, so that replicas not yet restarted still answer.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dbops.core.kube import ConflictError, Kube

log = logging.getLogger(__name__)

CERT, KEY, SIGNING, PREVIOUS = "tls.crt", "tls.key", "signing.key", "previous.crt"
VALID_DAYS = 730
RENEW_DAYS = 90


@dataclass(frozen=True)
class Keys:
    cert_pem: bytes
    key_pem: bytes
    signing_key: bytes
    previous_pem: bytes = b""

    @property
    def ca_bundle(self) -> bytes:
        """What the webhook configuration trusts: the certificate, and the one before it while valid."""
        return self.cert_pem + (self.previous_pem if self.previous_pem and _days_left(self.previous_pem) > 0 else b"")

    def sign(self, payload: dict[str, Any]) -> str:
        return hmac.new(self.signing_key, _canonical(payload), hashlib.sha256).hexdigest()

    def verify(self, payload: dict[str, Any], signature: str) -> bool:
        return hmac.compare_digest(self.sign(payload), signature)


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def load_or_create(kube: Kube, namespace: str, name: str, hostnames: list[str]) -> Keys:
    """The keys of Secret namespace/name, made (or renewed) here when missing (or about to expire)."""
    found = kube.read_core("Secret", namespace, name)
    if found is None:
        body = _secret(name, _fresh(hostnames, secrets.token_bytes(32)))
        try:
            kube.create_core("Secret", namespace, body)
            log.info("created the keys Secret %s/%s (webhook certificate, signing key)", namespace, name)
            return _keys(body)
        except ConflictError:  # another replica created it first: use its keys
            found = kube.read_core("Secret", namespace, name)
    if found is None:
        raise RuntimeError(f"Secret {namespace}/{name} could neither be created nor read")
    keys = _keys(found)
    if _days_left(keys.cert_pem) < RENEW_DAYS:
        keys = _renew(kube, namespace, found, keys, hostnames)
    return keys


def _renew(kube: Kube, namespace: str, found: dict[str, Any], keys: Keys, hostnames: list[str]) -> Keys:
    renewed = _fresh(hostnames, keys.signing_key, previous=keys.cert_pem)
    body = {**_secret(found["metadata"]["name"], renewed), "metadata": found["metadata"]}
    try:
        kube.replace_core("Secret", namespace, body)
        log.info("renewed the webhook certificate in Secret %s/%s", namespace, found["metadata"]["name"])
        return renewed
    except ConflictError:  # renewed by another replica meanwhile
        again = kube.read_core("Secret", namespace, found["metadata"]["name"])
        return _keys(again) if again else keys


def _secret(name: str, keys: Keys) -> dict[str, Any]:
    data = {CERT: keys.cert_pem, KEY: keys.key_pem, SIGNING: keys.signing_key, PREVIOUS: keys.previous_pem}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "dbops"}},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items() if v},
    }


def _keys(secret: dict[str, Any]) -> Keys:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    missing = [k for k in (CERT, KEY, SIGNING) if not data.get(k)]
    if missing:
        raise RuntimeError(f"Secret {secret['metadata']['name']} lacks {', '.join(missing)}")
    return Keys(data[CERT], data[KEY], data[SIGNING], data.get(PREVIOUS, b""))


def _days_left(cert_pem: bytes) -> float:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)) / datetime.timedelta(days=1)


def _fresh(hostnames: list[str], signing_key: bytes, previous: bytes = b"") -> Keys:
    cert, key = self_signed(hostnames)
    return Keys(cert, key, signing_key, previous)


def self_signed(hostnames: list[str]) -> tuple[bytes, bytes]:
    """A self-signed serving certificate (its own CA) for the given names and IPs: (cert, key) PEM."""
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
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key
