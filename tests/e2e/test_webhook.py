"""Who asked: the API server stamps the requester (MutatingAdmissionPolicy) and calls the operator's
validating webhook (TLS, URL mode, presenting its client certificate), and the audit trail names the
requester of every create, update and delete, for two different users. Forged reviews cannot reach an
authenticated webhook, and what an unauthenticated one is told is shown unverified; the deleter is kept
on the object across restarts; every replica serves the same certificate. Also the read path,
`python -m dbops audit`, and its filters."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from typing import Any

import pytest
import requests

from tests.e2e.obs_helpers import audit_rows, eventually, grant
from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import ROOT, Cluster, free_port
from tests.support.operator import Operator

REQUESTED_BY = "dbops.dev/requested-by"
FORGED = json.dumps({"username": "mallory", "groups": ["system:masters"]})


def requested_by(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any]:
    annotations = cluster.get(kind, name, namespace)["metadata"].get("annotations") or {}
    return dict(json.loads(annotations[REQUESTED_BY]))


def who(rows: list[dict[str, Any]], name: str, action: str) -> list[str | None]:
    return [r["requester"] for r in rows if r["name"] == name and r["action"] == action]


def test_the_audit_trail_names_who_created_updated_and_deleted(
    cluster: Cluster,
    own_operator: Operator,
    own_namespace: str,
    fake_aws: FakeAWS,
    admission_webhook: dict[str, str],
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "hook-src")
    seed_cluster(rds, "orders")
    fake_aws.configure(create_seconds=1, delete_seconds=1)
    grant(cluster, own_namespace, "alice", "bob")
    other = cluster.create_namespace("x")  # not watched by this operator, but admission sees everything
    grant(cluster, other, "bob")
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"
    own_operator.env.update(admission_webhook, DBOPS_AUDIT_RETRY_INTERVAL="1")
    own_operator.start()

    # alice creates, claiming to be mallory: the webhook overwrites the claim.
    forged = dbrestore("w1", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "hook-copy")
    forged["metadata"]["annotations"] = {REQUESTED_BY: FORGED}
    # The API server may call the webhook before its server is listening: retry the first request.
    eventually(lambda: cluster.apply(forged, user="alice", check=False).returncode == 0, what="alice's create")
    assert requested_by(cluster, "dbrestore", "w1", own_namespace) == {
        "username": "alice",
        "groups": ["dbops-users", "team-a", "system:authenticated"],
    }
    wait_phase(cluster, "w1", own_namespace, "Available", timeout=60)
    # The operator's own patches (status, finalizers) did not make it the requester.
    assert requested_by(cluster, "dbrestore", "w1", own_namespace)["username"] == "alice"

    # bob changes the spec: he is the requester now. Then he forges the annotation alone: refused
    # silently (the previous value is kept).
    cluster.kubectl(
        "patch",
        "dbrestore",
        "w1",
        "-n",
        own_namespace,
        "--type=merge",
        "-p",
        '{"spec":{"deletionPolicy":"Delete"}}',
        user="bob",
    )
    assert requested_by(cluster, "dbrestore", "w1", own_namespace)["username"] == "bob"
    patch = json.dumps({"metadata": {"annotations": {REQUESTED_BY: FORGED}}})
    cluster.kubectl("patch", "dbrestore", "w1", "-n", own_namespace, "--type=merge", "-p", patch, user="alice")
    assert requested_by(cluster, "dbrestore", "w1", own_namespace)["username"] == "bob"

    # alice attaches a reader, bob asks for something in another namespace.
    attach = {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DBAttach",
        "metadata": {"name": "r1", "namespace": own_namespace},
        "spec": {"cluster": {"dbCluster": "orders"}, "identifier": "orders-hook-reader"},
    }
    cluster.apply(attach, user="alice")
    assert requested_by(cluster, "dbattach", "r1", own_namespace)["username"] == "alice"
    cluster.apply(dbrestore("elsewhere", other, {"dbSnapshot": src.snapshot_identifier}, "hook-other"), user="bob")

    # bob deletes the restore (deletionPolicy Delete: the operator deletes its database), alice the attach.
    cluster.kubectl("delete", "dbrestore", "w1", "-n", own_namespace, "--wait=false", user="bob")
    cluster.kubectl("delete", "dbattach", "r1", "-n", own_namespace, "--wait=false", user="alice")
    for kind, name in (("dbrestore", "w1"), ("dbattach", "r1")):
        eventually(
            lambda kind=kind, name=name: (
                cluster.kubectl("get", kind, name, "-n", own_namespace, check=False).returncode != 0
            ),
            timeout=60,
            what=f"{kind}/{name} gone",
        )

    def trail() -> list[dict[str, Any]] | None:
        rows = audit_rows(url, "-n", own_namespace)
        return rows if who(rows, "w1", "deleted") and who(rows, "r1", "delete-requested") else None

    rows = eventually(trail, timeout=30, what="the deletions in the audit trail")
    assert who(rows, "w1", "create-requested") == ["alice"]
    assert who(rows, "w1", "requested") == ["alice"]  # the operator's record: from the annotation
    assert who(rows, "w1", "available") == ["alice"]
    assert who(rows, "w1", "update-requested") == ["bob"]  # the spec change; the forged annotation alone: no
    assert who(rows, "w1", "delete-requested") == ["bob"]
    assert who(rows, "w1", "deleted") == ["bob"]  # the operator's deletion record carries the deleter
    assert who(rows, "r1", "create-requested") == ["alice"]
    assert who(rows, "r1", "delete-requested") == ["alice"]
    assert "mallory" not in json.dumps(rows)
    create = next(r for r in rows if r["name"] == "w1" and r["action"] == "create-requested")
    assert create["kind"] == "DBRestore" and create["target"] == "hook-copy" and create["uid"]
    assert create["requester_groups"] == ["dbops-users", "team-a", "system:authenticated"]
    assert next(r for r in rows if r["name"] == "r1")["kind"] == "DBAttach"

    # --- the read path: filters, table and JSON ---------------------------------------------------------
    everything = audit_rows(url)
    assert {r["namespace"] for r in everything} == {own_namespace, other}
    assert [r["name"] for r in audit_rows(url, "-n", other)] == ["elsewhere"]
    assert audit_rows(url, "-n", other)[0]["requester"] == "bob"
    by_alice = audit_rows(url, "--user", "alice")
    assert by_alice and {r["requester"] for r in by_alice} == {"alice"}
    assert {r["name"] for r in by_alice} == {"w1", "r1"}
    by_bob = audit_rows(url, "-u", "bob")
    assert {r["requester"] for r in by_bob} == {"bob"} and {r["name"] for r in by_bob} == {"w1", "elsewhere"}
    assert len(by_alice) + len(by_bob) == len([r for r in everything if r["requester"]])
    assert {r["name"] for r in audit_rows(url, "--target", "hook-copy")} == {"w1"}
    assert audit_rows(url, "-t", "no-such-target") == []
    assert len(audit_rows(url, "--since", "1h")) == len(everything)
    assert audit_rows(url, "--since", "2999-01-01T00:00:00Z") == []
    newest = everything[-1]["time"]
    assert [r["time"] for r in audit_rows(url, "--since", newest)] == [
        r["time"] for r in everything if r["time"] >= newest
    ]
    assert audit_rows(url, "--until", "2000-01-01") == []
    assert len(audit_rows(url, "--limit", "3")) == 3
    combined = audit_rows(url, "-n", own_namespace, "-u", "bob", "--action", "delete-requested")
    assert [(r["name"], r["kind"]) for r in combined] == [("w1", "DBRestore")]

    table = subprocess.run(
        [sys.executable, "-m", "dbops", "audit", "--url", url, "-n", own_namespace, "--user", "alice"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    header = table[0].split()
    assert header == [
        "TIME",
        "NAMESPACE",
        "NAME",
        "KIND",
        "ACTION",
        "OUTCOME",
        "REQUESTER",
        "TARGET",
        "REASON",
        "MESSAGE",
    ]
    body = [line.split() for line in table[1:]]
    assert len(body) == len([r for r in by_alice if r["namespace"] == own_namespace])
    assert all(cols[1] == own_namespace and cols[6] == "alice" for cols in body)
    assert any(cols[2:5] == ["w1", "DBRestore", "create-requested"] for cols in body)


# --- who asked must be true -------------------------------------------------------------------------------


def test_who_set_up_a_schedule_is_stamped_by_the_api_server(cluster: Cluster, own_namespace: str) -> None:
    """A drill's records name the schedule's requester: the API server's policy writes it (no operator
    needed), so that what alice claims in her request never reaches the audit trail."""
    grant(cluster, own_namespace, "alice", "bob")
    schedule = {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DBRestoreSchedule",
        "metadata": {"name": "drill", "namespace": own_namespace, "annotations": {REQUESTED_BY: FORGED}},
        "spec": {
            "schedule": "0 3 * * 1",
            "suspend": True,
            "template": {
                "source": {"latestSnapshot": {"dbInstance": "orders"}},
                "target": {"identifier": "orders-drill"},
                "deletionPolicy": "Delete",
                "ttl": "2h",
            },
        },
    }
    cluster.apply(schedule, user="alice")
    assert requested_by(cluster, "dbrestoreschedule", "drill", own_namespace)["username"] == "alice"

    def patch(user: str, body: dict[str, Any]) -> None:
        args = ("patch", "dbrestoreschedule", "drill", "-n", own_namespace, "--type=merge", "-p", json.dumps(body))
        cluster.kubectl(*args, user=user)

    patch("bob", {"spec": {"schedule": "0 4 * * 1"}})  # bob changes what runs: the requester is bob now
    assert requested_by(cluster, "dbrestoreschedule", "drill", own_namespace)["username"] == "bob"
    patch("alice", {"metadata": {"annotations": {REQUESTED_BY: FORGED}}})  # a forged stamp alone: undone
    patch("alice", {"metadata": {"labels": {"team": "a"}}})  # a label is no request: bob stays
    assert requested_by(cluster, "dbrestoreschedule", "drill", own_namespace)["username"] == "bob"
    patch("alice", {"metadata": {"annotations": {"dbops.dev/run-now": "1"}}})  # asking for a run now is one
    assert requested_by(cluster, "dbrestoreschedule", "drill", own_namespace) == {
        "username": "alice",
        "groups": ["dbops-users", "team-a", "system:authenticated"],
    }
    cluster.kubectl("delete", "dbrestoreschedule", "drill", "-n", own_namespace)


def review(obj: dict[str, Any], operation: str, username: str) -> dict[str, Any]:
    """An AdmissionReview as the API server would send it, for anyone to forge."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "forged-0001",
            "kind": {"group": "dbops.dev", "version": "v1alpha1", "kind": obj["kind"]},
            "resource": {"group": "dbops.dev", "version": "v1alpha1", "resource": "dbrestores"},
            "operation": operation,
            "userInfo": {"username": username, "groups": ["system:masters"]},
            "namespace": obj["metadata"]["namespace"],
            "name": obj["metadata"]["name"],
            "object": None if operation == "DELETE" else obj,
            "oldObject": obj if operation == "DELETE" else None,
            "dryRun": False,
        },
    }


def forge(port: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"https://127.0.0.1:{port}/validate.dbrestores", json=body, verify=False, timeout=10)


def test_forged_reviews_cannot_reach_a_webhook_that_authenticates_the_api_server(
    cluster: Cluster, own_operator: Operator, own_namespace: str, fake_aws: FakeAWS, admission_webhook: dict[str, str]
) -> None:
    src = seed_instance(fake_aws.client("rds"), "auth-src")
    grant(cluster, own_namespace, "alice")
    own_operator.env.update(admission_webhook, DBOPS_AUDIT_RETRY_INTERVAL="1")
    own_operator.start()
    cluster.apply(dbrestore("real", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "auth-copy"), user="alice")
    real = cluster.get("dbrestore", "real", own_namespace)
    with pytest.raises(requests.exceptions.RequestException):  # no client certificate: no TLS handshake
        forge(admission_webhook["DBOPS_WEBHOOK_PORT"], review(real, "DELETE", "mallory"))
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"
    rows = eventually(lambda: audit_rows(url, "-n", own_namespace) or None, what="the create's records")
    assert who(rows, "real", "create-requested") == ["alice"] and rows[0]["requester_verified"] is True
    assert "mallory" not in json.dumps(rows) and report_annotation(cluster, "real", own_namespace) is None


def report_annotation(cluster: Cluster, name: str, namespace: str) -> str | None:
    annotations = cluster.get("dbrestore", name, namespace)["metadata"].get("annotations") or {}
    value = annotations.get("dbops.dev/deleted-by")
    return None if value is None else str(value)


def test_without_client_authentication_what_the_webhook_is_told_is_unverified(
    cluster: Cluster, own_operator: Operator, own_namespace: str, fake_aws: FakeAWS, admission_webhook: dict[str, str]
) -> None:
    """Anyone who reaches the port may forge a review: its records, and the deleter it writes, say so."""
    src = seed_instance(fake_aws.client("rds"), "open-src")
    grant(cluster, own_namespace, "alice", "bob")
    unauthenticated = {k: v for k, v in admission_webhook.items() if k != "DBOPS_WEBHOOK_CLIENT_CA"}
    own_operator.env.update(unauthenticated, DBOPS_AUDIT_RETRY_INTERVAL="1")
    own_operator.start()
    cluster.apply(
        dbrestore("target", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "open-copy"), user="alice"
    )
    wait_phase(cluster, "target", own_namespace, "Available", timeout=60)
    real = cluster.get("dbrestore", "target", own_namespace)

    answer = forge(unauthenticated["DBOPS_WEBHOOK_PORT"], review(real, "DELETE", "mallory"))
    assert answer.ok and answer.json()["response"]["allowed"] is True
    forged = json.loads(report_annotation(cluster, "target", own_namespace) or "{}")
    assert forged["username"] == "mallory" and forged["verified"] is False  # signed as told: unverified
    cluster.kubectl("delete", "dbrestore", "target", "-n", own_namespace, "--wait=false", user="bob")
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"
    rows = eventually(
        lambda: (r := audit_rows(url, "-n", own_namespace)) and who(r, "target", "deleted") and r,
        timeout=60,
        what="the deletion records",
    )
    told = {(r["action"], r["requester"], r["requester_verified"]) for r in rows if r["name"] == "target"}
    assert ("delete-requested", "mallory", False) in told and ("delete-requested", "bob", False) in told
    assert ("deleted", "bob", False) in told  # the API server's own review came last: bob, but unproven
    assert ("requested", "alice", True) in told  # stamped by the API server (MutatingAdmissionPolicy)
    assert not [r for r in rows if r["requester"] == "mallory" and r["requester_verified"]]


def test_the_deleter_is_kept_with_the_object_across_an_operator_restart(
    cluster: Cluster, own_operator: Operator, own_namespace: str, fake_aws: FakeAWS, admission_webhook: dict[str, str]
) -> None:
    src = seed_instance(fake_aws.client("rds"), "keep-src")
    fake_aws.configure(delete_seconds=8)
    grant(cluster, own_namespace, "alice", "bob")
    own_operator.env.update(admission_webhook, DBOPS_AUDIT_RETRY_INTERVAL="1")
    own_operator.start()
    restore = dbrestore(
        "gone", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "keep-copy", deletionPolicy="Delete"
    )
    cluster.apply(restore, user="alice")
    wait_phase(cluster, "gone", own_namespace, "Available", timeout=60)
    cluster.kubectl("delete", "dbrestore", "gone", "-n", own_namespace, "--wait=false", user="bob")
    wait_phase(cluster, "gone", own_namespace, "Deleting", timeout=30)
    own_operator.kill()  # mid-deletion: whatever it kept in memory is lost
    own_operator.start()
    eventually(
        lambda: cluster.kubectl("get", "dbrestore", "gone", "-n", own_namespace, check=False).returncode != 0,
        timeout=60,
        what="the deletion finished after the restart",
    )
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"
    rows = eventually(
        lambda: (r := audit_rows(url, "-n", own_namespace)) and who(r, "gone", "deleted") and r, timeout=30
    )
    deleted = [r for r in rows if r["name"] == "gone" and r["action"] == "deleted"]
    assert [(r["requester"], r["requester_verified"]) for r in deleted] == [("bob", True)]
    assert who(rows, "gone", "delete-requested") == ["bob"] and who(rows, "gone", "requested") == ["alice"]


def test_a_deleter_written_by_a_user_is_unverified_and_no_deleter_is_nobody(
    cluster: Cluster, own_operator: Operator, own_namespace: str, fake_aws: FakeAWS
) -> None:
    """No webhook: the operator knows nothing of who deleted, and says so rather than naming the creator."""
    src = seed_instance(fake_aws.client("rds"), "hand-src")
    grant(cluster, own_namespace, "alice")
    own_operator.env["DBOPS_AUDIT_RETRY_INTERVAL"] = "1"
    own_operator.start()
    for name in ("claimed", "unknown"):
        cluster.apply(
            dbrestore(name, own_namespace, {"dbSnapshot": src.snapshot_identifier}, f"hand-{name}"), user="alice"
        )
        wait_phase(cluster, name, own_namespace, "Available", timeout=60)
    claim = json.dumps(
        {"metadata": {"annotations": {"dbops.dev/deleted-by": json.dumps({"username": "bob", "sig": "0" * 64})}}}
    )
    cluster.kubectl("patch", "dbrestore", "claimed", "-n", own_namespace, "--type=merge", "-p", claim, user="alice")
    for name in ("claimed", "unknown"):
        cluster.kubectl("delete", "dbrestore", name, "-n", own_namespace, user="alice")
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"
    rows = eventually(
        lambda: (
            (r := audit_rows(url, "-n", own_namespace)) and len([x for x in r if x["action"] == "deleted"]) == 2 and r
        )
    )
    deleted = {r["name"]: (r["requester"], r["requester_verified"]) for r in rows if r["action"] == "deleted"}
    assert deleted == {"claimed": ("bob", False), "unknown": (None, None)}


def test_every_replica_serves_the_same_certificate(
    cluster: Cluster, own_operator: Operator, own_namespace: str, admission_webhook: dict[str, str], tmp_path: Any
) -> None:
    """Two replicas: the keys Secret is made once, by the first; both serve its certificate, which is
    what the configuration's caBundle trusts, whichever of them the API server reaches."""
    plain = {k: v for k, v in admission_webhook.items() if k != "DBOPS_WEBHOOK_CLIENT_CA"}  # to read the certs
    own_operator.env.update(plain)
    own_operator.start()
    secret = cluster.get("secret", "dbops-webhook", own_namespace)
    second_port = str(free_port())
    second = Operator(
        tmp_path / "second", {**own_operator.env, "DBOPS_WEBHOOK_PORT": second_port, "DBOPS_NAMESPACE": "nothing-here"}
    )
    (tmp_path / "second").mkdir()
    with second.start():
        served = {ssl.get_server_certificate(("127.0.0.1", int(p))) for p in (plain["DBOPS_WEBHOOK_PORT"], second_port)}
        assert len(served) == 1
        again = cluster.get("secret", "dbops-webhook", own_namespace)
        assert again["metadata"]["resourceVersion"] == secret["metadata"]["resourceVersion"]  # read, not remade
        logs = own_operator.tail(10**6) + second.tail(10**6)
        assert logs.count("created the keys Secret") == 1
    cert = base64.b64decode(secret["data"]["tls.crt"]).decode()
    assert served == {cert}
    config = json.loads(cluster.kubectl("get", "validatingwebhookconfiguration", "dbops.dev", "-o", "json").stdout)
    assert {base64.b64decode(h["clientConfig"]["caBundle"]).decode() for h in config["webhooks"]} == {cert}
