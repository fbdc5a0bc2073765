"""No secret in the operator's log at its most verbose level (`-v`: every logger at DEBUG), through the real
API server: a master password from a Secret, the operator's Slack webhook and a per-object one from a Secret.

The log must still hold what botocore and urllib3 write at DEBUG (the ModifyDBInstance request body, the
webhook POST line), with *** in place of the secrets: silencing those loggers would fail this test too."""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

from tests.e2e.obs_helpers import SlackServer, eventually, secret
from tests.e2e.restore_helpers import dbrestore, password_set, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

# Characters that botocore's form encoding and Python's reprs change: each form must be masked.
PASSWORD = "Sup3r+s3cr3t&x=1%q"
OWN_PATH = "/services/T0OWN/B0OWN/OwnWebhookCredential1"
TEAM_PATH = "/services/T0TEAM/B0TEAM/TeamWebhookCredential2"


def test_no_secret_in_the_most_verbose_log(
    cluster: Cluster, own_operator: Operator, own_namespace: str, fake_aws: FakeAWS
) -> None:
    src = seed_instance(fake_aws.client("rds"), "redact-src")
    fake_aws.configure(create_seconds=2)
    with SlackServer() as slack:
        cluster.apply(secret("db-password", own_namespace, password=PASSWORD))
        cluster.apply(secret("team-slack", own_namespace, **{"webhook-url": slack.url(TEAM_PATH)}))
        own_operator.start("-v", DBOPS_SLACK_WEBHOOK_URL=slack.url(OWN_PATH))
        source = {"dbSnapshot": src.snapshot_identifier}
        cluster.apply(
            dbrestore("x-pw", own_namespace, source, "redact-pw", masterPassword={"secretRef": {"name": "db-password"}})
        )
        team = dbrestore("x-team", own_namespace, source, "redact-team")
        team["metadata"]["annotations"] = {"dbops.dev/notify-slack": "team-slack"}
        cluster.apply(team)

        cluster.wait_for("dbrestore", "x-pw", own_namespace, password_set, timeout=90, what="MasterPasswordSet")
        wait_phase(cluster, "x-team", own_namespace, "Available", timeout=90)
        eventually(lambda: any("x-pw" in t for t in slack.texts(OWN_PATH)), what="the operator's Slack message")
        eventually(lambda: any("x-team" in t for t in slack.texts(TEAM_PATH)), what="the team's Slack message")

        webhook = f"http://127.0.0.1:{slack.server.server_address[1]}"

    log = own_operator.tail(10**7)
    # What botocore and urllib3 log at DEBUG is there, redacted: the test would see a leak.
    assert "Making request for OperationModel(name=ModifyDBInstance)" in log
    assert "'MasterUserPassword': '***'" in log  # botocore.endpoint's request body
    assert log.count(f'{webhook} "POST *** HTTP/1.1" 200') == 2  # urllib3: both webhooks, path masked
    # And no secret, in any form.
    b64 = base64.b64encode(PASSWORD.encode()).decode()
    for value in (PASSWORD, quote_plus(PASSWORD), b64, OWN_PATH, TEAM_PATH, "T0OWN", "T0TEAM", cluster.tokens["admin"]):
        assert value not in log, f"{value[:4]}... in the operator's log"
