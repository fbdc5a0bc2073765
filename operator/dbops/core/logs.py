"""The object a log line is about, on every line logged during its pass.

A pass runs in one worker thread: `about()` marks the thread with the object's reference for the pass,
and `ObjectRef`, a filter on the log handlers, puts it on each record as kopf's own per-object loggers
do (`k8s_ref`), so that kopf's formatters show it: `[namespace/name]` before the text, or the `object`
key of a JSON line. Lines of any logger count (dbops', botocore's during the pass' AWS calls), and
lines logged outside a pass have none.

Library loggers that write request and response bodies at DEBUG (botocore, urllib3, the Kubernetes
client, SQLAlchemy's engine) stay at WARNING whatever the level asked for: the redaction hides the
secrets it knows of in them, and there is no need to test it on every body.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

QUIET = ("botocore", "boto3", "s3transfer", "urllib3", "kubernetes", "sqlalchemy", "alembic")
_local = threading.local()


@contextlib.contextmanager
def about(kind: str, namespace: str, name: str) -> Iterator[None]:
    """Every line this thread logs in the block is about that object."""
    previous = getattr(_local, "ref", None)
    _local.ref = {"kind": kind, "namespace": namespace, "name": name}
    try:
        yield
    finally:
        _local.ref = previous


class ObjectRef(logging.Filter):
    """Adds the reference of the object of the pass (if any), and the logger's name, to each record a
    handler gets."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.logger = record.name  # a JSON line names its logger (an attribute of its own becomes a key)
        ref = getattr(_local, "ref", None)
        if ref is not None and not hasattr(record, "k8s_ref"):
            record.k8s_ref = ref
        return True


def settle(level: str, libraries: bool = False) -> None:
    """The root logger at `level`, the library loggers of QUIET never below WARNING (unless
    `libraries`), and the object reference on the lines of every handler the root logger has (call
    after kopf.configure made its handler)."""
    root = logging.getLogger()
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.NOTSET if libraries else max(logging.WARNING, root.level))
    for handler in root.handlers:
        if not any(isinstance(f, ObjectRef) for f in handler.filters):
            handler.addFilter(ObjectRef())
