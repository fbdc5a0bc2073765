"""Notifications when a restore ends: a local HTTP server stands in for Slack's incoming webhook and
moto for SES; messages say what, where, endpoint, how long and who asked, and carry no secret. A failing
Slack is retried, counted, and never holds up the restore."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.obs_helpers import SlackServer, eventually, grant, scrape, secret, value
from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

SENDER = "dbops@example.com"
TEAM = "platform@example.com"
PASSWORD = "n0t-In-Any-Message-7"


def ses_messages(fake: FakeAWS) -> list[dict[str, Any]]:
    """What moto's SES has sent (read from its backend through the fake's control API)."""
    return fake.ses_messages()


def mail_to(fake: FakeAWS, address: str, namespace: str) -> list[dict[str, Any]]:
    return [
        m
        for m in ses_messages(fake)
        if address in m["destinations"].get("ToAddresses", []) and f" {namespace}/" in m["subject"]
    ]


def test_slack_and_email_on_available_and_failed_with_overrides(
    cluster: Cluster,
    own_operator: Operator,
    own_namespace: str,
    fake_aws: FakeAWS,
    admission_webhook: dict[str, str],
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "notify-src")
    fake_aws.configure(create_seconds=3)
    fake_aws.client("ses").verify_email_identity(EmailAddress=SENDER)
    grant(cluster, own_namespace, "alice", "bob")
    with SlackServer() as slack:
        override_url = slack.url("/services/T000/B000/OVERRIDE")
        cluster.apply(secret("db-password", own_namespace, password=PASSWORD))
        cluster.apply(secret("team-slack", own_namespace, **{"webhook-url": override_url}))
        own_operator.env.update(
            admission_webhook,
            DBOPS_SLACK_WEBHOOK_URL=slack.url(),
            DBOPS_SES_SENDER=SENDER,
            DBOPS_NOTIFY_EMAIL=TEAM,
        )
        own_operator.start()

        ok = dbrestore(
            "n-ok",
            own_namespace,
            {"dbSnapshot": src.snapshot_identifier},
            "notify-copy",
            masterPassword={"secretRef": {"name": "db-password"}},
        )
        eventually(lambda: cluster.apply(ok, user="alice", check=False).returncode == 0, what="alice's create")
        bad = dbrestore("n-bad", own_namespace, {"dbSnapshot": "no-such-snapshot"}, "notify-bad")
        cluster.apply(bad, user="bob")
        # Per object: this one's Slack goes to its team's webhook (from a Secret), its mail to on-call.
        custom = dbrestore("n-custom", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "notify-custom")
        custom["metadata"]["annotations"] = {
            "dbops.dev/notify-slack": "team-slack",
            "dbops.dev/notify-email": "oncall@example.com",
        }
        cluster.apply(custom, user="alice")
        # And this one wants no notification at all.
        quiet = dbrestore("n-quiet", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "notify-quiet")
        quiet["metadata"]["annotations"] = {"dbops.dev/notify-slack": "off", "dbops.dev/notify-email": "off"}
        cluster.apply(quiet, user="bob")

        ok_obj = wait_phase(cluster, "n-ok", own_namespace, "Available", timeout=90)
        wait_phase(cluster, "n-bad", own_namespace, "Failed")
        wait_phase(cluster, "n-custom", own_namespace, "Available", timeout=90)
        wait_phase(cluster, "n-quiet", own_namespace, "Available", timeout=90)

        def default_texts() -> list[str]:
            return [t for t in slack.texts("/services/T000/B000/XXXX") if f" {own_namespace}/" in t]

        texts = eventually(lambda: len(default_texts()) >= 2 and default_texts(), what="two Slack messages")
        (done,) = [t for t in texts if "n-ok" in t]
        (failed,) = [t for t in texts if "n-bad" in t]
        st = ok_obj["status"]
        assert f"DBRestore {own_namespace}/n-ok completed" in done  # what
        assert "target notify-copy" in done and "region us-east-1" in done  # where
        assert f"Source: snapshot:{src.snapshot_identifier}" in done
        assert f"Endpoint: {st['endpoint']}" in done  # endpoint
        assert "Took: " in done  # how long
        assert "Requested by: alice (dbops-users, team-a" in done  # who asked
        assert f"DBRestore {own_namespace}/n-bad FAILED" in failed
        assert "Reason: SnapshotNotFound" in failed and "Requested by: bob (dbops-users, team-b" in failed

        mails = eventually(
            lambda: len(mail_to(fake_aws, TEAM, own_namespace)) >= 2 and mail_to(fake_aws, TEAM, own_namespace),
            what="two e-mails",
        )
        by_name = {m["subject"].split()[2]: m for m in mails}
        assert set(by_name) == {f"{own_namespace}/n-ok", f"{own_namespace}/n-bad"}
        mail = by_name[f"{own_namespace}/n-ok"]
        assert mail["source"] == SENDER and mail["subject"] == f"[dbops] DBRestore {own_namespace}/n-ok completed"
        assert f"Endpoint: {st['endpoint']}" in mail["body"] and "Requested by: alice" in mail["body"]
        assert "Reason: SnapshotNotFound" in by_name[f"{own_namespace}/n-bad"]["body"]

        # The overrides: the team's Slack, on-call's inbox; and nothing for the quiet one.
        eventually(lambda: any("n-custom" in t for t in slack.texts("/services/T000/B000/OVERRIDE")), what="override")
        eventually(lambda: mail_to(fake_aws, "oncall@example.com", own_namespace), what="the on-call e-mail")
        time.sleep(2)  # a notification for n-quiet would have come with the others
        everything = slack.texts() + [m["body"] for m in ses_messages(fake_aws)]
        assert not [t for t in slack.texts("/services/T000/B000/XXXX") if "n-custom" in t]
        assert not [m for m in mail_to(fake_aws, TEAM, own_namespace) if "n-custom" in m["subject"]]
        assert not [t for t in everything if "n-quiet" in t]

        # No secret anywhere: not the master password, not the Slack webhook URLs (they are credentials).
        assert not [t for t in everything if PASSWORD in t or "/services/" in t]
        log = own_operator.tail(10**7)
        assert PASSWORD not in log and "/services/T000" not in log
        samples = scrape(own_operator.metrics_port)
        assert value(samples, "dbops_notifications_total", channel="slack", outcome="sent") == 3
        assert value(samples, "dbops_notifications_total", channel="email", outcome="sent") == 3
        assert value(samples, "dbops_notifications_total", outcome="failed") == 0


def test_a_failing_slack_is_retried_counted_and_never_blocks_the_restore(
    cluster: Cluster, own_operator: Operator, own_namespace: str, fake_aws: FakeAWS
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "notify-src2")
    fake_aws.configure(create_seconds=2)
    with SlackServer(fail_first=10**6) as broken, SlackServer(fail_first=2) as flaky:
        cluster.apply(secret("flaky-slack", own_namespace, **{"webhook-url": flaky.url()}))
        own_operator.start(DBOPS_SLACK_WEBHOOK_URL=broken.url(), DBOPS_NOTIFY_ATTEMPTS="3")
        begun = time.monotonic()
        cluster.apply(dbrestore("s-broken", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "slack-broken"))
        flaky_one = dbrestore("s-flaky", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "slack-flaky")
        flaky_one["metadata"]["annotations"] = {"dbops.dev/notify-slack": "flaky-slack"}
        cluster.apply(flaky_one)
        wait_phase(cluster, "s-broken", own_namespace, "Available", timeout=60)
        # The restore's own time, not held up by the notifier's retries (1 s, 2 s backoff each).
        assert time.monotonic() - begun < 30

        def counted() -> dict | None:
            s = scrape(own_operator.metrics_port)
            done = value(s, "dbops_notifications_total", channel="slack", outcome="failed") == 1
            return s if done and value(s, "dbops_notifications_total", channel="slack", outcome="sent") == 1 else None

        samples = eventually(counted, timeout=60, what="one failed and one sent Slack notification")
        assert broken.attempts == 3 and broken.messages == []  # tried 3 times, then given up
        assert flaky.attempts == 3 and len(flaky.messages) == 1  # 500, 500, then delivered
        assert "s-flaky" in flaky.texts()[0]
        assert value(samples, "dbops_notification_retries_total", channel="slack") == 4  # 2 + 2
        obj = cluster.get("dbrestore", "s-broken", own_namespace)
        assert obj["status"]["phase"] == "Available"  # the failed notification changed nothing
        log = own_operator.tail(10**7)
        assert "slack notification attempt 3 failed: HTTP 500" in log
        assert "/services/T000" not in log  # the webhook URL is a credential: never logged
        assert own_operator.proc is not None and own_operator.proc.poll() is None
