"""Who asked: the real API server calls the operator's admission webhook (kopf's, TLS, URL mode), and
the audit trail names the requester of every create, update and delete, for two different users. Also
the read path, `python -m dbops audit`, and its filters."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.e2e.obs_helpers import audit_rows, eventually, grant
from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import ROOT, Cluster
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
