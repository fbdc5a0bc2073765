"""The operator's logs as settings make them: JSON lines (DBOPS_LOG_FORMAT=json) naming the object each
line of a pass is about, and DBOPS_LOG_LEVEL=DEBUG that never brings the library loggers which write
request bodies (botocore, urllib3, the Kubernetes client) below WARNING."""

from __future__ import annotations

import json

from tests.e2e.restore_helpers import dbrestore, password_set
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

LIBRARIES = ("botocore", "boto3", "urllib3", "kubernetes")


def test_json_lines_name_their_object_and_debug_keeps_request_bodies_out(
    cluster: Cluster, own_operator: Operator, own_namespace: str, fake_aws: FakeAWS
) -> None:
    src = seed_instance(fake_aws.client("rds"), "logs-src")
    password = "L0g-line-secret-9"
    cluster.kubectl("create", "secret", "generic", "pw", "-n", own_namespace, f"--from-literal=password={password}")
    own_operator.start(DBOPS_LOG_FORMAT="json", DBOPS_LOG_LEVEL="DEBUG")
    spec = {"masterPassword": {"secretRef": {"name": "pw"}}}
    cluster.apply(dbrestore("j1", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "logs-copy", **spec))
    cluster.wait_for("dbrestore", "j1", own_namespace, password_set, timeout=90, what="MasterPasswordSet")
    own_operator.stop()

    text = own_operator.tail(10**7)
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is one JSON object
    assert all({"message", "severity", "timestamp", "logger"} <= line.keys() for line in lines), lines[:3]
    core = [line for line in lines if line["logger"].startswith("dbops.core.reconciler")]
    steps = [line["message"] for line in core]
    assert any(m.startswith("Accepted: restore of logs-copy requested") for m in steps), steps
    assert any(m.startswith("RestoreCall: restoring instance logs-copy") for m in steps), steps
    assert any(m.startswith("PasswordSet: master password set from Secret pw") for m in steps), steps
    for line in core:  # every line of the core's passes names the object
        assert line.get("object", {}).get("namespace") == own_namespace, line
        assert line["object"]["name"] == "j1" and line["object"]["kind"] == "DBRestore", line

    # DEBUG took effect for dbops and kopf, and never for the libraries that log request bodies.
    assert any(line["severity"] == "debug" and line["logger"].startswith("kopf") for line in lines)
    noisy = [line for line in lines if line["logger"].startswith(LIBRARIES) and line["severity"] in ("debug", "info")]
    assert not noisy, noisy[:3]
    assert "MasterUserPassword" not in text and password not in text
