"""Secrets out of every log line, at every log level.

What it guarantees: once `install()` has run (the first thing `python -m dbops run` does), no log record of
any logger (dbops', kopf's, botocore's, urllib3's, the Kubernetes client's, SQLAlchemy's, the root logger's;
made before or after `install`, from any thread) reaches a handler with a secret in its message, its
arguments, its exception text and traceback or its stack: each is replaced by `***`. Secret means

- a value registered here the moment the operator reads it (`register`, `register_webhook`): master
  passwords from Secrets, Slack webhook URLs, the audit database's password, AWS keys and tokens from the
  environment, the Kubernetes bearer token; in each form it takes in a log line (raw, URL- and
  form-encoded, JSON- and repr-escaped, base64);
- anything secret by its shape, registered or not: `MasterUserPassword=...` and its kin in AWS request and
  response bodies, Slack webhook paths, `Authorization:` and `Bearer` values, `X-Amz-Security-Token`,
  the password of a `scheme://user:password@host` URL.

Uncaught exceptions (main thread and other threads) and Python warnings go through logging too, so that
their text is redacted as well. Not covered: what bypasses logging (print, writes to sys.stderr). A short or
common registered value masks each of its occurrences: the price of never missing one.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

MASK = "***"

_lock = threading.Lock()
_forms: set[str] = set()
# All registered forms in one alternation, longest first (so a value wins over a value it contains);
# rebuilt under _lock when the set grows, read without it (replacing a module global is atomic).
_known: re.Pattern[str] | None = None
# What install() replaced (record factory, excepthooks), for uninstall(); None while not installed.
_previous: tuple[Any, Any, Any] | None = None
_formatter = logging.Formatter()
log = logging.getLogger(__name__)

# Names whose values are secrets wherever they stand: AWS request and response fields, HTTP headers, DSNs.
_KEYS = (
    r"(?:New)?MasterUserPassword|WebIdentityToken|SecretAccessKey|SessionToken|X-Amz-Security-Token"
    r"|Authorization|password"
)
_KEYED = re.compile(
    # key, its closing quote if any, then = (form bodies, query strings, DSNs) or : (reprs, JSON, headers)
    rf"""(?P<key>\b(?:{_KEYS})['"]?\s*[:=]\s*)"""
    # a quoted value (repr, bytes repr, JSON: escapes included), or a bare one with an optional auth scheme
    rf"""(?P<value>b?(?P<q>['"])(?:\\.|(?!(?P=q)).)*(?P=q)"""
    rf"""|(?:(?:Bearer|Basic|AWS4-HMAC-SHA256)\s+)?[^\s&'",;{{}}\[\]()]+)""",
    re.IGNORECASE,
)
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"<(?P<tag>{_KEYS})>[^<]*</(?P=tag)>", re.IGNORECASE), rf"<\g<tag>>{MASK}</\g<tag>>"),
    (re.compile(r"\b(?P<scheme>Bearer)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\g<scheme> {MASK}"),
    # The whole path of a Slack webhook is the credential; urllib3 logs it without the host.
    (re.compile(r"(?P<host>hooks\.slack(?:-gov)?\.com)/[^\s'\"]+"), rf"\g<host>/{MASK}"),
    (re.compile(r"/services/T\w+/B\w+/\w+"), f"/services/{MASK}"),
    (re.compile(r"(?P<pre>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:'\"]*:)[^\s/@'\"]+(?=@)"), rf"\g<pre>{MASK}"),
)

# The operator's own credentials, when the environment or the pod hands them over.
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)
TOKEN_FILE_VARIABLES = ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


# --- the registry ---------------------------------------------------------------------------------


def register(value: str | None) -> None:
    """Treat `value` as a secret in every later log line; for a URL, its password as well."""
    if not value:
        return
    values = {value, value.strip()}
    password = _url_password(value)
    if password:
        values |= {password, unquote(password)}
    _add({form for v in values if v for form in _forms_of(v)})


def register_webhook(url: str | None) -> None:
    """A webhook URL, whose path is the credential: logged without its host by urllib3."""
    register(url)
    if url:
        parts = urlsplit(url.strip())
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(path) > 1:
            register(path)


def register_environment(environ: Mapping[str, str] = os.environ) -> None:
    """AWS secret keys and tokens from the environment, and the token files it and the pod name."""
    for name in SECRET_VARIABLES:
        register(environ.get(name))
    files = [environ.get(name) for name in TOKEN_FILE_VARIABLES] + [SERVICE_ACCOUNT_TOKEN]
    for path in filter(None, files):
        try:
            with open(path, encoding="utf-8") as f:
                register(f.read().strip())
        except OSError:
            continue  # not there: nothing to hide


def _forms_of(value: str) -> set[str]:
    """The forms a value takes in log lines."""
    return {
        value,
        quote_plus(value),  # form-encoded bodies (botocore's query protocol: RDS, STS, SES)
        quote(value, safe=""),  # URL paths and query strings
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],  # botocore logs request dicts
        repr(value.encode())[2:-1],  # ... and bodies as bytes
        base64.b64encode(value.encode()).decode(),  # Kubernetes Secret data
    }


def _url_password(value: str) -> str | None:
    try:
        parts = urlsplit(value.strip())
        return parts.password if parts.scheme and parts.netloc else None
    except ValueError:
        return None


def _add(forms: set[str]) -> None:
    global _known  # noqa: PLW0603 - one registry per process
    with _lock:
        if forms <= _forms:
            return  # the usual case: the same Secret read again
        _forms.update(forms)
        _known = re.compile("|".join(re.escape(f) for f in sorted(_forms, key=len, reverse=True)))


def redact(text: str) -> str:
    """`text` with every registered value and every secret-shaped value replaced by ***."""
    known = _known
    if known is not None:
        text = known.sub(MASK, text)
    text = _KEYED.sub(_mask_keyed, text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def _mask_keyed(match: re.Match[str]) -> str:
    quote_char = match["q"]
    if not quote_char:
        return f"{match['key']}{MASK}"
    opening = match["value"][: match["value"].index(quote_char) + 1]  # keeps a bytes repr's b
    return f"{match['key']}{opening}{MASK}{quote_char}"


# --- the logging layer ----------------------------------------------------------------------------


def install() -> None:
    """Redact every log record from now on (idempotent).

    Why a LogRecord factory: every record of every logger is made by Logger.makeRecord, which calls the
    process-wide factory, whichever thread logs and whenever the logger was created. A filter on a logger
    misses the records its children propagate to its handlers, and filters or formatters on handlers miss
    the handlers added later (kopf.configure's own stream handler, kopf's event poster, a library's), so
    the record is cleaned where it is born instead: message and arguments formatted into one redacted
    string, the exception and the stack formatted and redacted into text. What any handler or formatter
    does with it afterwards (kopf's prefixes, JSON, Kubernetes events) starts from the redacted record.
    """
    global _previous  # noqa: PLW0603 - installed once per process
    with _lock:
        if _previous is not None:
            return
        _previous = (logging.getLogRecordFactory(), sys.excepthook, threading.excepthook)
    previous = _previous[0]

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    logging.captureWarnings(True)  # warnings printed straight to stderr would bypass the factory
    sys.excepthook = _log_uncaught  # and so would the tracebacks Python prints itself
    threading.excepthook = _log_uncaught_in_thread
    register_environment()


def uninstall() -> None:
    """Undo `install` (for tests); the registry stays."""
    global _previous
    with _lock:
        previous, _previous = _previous, None
    if previous is not None:
        logging.setLogRecordFactory(previous[0])
        logging.captureWarnings(False)
        sys.excepthook, threading.excepthook = previous[1], previous[2]


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Message, exception and stack of `record` as redacted text; nothing left to format from raw values."""
    record.msg, record.args = redact(_message(record)), ()
    if record.exc_info:
        record.exc_text = _formatter.formatException(record.exc_info)
        record.exc_info = None  # no formatter may render the raw exception again
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # logging would print msg and args raw to stderr (Handler.handleError): not here
        try:
            return f"{record.msg!r} (arguments that do not fit the message: {record.args!r})"
        except Exception:
            return "(a log message that cannot be formatted)"


def _log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
    log.critical("uncaught exception", exc_info=(exc_type, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    log.error("uncaught exception in thread %s", name, exc_info=args.exc_value)
