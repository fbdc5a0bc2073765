"""Connection details (spec.connection) end to end: the Secret or ConfigMap dbops writes for the apps
that use a restored database (or the readers a DBAttach added), kept up to date, refused where the name
is someone else's, and gone with the object."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.e2e.obs_helpers import eventually
from tests.e2e.restore_helpers import dbattach, dbrestore
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import Cluster
from tests.support.operator import Operator

CONDITION = "ConnectionDetailsWritten"


def connection_condition(obj: dict[str, Any]) -> dict[str, Any]:
    conds = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == CONDITION), {})


def written(obj: dict[str, Any]) -> bool:
    return connection_condition(obj).get("status") == "True"


def get(cluster: Cluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def config_data(cluster: Cluster, name: str, namespace: str) -> dict[str, str]:
    return dict((get(cluster, "configmap", name, namespace) or {}).get("data") or {})


def secret_data(cluster: Cluster, name: str, namespace: str) -> dict[str, str]:
    secret = get(cluster, "secret", name, namespace)
    assert secret is not None, f"no Secret {name}"
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def test_a_connection_secret_holds_the_details_is_kept_up_to_date_and_goes_with_the_object(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    src = seed_instance(fake_aws.client("rds"), "conn")
    password = "Conn-s3cr3t-77"
    cluster.kubectl("create", "secret", "generic", "pw", "-n", namespace, f"--from-literal=password={password}")
    spec = {"masterPassword": {"secretRef": {"name": "pw"}}, "connection": {"name": "orders-db"}}
    cluster.apply(dbrestore("c1", namespace, {"dbSnapshot": src.snapshot_identifier}, "conn-copy", **spec))
    obj = cluster.wait_for("dbrestore", "c1", namespace, written, timeout=90, what=f"{CONDITION}=True")
    assert obj["status"]["phase"] == "Available", obj["status"]

    data = secret_data(cluster, "orders-db", namespace)
    st = obj["status"]
    assert data["endpoint"] == st["endpoint"] and data["port"] == str(st["port"]) == str(src.port)
    assert data["engine"] == "postgres" and data["username"] == "dbadmin"
    assert data["password"] == password  # the one dbops set from the user's Secret
    assert "masterUserSecretArn" not in data and "readerEndpoint" not in data
    secret = get(cluster, "secret", "orders-db", namespace)
    assert secret is not None
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "DBRestore",
        "c1",
        obj["metadata"]["uid"],
        True,
    )
    # The password never shows outside the Secrets that hold it.
    assert password not in json.dumps(obj) and password not in json.dumps(cluster.events(namespace, "c1"))
    assert password not in operator.tail(10**7)

    # An edit by hand is corrected by a later pass (level-triggered: compared on every pass).
    cluster.kubectl(
        "patch", "secret", "orders-db", "-n", namespace, "--type=merge", "-p", '{"stringData":{"endpoint":"wrong"}}'
    )
    cluster.wait_for(
        "dbrestore",
        "c1",
        namespace,
        lambda _: secret_data(cluster, "orders-db", namespace).get("endpoint") == st["endpoint"],
        timeout=60,
        what="the endpoint written again",
    )

    cluster.kubectl("delete", "dbrestore", "c1", "-n", namespace, "--timeout=60s")
    assert get(cluster, "secret", "orders-db", namespace) is None
    assert get(cluster, "secret", "pw", namespace) is not None  # the user's own Secret stays


def test_a_managed_password_gives_its_arn_and_a_configmap_never_a_password(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    src = seed_instance(fake_aws.client("rds"), "conm")
    spec = {
        "masterPassword": {"manageMasterUserPassword": True},
        "connection": {"name": "orders-db", "kind": "ConfigMap"},
    }
    cluster.apply(dbrestore("c2", namespace, {"dbSnapshot": src.snapshot_identifier}, "conm-copy", **spec))
    cluster.wait_for(
        "dbrestore",
        "c2",
        namespace,
        lambda _: "masterUserSecretArn" in config_data(cluster, "orders-db", namespace),
        timeout=90,
        what="the ConfigMap with the secret's ARN",
    )
    data = config_data(cluster, "orders-db", namespace)
    assert data["masterUserSecretArn"].startswith("arn:aws:secretsmanager:"), data
    assert "password" not in data and data["username"] == "dbadmin" and data["endpoint"]
    assert get(cluster, "secret", "orders-db", namespace) is None  # a ConfigMap was asked for, nothing else


def test_a_secret_dbops_did_not_create_is_never_written_nor_deleted(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    src = seed_instance(fake_aws.client("rds"), "cont")
    cluster.kubectl("create", "secret", "generic", "taken", "-n", namespace, "--from-literal=endpoint=mine")
    cluster.apply(
        dbrestore("c3", namespace, {"dbSnapshot": src.snapshot_identifier}, "cont-copy", connection={"name": "taken"})
    )
    obj = cluster.wait_for(
        "dbrestore", "c3", namespace, lambda o: connection_condition(o).get("reason") == "NameTaken", timeout=90
    )
    assert obj["status"]["phase"] == "Degraded", obj["status"]
    assert "spec.connection.name" in connection_condition(obj)["message"]
    assert secret_data(cluster, "taken", namespace) == {"endpoint": "mine"}
    cluster.kubectl("delete", "dbrestore", "c3", "-n", namespace, "--timeout=60s")
    assert secret_data(cluster, "taken", namespace) == {"endpoint": "mine"}


def test_the_password_secret_itself_is_refused_at_admission(cluster: Cluster, namespace: str) -> None:
    body = dbrestore(
        "c4",
        namespace,
        {"dbSnapshot": "orders-nightly"},
        "orders-c4",
        masterPassword={"secretRef": {"name": "pw"}},
        connection={"name": "pw"},
    )
    refused = cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert refused.returncode != 0
    assert "spec.connection.name: Invalid value" in refused.stderr and "must not name the Secret" in refused.stderr


def _readers(cluster: Cluster, name: str, namespace: str, count: int) -> dict[str, Any]:
    def done(obj: dict[str, Any]) -> bool:
        st = obj.get("status") or {}
        return st.get("phase") == "Available" and st.get("ready") == f"{count}/{count}" and written(obj)

    return cluster.wait_for("dbattach", name, namespace, done, timeout=120, what=f"Available {count}/{count}, written")


def test_a_dbattach_s_readers_are_written_follow_a_scale_out_and_go_with_the_object(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seeded = seed_cluster(rds, "conr")
    conn = {"name": "orders-readers", "kind": "ConfigMap"}
    cluster.apply(dbattach("r1", namespace, {"dbCluster": "conr"}, identifierPrefix="conr-ro", connection=conn))
    obj = _readers(cluster, "r1", namespace, 1)
    data, st = config_data(cluster, "orders-readers", namespace), obj["status"]
    (mine,) = st["instances"]
    assert data["readerEndpoint"] == st["endpoint"] and data["readerEndpoint"].startswith("conr.cluster-ro-")
    assert data["port"] == str(seeded.port) and data["engine"] == "aurora-postgresql"
    assert data["instanceEndpoints"] == mine["endpoint"]
    assert "password" not in data and "endpoint" not in data  # the writer's endpoint is not the readers'
    (owner,) = (get(cluster, "configmap", "orders-readers", namespace) or {})["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("DBAttach", "r1", obj["metadata"]["uid"])

    # A scale out is written once the new reader has its endpoint.
    cluster.kubectl("patch", "dbattach", "r1", "-n", namespace, "--type=merge", "-p", '{"spec":{"count":2}}')
    _readers(cluster, "r1", namespace, 2)
    obj = cluster.wait_for(
        "dbattach",
        "r1",
        namespace,
        lambda _: len(config_data(cluster, "orders-readers", namespace)["instanceEndpoints"].split(",")) == 2,
        timeout=60,
        what="both readers in the ConfigMap",
    )
    listed = config_data(cluster, "orders-readers", namespace)["instanceEndpoints"].split(",")
    assert listed == [i["endpoint"] for i in obj["status"]["instances"]]

    cluster.kubectl("delete", "dbattach", "r1", "-n", namespace, "--timeout=60s")
    assert get(cluster, "configmap", "orders-readers", namespace) is None


def test_a_dbattach_never_writes_into_a_secret_it_did_not_create(
    cluster: Cluster, operator: Operator, fake_aws: FakeAWS, namespace: str
) -> None:
    seed_cluster(fake_aws.client("rds"), "cont-c")
    cluster.kubectl("create", "secret", "generic", "readers", "-n", namespace, "--from-literal=readerEndpoint=mine")
    cluster.apply(
        dbattach("r2", namespace, {"dbCluster": "cont-c"}, identifier="cont-c-ro", connection={"name": "readers"})
    )
    obj = cluster.wait_for(
        "dbattach", "r2", namespace, lambda o: connection_condition(o).get("reason") == "NameTaken", timeout=120
    )
    assert obj["status"]["phase"] == "Available", obj["status"]  # the reader is up; only its details are not written
    assert "spec.connection.name" in connection_condition(obj)["message"]
    warnings = eventually(
        lambda: [e for e in cluster.events(namespace, "r2") if e.get("reason") == "NameTaken"], what="the event"
    )
    assert [(e["type"], e.get("count", 1)) for e in warnings] == [("Warning", 1)], warnings  # told once
    assert secret_data(cluster, "readers", namespace) == {"readerEndpoint": "mine"}
    cluster.kubectl("delete", "dbattach", "r2", "-n", namespace, "--timeout=60s")
    assert secret_data(cluster, "readers", namespace) == {"readerEndpoint": "mine"}
