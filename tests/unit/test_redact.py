"""The redactor: registered secrets and secret-shaped values never reach a log line, whatever logs them."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import pathlib
import threading
import uuid
import warnings
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import boto3
import kopf
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from dbops import redact

LIBRARY_LOGGERS = (
    "botocore.endpoint",
    "boto3.resources",
    "urllib3.connectionpool",
    "requests",
    "kopf.objects",
    "aiohttp.client",
    "kubernetes.client.rest",
    "sqlalchemy.engine",
    "alembic.runtime.migration",
    "dbops.handlers",
)


def fresh_secret() -> str:
    """A value no other test registered (the registry is process-wide), with characters that encode."""
    return f"pw+{uuid.uuid4().hex[:10]}/é 'q\""


@pytest.fixture
def installed() -> Iterator[None]:
    redact.install()
    yield
    redact.uninstall()


@contextlib.contextmanager
def captured(logger: logging.Logger | None = None) -> Iterator[io.StringIO]:
    """What a handler on `logger` (default: root) writes, at DEBUG, with the exception and stack."""
    logger = logger or logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.usefixtures("installed")
def test_a_registered_value_is_masked_in_message_args_exception_and_traceback() -> None:
    secret = fresh_secret()
    redact.register(secret)
    log = logging.getLogger("dbops.test")
    with captured() as out:
        log.info(f"in the message {secret}")
        log.info("in the args %s and %r", secret, [secret])
        log.info("in a mapping %(value)s", {"value": secret})
        try:
            raise ValueError(f"in the exception {secret}")
        except ValueError:
            log.exception("failed")
        log.warning("with a stack", stack_info=True)
    text = out.getvalue()
    assert secret not in text and repr(secret)[1:-1] not in text
    assert "in the message ***" in text and "in the args *** and ['***']" in text and "in a mapping ***" in text
    assert "Traceback (most recent call last)" in text and "ValueError: in the exception ***" in text
    assert "Stack (most recent call last)" in text  # still there, only redacted


@pytest.mark.usefixtures("installed")
def test_a_traceback_source_line_is_redacted_too() -> None:
    with captured() as out:
        try:
            raise RuntimeError("no connection to postgresql://dbops:Tr4ceback-0nly@db:5432/audit")
        except RuntimeError:
            logging.getLogger("sqlalchemy.pool").exception("pool")
    text = out.getvalue()
    assert "Tr4ceback-0nly" not in text
    assert text.count("postgresql://dbops:***@db:5432/audit") == 2  # the source line and the message


def test_every_encoding_of_a_registered_value_is_masked() -> None:
    secret = fresh_secret()
    redact.register(secret)
    forms = [
        secret,
        quote_plus(secret),  # botocore's form-encoded bodies: MasterUserPassword=pw%2B...
        quote(secret, safe=""),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
        base64.b64encode(secret.encode()).decode(),
    ]
    for form in forms:
        assert redact.redact(f"before {form} after") == "before *** after", form


def test_a_url_registers_its_password_and_a_webhook_its_path() -> None:
    tag = uuid.uuid4().hex[:8]
    redact.register(f"postgresql+psycopg2://dbops:p%40ss-{tag}@db/audit")
    assert redact.redact(f"p%40ss-{tag} p@ss-{tag}") == "*** ***"
    redact.register_webhook(f"https://example.com/hook/{tag}?token=x{tag}\n")  # as read from a Secret
    assert redact.redact(f'"POST /hook/{tag}?token=x{tag} HTTP/1.1" 200') == '"POST *** HTTP/1.1" 200'


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "body: {'Action': 'ModifyDBInstance', 'MasterUserPassword': 'it\\'s-secret', 'ApplyImmediately': 'true'}",
            "body: {'Action': 'ModifyDBInstance', 'MasterUserPassword': '***', 'ApplyImmediately': 'true'}",
        ),
        ("body=b'Action=ModifyDBInstance&MasterUserPassword=ab%2Bcd&Version=1'", None),
        ('{"NewMasterUserPassword": "x\\"y", "n": 1}', '{"NewMasterUserPassword": "***", "n": 1}'),
        ("<MasterUserPassword>plain</MasterUserPassword>", "<MasterUserPassword>***</MasterUserPassword>"),
        ("<SecretAccessKey>wJalr</SecretAccessKey><SessionToken>FQo</SessionToken>", None),
        ("{'WebIdentityToken': 'eyJhbGciOi'}", "{'WebIdentityToken': '***'}"),
        ("{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=ab'}", "{'Authorization': b'***'}"),
        ("Authorization: Bearer abc.def.ghi", "Authorization: ***"),
        ("{'authorization': 'Bearer sha256~abcdefgh'}", "{'authorization': '***'}"),
        ("token Bearer abcdefghijkl", "token Bearer ***"),
        ("X-Amz-Security-Token=IQoJb3JpZ2lu&X-Amz-Date=1", "X-Amz-Security-Token=***&X-Amz-Date=1"),
        (
            '127.0.0.1:80 "POST /services/T0AB/B0CD/xYz123 HTTP/1.1" 200 2',
            '127.0.0.1:80 "POST /services/*** HTTP/1.1" 200 2',
        ),
        ("posting to https://hooks.slack.com/services/T1/B2/c3 now", "posting to https://hooks.slack.com/*** now"),
        ("postgresql://dbops:hunter2@db:5432/audit", "postgresql://dbops:***@db:5432/audit"),
        ("host=db password=hunter2 dbname=audit", "host=db password=*** dbname=audit"),
    ],
)
def test_secret_shapes_are_masked_unregistered(line: str, expected: str | None) -> None:
    masked = redact.redact(line)
    if expected is not None:
        assert masked == expected
    for value in ("it\\'s-secret", "ab%2Bcd", 'x\\"y', "plain", "wJalr", "FQo", "eyJ", "AKIA", "abc.def", "hunter2"):
        assert value not in masked


@pytest.mark.parametrize(
    "line",
    [
        "ManageMasterUserPassword=True",
        "condition MasterPasswordSet=True (PasswordSet): master password set from Secret pw",
        "{'masterPassword': {'secretRef': {'name': 'pw', 'key': 'password'}}}",
        "bearer tokens are registered",
        "GET /apis/dbops.dev/v1alpha1/namespaces/team-a/dbrestores HTTP/1.1",
        "https://rds.us-east-1.amazonaws.com:443/",
    ],
)
def test_what_is_not_secret_stays(line: str) -> None:
    assert redact.redact(line) == line


@pytest.mark.usefixtures("installed")
def test_every_library_logger_and_the_root_logger() -> None:
    secret = fresh_secret()
    redact.register(secret)
    with captured() as out:
        for name in LIBRARY_LOGGERS:  # WARNING: SQLAlchemy holds its loggers at WARNING unless told
            logging.getLogger(name).warning("%s says %s", name, secret)
        logging.getLogger().debug("root says %s", secret)
    text = out.getvalue()
    assert secret not in text
    assert all(f"{name} says ***" in text for name in LIBRARY_LOGGERS) and "root says ***" in text


@pytest.mark.usefixtures("installed")
def test_a_logger_and_handler_created_after_installation() -> None:
    secret = fresh_secret()
    late = logging.getLogger(f"late.{uuid.uuid4().hex}")
    late.propagate = False  # only the handler added now, after install
    with captured(late) as out:
        redact.register(secret)  # and a value registered after the logger exists
        late.error("late %s", secret)
    assert out.getvalue() == f"{late.name} ERROR late ***\n"


@pytest.mark.usefixtures("installed")
def test_a_record_from_another_thread_and_an_uncaught_exception_in_one() -> None:
    secret = fresh_secret()
    redact.register(secret)

    def logs() -> None:
        logging.getLogger("urllib3.connectionpool").debug('"POST /x?k=%s HTTP/1.1" 200', quote_plus(secret))
        raise RuntimeError(f"crashed with {secret}")

    with captured() as out:
        worker = threading.Thread(target=logs, name="worker")
        worker.start()
        worker.join()
    text = out.getvalue()
    assert secret not in text and quote_plus(secret) not in text
    assert '"POST /x?k=*** HTTP/1.1" 200' in text
    assert "uncaught exception in thread worker" in text and "RuntimeError: crashed with ***" in text


@pytest.mark.usefixtures("installed")
def test_kopf_configure_installs_handlers_that_see_only_redacted_records() -> None:
    secret = fresh_secret()
    redact.register(secret)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        kopf.configure(verbose=True, log_format=kopf.LogFormat.FULL)
        (kopf_handler,) = [h for h in root.handlers if h not in handlers]
        out = io.StringIO()
        kopf_handler.setStream(out)  # type: ignore[attr-defined]
        logging.getLogger("botocore.endpoint").debug("Making request with params: %r", {"body": secret})
    finally:
        root.handlers[:], root.level = handlers, level
    assert "Making request with params: {'body': '***'}" in out.getvalue() and secret not in out.getvalue()


@pytest.mark.usefixtures("installed")
def test_botocore_request_lines_for_modify_db_instance() -> None:
    """botocore's own DEBUG lines, as it writes them: a registered password and an unregistered one."""
    registered, unregistered = fresh_secret(), f"Unreg1stered-{uuid.uuid4().hex[:6]}"
    redact.register(registered)
    rds = boto3.client(
        "rds",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",  # nothing listens: the request is logged, then refused
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="not-registered-either",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    with captured() as out:
        for password in (registered, unregistered):
            with pytest.raises(EndpointConnectionError):
                rds.modify_db_instance(DBInstanceIdentifier="db1", MasterUserPassword=password)
    text = out.getvalue()
    assert text.count("'MasterUserPassword': '***'") == 2  # botocore.endpoint's "Making request ... params"
    for value in (registered, unregistered, quote_plus(registered)):
        assert value not in text


@pytest.mark.usefixtures("installed")
def test_warnings_and_unformattable_messages() -> None:
    secret = fresh_secret()
    redact.register(secret)
    with captured() as out, warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"deprecated {secret}", DeprecationWarning, stacklevel=1)
        logging.getLogger("dbops.test").info("%s and %s", secret)  # noqa: PLE1206 - no crash, no leak
    text = out.getvalue()
    assert secret not in text and "deprecated ***" in text and "arguments that do not fit" in text


def test_environment_secrets_and_token_files(tmp_path: pathlib.Path) -> None:
    key, token = f"aws-key-{uuid.uuid4().hex}", f"eyJ-{uuid.uuid4().hex}"
    (tmp_path / "token").write_text(token + "\n")
    redact.register_environment({"AWS_SECRET_ACCESS_KEY": key, "AWS_WEB_IDENTITY_TOKEN_FILE": str(tmp_path / "token")})
    assert redact.redact(f"{key} {token}") == "*** ***"


def test_the_pattern_is_rebuilt_only_when_the_set_grows() -> None:
    secret = fresh_secret()
    redact.register(secret)
    before = redact._known
    redact.register(secret)
    redact.register_webhook(None)
    assert redact._known is before
    redact.register(fresh_secret())
    assert redact._known is not before
