"""Notifications when a restore or attach ends: Slack (incoming webhook) and e-mail (Amazon SES).

Configured per operator (DBOPS_SLACK_WEBHOOK_URL, DBOPS_SES_SENDER + DBOPS_NOTIFY_EMAIL) and overridable
per object with annotations:

- ``dbops.dev/notify-slack``: ``off``, or the name of a Secret in the object's namespace whose key
  ``webhook-url`` holds a Slack incoming-webhook URL (the URL is a credential: never in an annotation);
- ``dbops.dev/notify-email``: ``off``, or comma-separated recipients (replacing the operator's list).

Sending happens on a small thread pool: a slow or failing notifier never blocks or fails a restore. Each
notification is tried a few times with backoff, and counted in dbops_notifications_total.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from dbops import metrics, redact, settings
from dbops.core import report
from dbops.core.aws import Aws
from dbops.core.status import duration_words

log = logging.getLogger(__name__)

SLACK_ANNOTATION = "dbops.dev/notify-slack"
EMAIL_ANNOTATION = "dbops.dev/notify-email"
SLACK_SECRET_KEY = "webhook-url"  # noqa: S105 - the name of a key, not a value
OFF = frozenset({"off", "false", "no", "none", "disabled"})
OUTCOMES = {"available": "completed", "failed": "FAILED", "drill-failed": "restore drill FAILED"}


@dataclass(frozen=True)
class Message:
    subject: str
    text: str


def describe(record: report.Record, place: dict[str, Any] | None) -> Message:
    """What, where, endpoint, how long, and who asked: one subject line and a short body. `place` holds
    region, endpoint and port (report.where, in the details of the outcome's record)."""
    st = place or {}
    outcome = OUTCOMES.get(record.action, record.action)
    what = f"{record.kind} {record.namespace}/{record.name}"
    subject = f"[dbops] {what} {outcome}"
    lines = [f"{what} {outcome}: {record.message}"]
    target = record.target or st.get("dbClusterIdentifier") or st.get("dbInstanceIdentifier")
    where = [f"target {target}" if target else None, f"region {st['region']}" if st.get("region") else None]
    if any(where):
        lines.append("Where: " + ", ".join(w for w in where if w))
    if record.source:
        lines.append(f"Source: {record.source}")
    if st.get("endpoint"):
        port = f":{st['port']}" if st.get("port") else ""
        lines.append(f"Endpoint: {st['endpoint']}{port}")
    if record.action in ("failed", "drill-failed"):
        lines.append(f"Reason: {record.reason}")
    lines.extend(_drill_lines(record.details))
    seconds = record.details.get("duration_seconds")
    if isinstance(seconds, int | float):
        lines.append(f"Took: {_duration(float(seconds))}")
    who = record.requester or "unknown (no admission record)"
    if record.requester and not record.requester_verified:
        who += " (unverified)"
    groups = f" ({', '.join(record.requester_groups)})" if record.requester_groups else ""
    lines.append(f"Requested by: {who}{groups}")
    return Message(subject, "\n".join(lines))


def _drill_lines(details: dict[str, Any]) -> list[str]:
    """A drill's evidence: which run, the data's age (RPO), the time to recover (RTO), each probe."""
    found = [
        ("Run", details.get("run")),
        ("RPO", _duration(details["rpo_seconds"]) if isinstance(details.get("rpo_seconds"), int) else None),
        ("RTO", _duration(details["rto_seconds"]) if isinstance(details.get("rto_seconds"), int) else None),
        ("Probes", details.get("probes")),
    ]
    return [f"{label}: {value}" for label, value in found if value]


_duration = duration_words


@dataclass(frozen=True)
class Targets:
    slack_url: str | None
    emails: tuple[str, ...]


def targets(record: report.Record, cfg: settings.Settings, read_secret: Callable[[str, str, str], str]) -> Targets:
    """The operator's defaults, overridden by the object's annotations."""
    slack = cfg.slack_webhook_url.get_secret_value() if cfg.slack_webhook_url else None
    override = record.annotations.get(SLACK_ANNOTATION, "").strip()
    if override.lower() in OFF:
        slack = None
    elif override:
        slack = read_secret(record.namespace, override, SLACK_SECRET_KEY).strip()
        redact.register_webhook(slack)  # urllib3 logs the path alone, and the path is the credential
    emails = tuple(e.strip() for e in cfg.notify_email.split(",") if e.strip())
    override = record.annotations.get(EMAIL_ANNOTATION, "").strip()
    if override.lower() in OFF:
        emails = ()
    elif override:
        emails = tuple(e.strip() for e in override.split(",") if e.strip())
    return Targets(slack, emails if cfg.ses_sender else ())


def send_slack(url: str, message: Message, timeout: float) -> None:
    response = requests.post(url, json={"text": f"*{message.subject}*\n{message.text}"}, timeout=timeout)
    response.raise_for_status()


def send_email(aws: Aws, region: str, sender: str, recipients: tuple[str, ...], message: Message) -> None:
    aws.client(region, "ses").send_email(
        Source=sender,
        Destination={"ToAddresses": list(recipients)},
        Message={"Subject": {"Data": message.subject}, "Body": {"Text": {"Data": message.text}}},
    )


class Notifier:
    """The report observer: hands final outcomes to a thread pool and returns at once."""

    def __init__(
        self,
        cfg: settings.Settings,
        m: metrics.Metrics,
        read_secret: Callable[[str, str, str], str],
        aws: Aws,
        workers: int = 2,
        backoff: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.metrics = m
        self.read_secret = read_secret
        self.aws = aws
        self.backoff = backoff
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dbops-notify")

    def __call__(self, record: report.Record) -> None:
        if record.action in OUTCOMES:
            self.submit(record)

    def submit(self, record: report.Record) -> Future[None]:
        return self.pool.submit(self._notify, record)

    def _notify(self, record: report.Record) -> None:
        try:
            to = targets(record, self.cfg, self.read_secret)
        except Exception as exc:  # e.g. the Secret named by the annotation is missing
            log.warning("notification for %s/%s not sent: %s", record.namespace, record.name, exc)
            self.metrics.notifications.labels("slack", "failed").inc()
            return
        if not to.slack_url and not to.emails:
            return
        message = describe(record, record.details)
        if to.slack_url:
            url = to.slack_url
            self._attempt("slack", lambda: send_slack(url, message, self.cfg.notify_timeout))
        if to.emails and self.cfg.ses_sender:
            region = self.cfg.ses_region or self.cfg.region
            sender = self.cfg.ses_sender
            self._attempt("email", lambda: send_email(self.aws, region, sender, to.emails, message))

    def _attempt(self, channel: str, send: Callable[[], None]) -> bool:
        for attempt in range(1, self.cfg.notify_attempts + 1):
            try:
                send()
            except Exception as exc:
                log.warning("%s notification attempt %d failed: %s", channel, attempt, _safe(exc))
                if attempt < self.cfg.notify_attempts:
                    self.metrics.notification_retries.labels(channel).inc()
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                continue
            self.metrics.notifications.labels(channel, "sent").inc()
            return True
        self.metrics.notifications.labels(channel, "failed").inc()
        return False

    def shutdown(self, wait: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=not wait)


def _safe(exc: Exception) -> str:
    """An error without a webhook URL in it (requests quotes the URL, which is a credential)."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, requests.RequestException):
        return type(exc).__name__
    return f"{type(exc).__name__}: {exc}"[:300]
