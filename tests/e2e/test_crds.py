"""The CRDs as the real API server serves them: printer columns and admission-time validation."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from dbops import crdgen
from dbops.models import RESOURCES, DBAttachSpec, DBPolicySpec, DBRestoreScheduleSpec, DBRestoreSpec, Resource
from tests.support.kube import ROOT, Cluster


def restore(name: str, **spec: Any) -> dict[str, Any]:
    body = {"source": {"dbSnapshot": "orders-snap"}, "target": {"identifier": "orders-copy"}}
    body.update(spec)
    return {"apiVersion": "dbops.dev/v1alpha1", "kind": "DBRestore", "metadata": {"name": name}, "spec": body}


def apply_in(cluster: Cluster, namespace: str, obj: dict[str, Any]):
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    return cluster.apply(obj, check=False)


def test_crds_are_established_with_names_and_categories(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources", "--api-group=dbops.dev", "-o", "wide").stdout
    assert "dbrestores" in out and "dbr" in out and "DBRestore" in out
    assert "dbattaches" in out and "dba" in out
    assert "rds" in out  # category
    assert cluster.kubectl("get", "rds", "-A").returncode == 0


def test_kubectl_get_prints_the_columns(cluster: Cluster, own_namespace: str) -> None:
    # own_namespace: no operator watches it, so the object keeps the values set here.
    assert apply_in(cluster, own_namespace, restore("cols")).returncode == 0
    cluster.kubectl(
        "patch",
        "dbrestore",
        "cols",
        "-n",
        own_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Restoring","source":"snapshot:orders-snap",'
        '"endpoint":"orders-copy.abc.us-east-1.rds.amazonaws.com","rdsStatus":"backing-up"}}',
    )
    out = cluster.kubectl("get", "dbr", "cols", "-n", own_namespace).stdout.splitlines()
    assert out[0].split() == ["NAME", "PHASE", "SOURCE", "TARGET", "ENDPOINT", "RDS", "STATUS", "AGE"]
    row = out[1].split()
    assert row[:6] == [
        "cols",
        "Restoring",
        "snapshot:orders-snap",
        "orders-copy",
        "orders-copy.abc.us-east-1.rds.amazonaws.com",
        "backing-up",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"source": {}}, "spec.source: Invalid value"),
        ({"source": {"dbSnapshot": "a", "dbClusterSnapshot": "b"}}, "set exactly one of dbSnapshot"),
        ({"target": {"identifier": "1starts-with-digit"}}, "spec.target.identifier"),
        ({"target": {"identifier": "double--hyphen"}}, "spec.target.identifier"),
        ({"target": {"identifier": "x" * 64}}, "spec.target.identifier"),
        ({"source": {"latestSnapshot": {}}}, "spec.source.latestSnapshot: Invalid value"),
        ({"source": {"latestSnapshot": {"endpoint": "db.example.com"}}}, "spec.source.latestSnapshot.endpoint"),
        (
            {
                "source": {
                    "pointInTime": {
                        "dbInstance": "a",
                        "restoreTime": "2026-01-01T00:00:00Z",
                        "useLatestRestorableTime": True,
                    }
                }
            },
            "not both",
        ),
        ({"ttl": "24h"}, "spec.ttl needs deletionPolicy Delete or Snapshot"),
        ({"ttl": "tomorrow", "deletionPolicy": "Delete"}, "spec.ttl"),
        ({"deletionPolicy": "Destroy"}, "spec.deletionPolicy"),
        ({"target": {"identifier": "ok", "dbInstanceClass": "m5.large"}}, "spec.target.dbInstanceClass"),
        ({"target": {"identifier": "ok", "port": 80}}, "spec.target.port"),
        ({"masterPassword": {}}, "spec.masterPassword"),
    ],
)
def test_malformed_input_is_rejected_at_admission_naming_the_field(
    cluster: Cluster, own_namespace: str, spec: dict[str, Any], expected: str
) -> None:
    proc = apply_in(cluster, own_namespace, restore("bad", **spec))
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


def test_ttl_is_accepted_with_a_policy_that_removes(cluster: Cluster, own_namespace: str) -> None:
    proc = apply_in(cluster, own_namespace, restore("ttl-ok", ttl="3d", deletionPolicy="Snapshot"))
    assert proc.returncode == 0, proc.stderr


def test_target_identifier_and_region_are_immutable(cluster: Cluster, own_namespace: str) -> None:
    assert apply_in(cluster, own_namespace, restore("immut", region="eu-west-1")).returncode == 0
    proc = apply_in(cluster, own_namespace, restore("immut", region="eu-west-1", target={"identifier": "other"}))
    assert proc.returncode != 0 and "spec.target.identifier is immutable" in proc.stderr
    for changed in ({"region": "us-west-2"}, {}):  # changed, removed
        proc = apply_in(cluster, own_namespace, restore("immut", **changed))
        assert proc.returncode != 0 and "spec.region is immutable" in proc.stderr, proc.stderr
    # Added to an object that had none: a rule on spec.region itself would not run (no old value).
    assert apply_in(cluster, own_namespace, restore("no-region")).returncode == 0
    proc = apply_in(cluster, own_namespace, restore("no-region", region="eu-west-1"))
    assert proc.returncode != 0 and "spec.region is immutable" in proc.stderr, proc.stderr
    assert apply_in(cluster, own_namespace, restore("no-region", ttl="1h", deletionPolicy="Delete")).returncode == 0


def attach(name: str, **spec: Any) -> dict[str, Any]:
    body = {"cluster": {"dbCluster": "orders"}, **spec}
    return {"apiVersion": "dbops.dev/v1alpha1", "kind": "DBAttach", "metadata": {"name": name}, "spec": body}


@pytest.mark.parametrize(
    ("before", "after", "field"),
    [
        ({"identifier": "a"}, {"identifier": "b"}, "spec.identifier"),
        ({"identifier": "a"}, {"identifierPrefix": "a"}, "spec.identifier"),
        ({"identifierPrefix": "a"}, {"identifier": "a"}, "spec.identifierPrefix"),
        ({"identifierPrefix": "a"}, {"identifierPrefix": "b", "count": 2}, "spec.identifierPrefix"),
        ({"identifier": "a"}, {"identifier": "a", "region": "eu-west-1"}, "spec.region"),
        ({"identifier": "a", "region": "eu-west-1"}, {"identifier": "a"}, "spec.region"),
    ],
)
def test_dbattach_names_and_region_are_immutable(
    cluster: Cluster, own_namespace: str, before: dict[str, Any], after: dict[str, Any], field: str
) -> None:
    assert apply_in(cluster, own_namespace, attach("immut", **before)).returncode == 0
    proc = apply_in(cluster, own_namespace, attach("immut", **after))
    assert proc.returncode != 0 and f"{field} is immutable" in proc.stderr, proc.stderr
    assert apply_in(cluster, own_namespace, attach("immut", **before, dbInstanceClass="db.r6g.large")).returncode == 0


def test_endpoint_hostnames_of_every_partition_are_accepted(cluster: Cluster, own_namespace: str) -> None:
    hosts = [
        "orders.abc123xyz.eu-west-1.rds.amazonaws.com",
        "orders.cluster-abc123.us-east-1.rds.amazonaws.com",
        "orders.cluster-ro-abc123.cn-north-1.rds.amazonaws.com.cn",
        "reporting.cluster-custom-abc123.us-gov-west-1.rds.amazonaws.com",
    ]
    for n, host in enumerate(hosts):
        proc = apply_in(cluster, own_namespace, restore(f"ep{n}", source={"latestSnapshot": {"endpoint": host}}))
        assert proc.returncode == 0, f"{host}: {proc.stderr}"


EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_is_an_example_for_each_use() -> None:
    kinds = [doc["kind"] for p in EXAMPLES for doc in yaml.safe_load_all(p.read_text())]
    assert kinds.count("DBRestore") >= 7 and kinds.count("DBAttach") >= 3, kinds
    assert kinds.count("DBRestoreSchedule") >= 1, kinds
    assert kinds.count("DBPolicy") >= 3 and all(
        p.stem.startswith("policy-") for p in EXAMPLES if "DBPolicy" in p.read_text()
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_is_admitted_by_the_api_server_and_parsed_by_the_models(
    cluster: Cluster, own_namespace: str, path: pathlib.Path
) -> None:
    """Every example passes the CRD schema and CEL rules as served, and the operator's own models."""
    docs = list(yaml.safe_load_all(path.read_text()))
    models = {
        "DBRestore": DBRestoreSpec,
        "DBAttach": DBAttachSpec,
        "DBRestoreSchedule": DBRestoreScheduleSpec,
        "DBPolicy": DBPolicySpec,
    }
    ours = [d for d in docs if d["kind"] in models]
    assert len(ours) == 1, f"{path.name}: one DBRestore, DBAttach, DBRestoreSchedule or DBPolicy per example"
    models[ours[0]["kind"]].model_validate(ours[0]["spec"])
    proc = cluster.kubectl("apply", "--dry-run=server", "-n", own_namespace, "-f", str(path), check=False)
    assert proc.returncode == 0, proc.stderr


def _object_paths(schema: dict[str, Any], path: str) -> list[str]:
    """`path` and every object below it that has fields of its own (what kubectl explain lists)."""
    subs = schema.get("properties", {})
    return [path] * bool(subs) + [p for name, sub in subs.items() for p in _object_paths(sub, f"{path}.{name}")]


def _undescribed(explained: str) -> list[str]:
    """The fields kubectl explain lists with no description (it prints `<no description>` for them)."""
    blocks = explained.split("FIELDS:", 1)[1].strip("\n").split("\n\n")
    return [
        block.split("\t")[0].strip()
        for block in blocks
        if not any(line.startswith("    ") and line.strip() != "<no description>" for line in block.splitlines())
    ]


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("res", RESOURCES, ids=[r.kind for r in RESOURCES])
def test_kubectl_explain_describes_the_kind_and_every_spec_field(cluster: Cluster, res: Resource) -> None:
    """As the API server publishes the schema: the kind, its spec and status, and each field under spec."""
    kind = res.kind.lower()
    explain = {p: cluster.kubectl("explain", p).stdout for p in (kind, f"{kind}.status")}
    assert _words(res.description) in _words(explain[kind])
    assert "<empty>" not in explain[f"{kind}.status"]
    schema = crdgen.crd(res)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for path in _object_paths(schema, f"{kind}.spec"):
        out = cluster.kubectl("explain", path).stdout
        assert "<empty>" not in out and _undescribed(out) == [], f"kubectl explain {path}:\n{out}"
    assert _words(schema["description"]) in _words(cluster.kubectl("explain", f"{kind}.spec").stdout)
