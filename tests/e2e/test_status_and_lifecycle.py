"""What a user (or someone with `patch dbrestores/status`) can and cannot make the operator do, through
the real API server: status is the operator's report, never a command; an object being deleted never
creates anything; a ttl changed after the restore takes effect; a Secret without the key says so and
backs off; events come from the operator by name, with words that say what happened."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.e2e.obs_helpers import audit_rows, eventually, scrape, value
from tests.e2e.restore_helpers import dbrestore, instances, phase_is, ready, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import Cluster, Watch
from tests.support.operator import Operator


def write_status(cluster: Cluster, name: str, namespace: str, status: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "dbrestore", name, "-n", namespace, "--subresource=status", "--type=merge", "-p",
        json.dumps({"status": status}),
    )  # fmt: skip


def test_a_status_written_by_hand_is_overwritten_and_steers_nothing(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "steer")
    other = seed_instance(rds, "someone-elses")  # a database that is not this object's
    other_host = rds.describe_db_instances(DBInstanceIdentifier=other.identifier)["DBInstances"][0]["Endpoint"]

    # A Failed object, told by hand that it is Available at another database: it stays Failed, shows no
    # endpoint of anyone's, and the operator calls nothing.
    cluster.apply(dbrestore("failed", namespace, {"dbSnapshot": "no-such-snapshot"}, "steer-nothing"))
    wait_phase(cluster, "failed", namespace, "Failed")
    write_status(
        cluster, "failed", namespace,
        {"phase": "Available", "dbInstanceIdentifier": other.identifier, "endpoint": other_host["Address"]},
    )  # fmt: skip
    obj = cluster.wait_for("dbrestore", "failed", namespace, phase_is("Failed"), what="Failed again")
    assert obj["status"].get("endpoint") is None and obj["status"].get("dbInstanceIdentifier") != other.identifier

    # An Available object with deletionPolicy Delete, told by hand that it is Deleting, then Expired:
    # the database stays, and the status says Available again.
    cluster.apply(
        dbrestore("live", namespace, {"dbSnapshot": src.snapshot_identifier}, "steer-copy", deletionPolicy="Delete")
    )
    wait_phase(cluster, "live", namespace, "Available")
    fake_aws.reset_calls()
    for fake_phase in ("Deleting", "Expired"):
        write_status(cluster, "live", namespace, {"phase": fake_phase})
        obj = cluster.wait_for(
            "dbrestore", "live", namespace,
            lambda o, p=fake_phase: (o.get("status") or {}).get("phase") not in (p, None),
            what=f"the operator's status after a hand-written {fake_phase}",
        )  # fmt: skip
        assert obj["status"]["phase"] == "Available", obj["status"]
    assert instances(rds, "steer-copy") and "DeleteDBInstance" not in fake_aws.calls()

    # Deleted while its status (by hand) says Expired: the database carrying its tag is still deleted.
    write_status(cluster, "live", namespace, {"phase": "Expired"})
    cluster.kubectl("delete", "dbrestore", "live", "-n", namespace, "--timeout=60s")
    assert not instances(rds, "steer-copy")
    assert instances(rds, other.identifier)  # never touched


@pytest.mark.parametrize("kind", ["dbrestore", "dbattach"])
def test_an_object_being_deleted_never_creates_anything(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str, kind: str
) -> None:
    """Deleted before the operator ever looked at it (held by another finalizer): nothing is created,
    and dbops' own finalizer never holds it."""
    rds = fake_aws.client("rds")
    src = seed_cluster(rds, "held")
    if kind == "dbrestore":
        obj = dbrestore("held", own_namespace, {"dbClusterSnapshot": src.snapshot_identifier}, "held-copy")
    else:
        obj = {
            "apiVersion": "dbops.dev/v1alpha1",
            "kind": "DBAttach",
            "metadata": {"name": "held", "namespace": own_namespace},
            "spec": {"cluster": {"dbCluster": "held"}, "identifier": "held-reader", "deletionPolicy": "Delete"},
        }
    obj["metadata"]["finalizers"] = ["example.com/hold"]
    cluster.apply(obj)
    cluster.kubectl("delete", kind, "held", "-n", own_namespace, "--wait=false")
    fake_aws.reset_calls()
    own_operator.start()
    time.sleep(6)  # several passes' worth
    calls = fake_aws.calls()
    assert not {"RestoreDBClusterFromSnapshot", "CreateDBInstance"} & set(calls), calls
    left = cluster.get(kind, "held", own_namespace)
    assert left["metadata"]["finalizers"] == ["example.com/hold"]
    cluster.kubectl(
        "patch", kind, "held", "-n", own_namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    gone = cluster.kubectl("wait", "--for=delete", f"{kind}/held", "-n", own_namespace, "--timeout=30s", check=False)
    assert gone.returncode == 0, gone.stderr
    assert not {"RestoreDBClusterFromSnapshot", "CreateDBInstance"} & set(fake_aws.calls())


def test_a_ttl_set_or_shortened_after_the_restore_takes_effect(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "later")
    cluster.apply(
        dbrestore(
            "ttl-later", namespace, {"dbSnapshot": src.snapshot_identifier}, "later-copy", deletionPolicy="Delete"
        )
    )
    obj = wait_phase(cluster, "ttl-later", namespace, "Available")
    assert obj["status"].get("expiresAt") is None
    created = rds.describe_db_instances(DBInstanceIdentifier="later-copy")["DBInstances"][0]["InstanceCreateTime"]

    patch = lambda ttl: cluster.kubectl(  # noqa: E731
        "patch", "dbrestore", "ttl-later", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": {"ttl": ttl}})
    )
    patch("30d")
    obj = cluster.wait_for(
        "dbrestore", "ttl-later", namespace, lambda o: bool((o.get("status") or {}).get("expiresAt")), what="expiresAt"
    )
    expected = created.timestamp() + 30 * 86400
    from datetime import datetime

    expires = datetime.fromisoformat(obj["status"]["expiresAt"].replace("Z", "+00:00")).timestamp()
    assert abs(expires - expected) < 2, (obj["status"]["expiresAt"], created)
    fake_aws.age("later-copy", 3600)  # an hour old now, in the stand-in's clock
    patch("30m")  # shorter than the database has lived already: it goes now
    obj = wait_phase(cluster, "ttl-later", namespace, "Expired", timeout=60)
    assert ready(obj)["reason"] == "Expired"
    assert not instances(rds, "later-copy")


def test_a_secret_without_the_key_degrades_and_backs_off(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "keyless")
    cluster.kubectl("create", "secret", "generic", "pw", "-n", own_namespace, "--from-literal=other=not-it")
    own_operator.start()
    cluster.apply(
        dbrestore(
            "keyless", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "keyless-copy",
            masterPassword={"secretRef": {"name": "pw", "key": "password"}},
        )
    )  # fmt: skip
    obj = wait_phase(cluster, "keyless", own_namespace, "Degraded")
    cond = ready(obj)
    assert cond["status"] == "False" and cond["reason"] == "SecretKeyMissing", cond
    assert "'password'" in cond["message"] and obj["status"]["endpoint"]  # the database is there, not usable
    time.sleep(25)  # at the old fixed poll interval (1 s here) this would have been 25 more tries
    warnings = [e for e in cluster.events(own_namespace, "keyless") if e["reason"] == "SecretKeyMissing"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning", warnings  # told once, not per retry
    message = ready(cluster.get("dbrestore", "keyless", own_namespace))["message"]
    assert int(message.rsplit("retrying in ", 1)[1].rstrip("s")) >= 10, message  # backing off: 5, 10, 20 s...
    url = f"sqlite:///{own_operator.workdir / 'audit.db'}"
    rows = eventually(lambda: audit_rows(url, "-n", own_namespace, "--action", "degraded"), what="the record")
    assert len(rows) == 1  # one record of the failure, not one per retry
    assert "ModifyDBInstance" not in fake_aws.calls()
    # The key is added: the next try sets the password, and the database is Available.
    cluster.kubectl(
        "patch", "secret", "pw", "-n", own_namespace, "--type=merge", "-p", '{"stringData":{"password":"now-1t-is"}}'
    )
    cluster.kubectl("annotate", "dbrestore", "keyless", "-n", own_namespace, "dbops.dev/retry=1")
    obj = wait_phase(cluster, "keyless", own_namespace, "Available", timeout=60)
    assert fake_aws.calls().get("ModifyDBInstance") == 1


def test_events_come_from_the_operator_and_say_what_happened(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "words")
    seed_instance(rds, "words-taken", tags={"owner": "dba"})
    fake_aws.configure(create_seconds=2)
    with Watch(cluster, "dbrestore", namespace) as watch:
        cluster.apply(dbrestore("w1", namespace, {"dbSnapshot": src.snapshot_identifier}, "words-copy"))
        wait_phase(cluster, "w1", namespace, "Available")
    rows = [(o.get("status") or {}).get("phase") for o in watch.objects if o["metadata"]["name"] == "w1"]
    assert rows[0] in (None, "Pending") and rows[1] == "Pending", rows  # at most the creation itself is empty
    assert None not in rows[1:], rows
    events = cluster.events(namespace, "w1")
    assert {e["source"]["component"] for e in events} == {"dbops-operator"}, events
    restores = [e for e in events if e["message"].startswith("restoring instance")]
    assert len(restores) == 1 and restores[0]["count"] == 1  # one event for one call

    # Deleting what was never created, and a name that is someone else's: words that say so.
    cluster.apply(dbrestore("w2", namespace, {"dbClusterSnapshot": "nope"}, "words-never", deletionPolicy="Delete"))
    wait_phase(cluster, "w2", namespace, "Failed")
    cluster.kubectl("delete", "dbrestore", "w2", "-n", namespace, "--timeout=30s")
    (deleted,) = [e for e in cluster.events(namespace, "w2") if e["reason"] in ("NothingToDelete", "Deleted")]
    assert deleted["reason"] == "NothingToDelete" and "is deleted" not in deleted["message"], deleted
    cluster.apply(
        dbrestore("w3", namespace, {"dbSnapshot": src.snapshot_identifier}, "words-taken", deletionPolicy="Delete")
    )
    wait_phase(cluster, "w3", namespace, "Failed")
    cluster.kubectl("delete", "dbrestore", "w3", "-n", namespace, "--timeout=30s")
    reasons = {e["reason"]: e["message"] for e in cluster.events(namespace, "w3")}
    assert "Deleted" not in reasons and "left alone" in reasons["LeftAlone"], reasons
    assert instances(rds, "words-taken")


def test_a_latest_snapshot_missing_says_so_in_words(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_instance(rds, "nosnap")
    rds.delete_db_snapshot(DBSnapshotIdentifier="nosnap-snapshot")
    source = {"latestSnapshot": {"dbInstance": "nosnap", "snapshotType": "manual"}}  # moto makes automated ones
    cluster.apply(dbrestore("ls", namespace, source, "nosnap-copy"))
    obj = wait_phase(cluster, "ls", namespace, "Failed")
    assert ready(obj)["message"] == "spec.source.latestSnapshot: instance nosnap has no available manual snapshot"


def test_an_endpoint_of_another_account_does_not_resolve_to_a_namesake(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_instance(rds, "orders")  # this account's orders answers at orders.aaaaaaaaaa.us-east-1...
    own_operator.start()
    host = "orders.bbbbbbbbbb.us-east-1.rds.amazonaws.com"  # copied from another account's console
    cluster.apply(dbrestore("ep", own_namespace, {"latestSnapshot": {"endpoint": host}}, "orders-copy"))
    obj = wait_phase(cluster, "ep", own_namespace, "Failed")
    assert ready(obj)["reason"] == "EndpointMismatch" and host in ready(obj)["message"]
    assert (
        value(
            scrape(own_operator.metrics_port), "dbops_aws_api_calls_total", operation="RestoreDBInstanceFromDBSnapshot"
        )
        == 0
    )


LIFECYCLE = (None, "Pending", "Restoring", "Available")


def test_a_burst_of_objects_tells_each_step_once_and_never_goes_back(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    """Many objects at once: a pass that follows the operator's own status write before the watch has
    brought it back must act on what was written, not on the older version (which would write Pending
    again, tell "requested" twice, and show a watcher a phase going back)."""
    src = seed_instance(fake_aws.client("rds"), "burst")
    fake_aws.configure(create_seconds=2)
    names = [f"b{n:02d}" for n in range(30)]
    docs = [dbrestore(n, namespace, {"dbSnapshot": src.snapshot_identifier}, f"burst-{n}") for n in names]
    with Watch(cluster, "dbrestore", namespace) as watch:
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
        for n in names:
            wait_phase(cluster, n, namespace, "Available", timeout=180)
    for n in names:
        phases = [(o.get("status") or {}).get("phase") for o in watch.objects if o["metadata"]["name"] == n]
        steps = [LIFECYCLE.index(p) for p in phases]
        assert steps == sorted(steps), (n, phases)
        told = [e for e in cluster.events(namespace, n) if e["reason"] == "Accepted"]
        assert [e["count"] for e in told] == [1], (n, told)
