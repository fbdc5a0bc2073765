"""Runs a DBRestore's verification probes: the one place where dbops connects to a database it restored.

It connects as the master user RDS reports (MasterUsername) with the password the restore set: read from
the spec's Secret, or from the RDS-managed secret in Secrets Manager (the MasterUserSecret ARN RDS
reports). Each probe runs in a read-only transaction with a statement timeout, and only as many rows are
fetched as its expectation needs. The password is registered with the log redaction before any driver
sees it, and no driver message reaches status without the redaction and a bound (verify.bounded).
What the results mean is decided in verify.py.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dbops import redact
from dbops.core.aws import AWS_EXCEPTIONS, Aws, classify
from dbops.core.kube import K8sError
from dbops.core.reconciler import Pass
from dbops.models import DBRestoreSpec, Probe, Verify, VerifyTLS
from dbops.restore import verify
from dbops.restore.source import parse_duration

APPLICATION = "dbops-verify"


class UnavailableError(Exception):
    """Credentials or the CA could not be had (yet); `reason` is the status reason."""

    def __init__(self, reason: str, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.reason, self.final = reason, final


@dataclass(frozen=True)
class Target:
    """Where and how to connect (the password never leaves this module's calls)."""

    family: verify.Family
    host: str
    port: int
    user: str
    password: str
    database: str | None
    mode: str
    ca_file: str | None
    timeout: float


def attempt(p: Pass, aws: Aws, region: str, spec: DBRestoreSpec, db: dict[str, Any], ca_bundle: str) -> verify.Attempt:
    """One try: credentials, the CA, a connection, then every probe in order."""
    assert spec.verify is not None
    engine = str(db.get("Engine") or "")
    family = verify.family(engine)
    if family is None:
        message = f"dbops verifies PostgreSQL, MySQL and MariaDB engines; {engine or 'this engine'} is none of them"
        return verify.Attempt(unreachable="UnsupportedEngine", message=message, final=True)
    host, port = _endpoint(db)
    if not host or not port:
        return verify.Attempt(unreachable="ConnectFailed", message="RDS reports no endpoint yet")
    tls = spec.verify.tls or VerifyTLS()
    try:
        user, password = credentials(p, aws, region, spec, db)
        with _ca_file(p, tls, ca_bundle) as ca_file:
            target = Target(
                family, host, port, user, password, spec.verify.database, tls.mode, ca_file, _seconds(spec.verify)
            )
            return run(target, spec.verify.probes)
    except UnavailableError as err:
        return verify.Attempt(unreachable=err.reason, message=redact.redact(str(err)), final=err.final)


def _endpoint(db: dict[str, Any]) -> tuple[str | None, int | None]:
    ep = db.get("Endpoint")
    host = ep.get("Address") if isinstance(ep, dict) else ep
    port = (ep.get("Port") if isinstance(ep, dict) else None) or db.get("Port")
    return (str(host) if host else None), (int(port) if port else None)


def _seconds(spec: Verify) -> float:
    return max(1.0, parse_duration(spec.timeout).total_seconds())


def credentials(p: Pass, aws: Aws, region: str, spec: DBRestoreSpec, db: dict[str, Any]) -> tuple[str, str]:
    """The master user and the password the restore set (registered with the log redaction at once)."""
    user = str(db.get("MasterUsername") or "")
    cfg = spec.master_password
    if cfg is not None and cfg.secret_ref is not None:
        try:
            password = p.services.kube.read_secret(p.namespace, cfg.secret_ref.name, cfg.secret_ref.key)
        except K8sError as err:
            raise UnavailableError("CredentialsUnavailableError", f"the master password Secret: {err}") from None
    else:
        password, user = _managed(aws, region, db, user)
    if not user:
        raise UnavailableError("CredentialsUnavailableError", "RDS reports no master user name")
    return user, password


def _managed(aws: Aws, region: str, db: dict[str, Any], user: str) -> tuple[str, str]:
    """The RDS-managed master password, from the Secrets Manager secret RDS reports (it is made
    asynchronously after the modify: missing at first is not a failure yet)."""
    arn = (db.get("MasterUserSecret") or {}).get("SecretArn")
    if not arn:
        raise UnavailableError("CredentialsUnavailableError", "RDS reports no master user secret (yet)")
    try:
        found = aws.client(region, "secretsmanager").get_secret_value(SecretId=arn)
    except AWS_EXCEPTIONS as exc:
        raise UnavailableError("CredentialsUnavailableError", f"the master user secret: {classify(exc)}") from None
    try:
        value = json.loads(found.get("SecretString") or "{}")
        password = str(value["password"])
    except (ValueError, KeyError, TypeError):
        raise UnavailableError("CredentialsUnavailableError", "the master user secret holds no password") from None
    redact.register(password)
    return password, user or str(value.get("username") or "")  # RDS's MasterUsername first: it is the authority


@contextlib.contextmanager
def _ca_file(p: Pass, tls: VerifyTLS, bundle: str) -> Iterator[str | None]:
    """The CA file to verify the server with: the Secret's (written to a temporary file), or the RDS bundle."""
    if tls.mode not in ("verify-full", "verify-ca"):
        yield None
        return
    if tls.ca_secret_ref is None:
        if not os.path.isfile(bundle):
            raise UnavailableError(
                "CABundleMissing",
                f"no RDS CA bundle at {bundle}: mount AWS's global-bundle.pem there (DBOPS_RDS_CA_BUNDLE), or "
                "name a CA in spec.verify.tls.caSecretRef",
                final=True,
            )
        yield bundle
        return
    ref = tls.ca_secret_ref
    try:
        pem = p.services.kube.read_secret(p.namespace, ref.name, ref.key)
    except K8sError as err:
        raise UnavailableError("CANotReadable", f"spec.verify.tls.caSecretRef: {err}") from None
    with tempfile.NamedTemporaryFile("w", prefix="dbops-ca-", suffix=".pem") as f:
        f.write(pem)
        f.flush()
        yield f.name


# --- connecting and running -----------------------------------------------------------------------------


def run(target: Target, probes: list[Probe]) -> verify.Attempt:
    redact.register(target.password)
    try:
        conn = _connect(target)
    except Exception as exc:  # every driver's and ssl's errors: the reason is in the message
        return verify.Attempt(unreachable="ConnectFailed", message=_describe(exc, target))
    try:
        _read_only(conn, target)
        return verify.Attempt(outcomes=tuple(_probe(conn, target, probe) for probe in probes))
    except Exception as exc:  # the session setup failed: no probe can run on it
        return verify.Attempt(unreachable="ConnectFailed", message=_describe(exc, target))
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
            conn.close()


def _connect(t: Target) -> Any:
    if t.family == "postgresql":
        import psycopg2  # noqa: PLC0415 - imported only by an operator that verifies

        return psycopg2.connect(
            host=t.host,
            port=t.port,
            user=t.user,
            password=t.password,
            dbname=t.database or "postgres",
            connect_timeout=max(2, math.ceil(t.timeout)),
            sslmode=t.mode,
            sslrootcert=t.ca_file or "",
            application_name=APPLICATION,
            options=f"-c statement_timeout={int(t.timeout * 1000)} -c default_transaction_read_only=on",
        )
    import pymysql  # noqa: PLC0415

    return pymysql.connect(
        host=t.host,
        port=t.port,
        user=t.user,
        password=t.password,
        database=t.database,
        connect_timeout=t.timeout,
        read_timeout=t.timeout,
        write_timeout=t.timeout,
        ssl=_mysql_tls(t),
        charset="utf8mb4",
        autocommit=False,
        program_name=APPLICATION,
    )


def _mysql_tls(t: Target) -> ssl.SSLContext | None:
    """PyMySQL takes an SSLContext: the same modes as libpq's sslmode."""
    if t.mode == "disable":
        return None
    ctx = ssl.create_default_context(cafile=t.ca_file) if t.ca_file else ssl.create_default_context()
    # Weaker than verify-full only where the DBRestore asks for it by name (spec.verify.tls.mode
    # verify-ca or require, libpq's sslmode words); the default is verify-full against the RDS CA.
    if t.mode != "verify-full":
        ctx.check_hostname = False  # nosemgrep: dbops-tls-verification-off
    if t.mode == "require":
        ctx.verify_mode = ssl.CERT_NONE  # nosemgrep: dbops-tls-verification-off
    return ctx


def _read_only(conn: Any, t: Target) -> None:
    """Probes never change the restored database (a probe is a query, and a typo must stay harmless)."""
    if t.family == "postgresql":
        conn.set_session(readonly=True, autocommit=False)
        return
    with conn.cursor() as cur:
        cur.execute("SET SESSION TRANSACTION READ ONLY")
        with contextlib.suppress(Exception):  # MySQL's statement timeout; MariaDB's is max_statement_time
            cur.execute("SET SESSION max_execution_time = %s", (int(t.timeout * 1000),))
        with contextlib.suppress(Exception):
            cur.execute("SET SESSION max_statement_time = %s", (t.timeout,))
    conn.commit()


def _probe(conn: Any, t: Target, probe: Probe) -> verify.ProbeOutcome:
    began = time.monotonic()
    wanted = probe.expect.min_rows or 1
    try:
        with conn.cursor() as cur:
            cur.execute(probe.query)
            rows = [tuple(r) for r in (cur.fetchmany(wanted) if cur.description else [])]
    except Exception as exc:  # the query's own error (syntax, a missing table, the timeout)
        with contextlib.suppress(Exception):
            conn.rollback()
        return verify.error(probe.name, probe.expect, _describe(exc, t), time.monotonic() - began)
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()  # each probe in a transaction of its own, read-only
    return verify.check(probe.name, probe.expect, rows, time.monotonic() - began)


def _describe(exc: BaseException, t: Target) -> str:
    """A driver's error in one bounded line, with no secret in it."""
    text = str(exc).strip() or type(exc).__name__
    where = f"{t.host}:{t.port}"
    return verify.bounded(redact.redact(f"{where}: {type(exc).__name__}: {text}"))
