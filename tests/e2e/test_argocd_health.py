"""Argo CD health checks (argocd/resource_customizations/dbops.dev/*/health.lua) against real statuses.

The Lua runs in Lua 5.1 (lupa), the dialect of Argo CD's gopher-lua, with the object as the global `obj`,
as Argo CD runs it. Three proofs:
- every case of each kind's health_test.yaml (Argo CD's own test layout) gives the expected status;
- objects the operator produces right now (restoring, available, failed) give the right health, and
  the committed testdata/ has the same shape as them (so testdata cannot drift from the operator);
- argocd/kustomization.yaml wires exactly these files into argocd-cm under Argo CD's key names.

Regenerate testdata/ from a live operator: DBOPS_REGEN_ARGOCD_TESTDATA=1 pytest tests/e2e/test_argocd_health.py
(then review health_test.yaml's expected messages by hand).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest
import yaml
from lupa import lua51

from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_cluster, seed_instance
from tests.support.kube import ROOT, Cluster
from tests.support.operator import Operator

CUSTOMIZATIONS = ROOT / "argocd" / "resource_customizations" / "dbops.dev"
KINDS = ("DBRestore", "DBAttach")
REGEN = bool(os.environ.get("DBOPS_REGEN_ARGOCD_TESTDATA"))


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """Run KIND/health.lua on obj exactly as Argo CD does: a fresh state, `obj` global, a returned table."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((CUSTOMIZATIONS / kind / "health.lua").read_text())
    assert result is not None, f"{kind}/health.lua returned nothing"
    return {"status": result["status"], "message": result["message"]}


def _cases(kind: str) -> list[tuple[str, dict[str, Any]]]:
    tests = yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())["tests"]
    return [(kind, case) for case in tests]


@pytest.mark.parametrize(
    ("kind", "case"),
    [c for k in KINDS for c in _cases(k)],
    ids=lambda v: v if isinstance(v, str) else pathlib.Path(v["inputPath"]).stem,
)
def test_health_test_yaml_cases(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CUSTOMIZATIONS / kind / case["inputPath"]).read_text())
    assert obj["kind"] == kind and obj["apiVersion"].startswith("dbops.dev/")
    assert health(kind, obj) == case["healthStatus"]


def test_every_testdata_file_is_covered_and_every_status_is_exercised() -> None:
    for kind in KINDS:
        used = {pathlib.Path(c["inputPath"]).name for _, c in _cases(kind)}
        present = {p.name for p in (CUSTOMIZATIONS / kind / "testdata").glob("*.yaml")}
        assert used == present, f"{kind}: testdata files without a case or cases without a file"
        statuses = {c["healthStatus"]["status"] for _, c in _cases(kind)}
        assert {"Healthy", "Progressing", "Degraded"} <= statuses


def test_edge_cases_without_status_or_with_a_newer_generation() -> None:
    for kind in KINDS:
        fresh = {"apiVersion": "dbops.dev/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": 1}}
        assert health(kind, fresh) == {"status": "Progressing", "message": f"Waiting for dbops to accept the {kind}"}
        stale = {
            **fresh,
            "metadata": {"name": "x", "generation": 3},
            "status": {"phase": "Available", "observedGeneration": 2, "conditions": []},
        }
        assert health(kind, stale) == {"status": "Progressing", "message": "Waiting for dbops to observe generation 3"}
        odd = {**fresh, "status": {"phase": "Sideways"}}
        assert health(kind, odd)["status"] == "Unknown"


def test_argocd_cm_wiring() -> None:
    """argocd/kustomization.yaml's configMapGenerator puts each health.lua under Argo CD's key."""
    kustomization = yaml.safe_load((ROOT / "argocd" / "kustomization.yaml").read_text())
    (gen,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "argocd-cm"]
    assert gen["behavior"] in ("create", "merge") and gen["options"]["disableNameSuffixHash"] is True
    files = dict(f.split("=", 1) for f in gen["files"])
    for kind in KINDS:
        key = f"resource.customizations.health.dbops.dev_{kind}"
        assert (ROOT / "argocd" / files[key]).resolve() == (CUSTOMIZATIONS / kind / "health.lua").resolve()


# --- Against the operator ---------------------------------------------------------------------------


def _snapshot(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as testdata keeps it: what health.lua reads, without server bookkeeping."""
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "metadata": {"name": meta["name"], "namespace": "team-a", "generation": meta["generation"]},
        "spec": obj["spec"],
        "status": obj["status"],
    }


def _shape(value: Any) -> Any:
    """Keys and types, not values: the structure testdata must share with live objects."""
    if isinstance(value, dict):
        if "type" in value and "status" in value and "reason" in value:  # a condition
            return ("condition", sorted(value))
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        # An empty list matches a list of anything: while attaching, `instances` is [] until RDS lists
        # the new instance, so which of the two a test run sees first is a matter of timing.
        return [_shape(v) for v in value[:1]] or "list"
    return type(value).__name__


def _same_shape(a: Any, b: Any) -> bool:
    if a == "list" or b == "list":  # an empty list: the other side must be a list too
        return isinstance(a, list) or isinstance(b, list) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_shape(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _check_against_testdata(kind: str, name: str, live: dict[str, Any]) -> dict[str, Any]:
    path = CUSTOMIZATIONS / kind / "testdata" / f"{name}.yaml"
    if REGEN:
        path.write_text(yaml.safe_dump(_snapshot(live), sort_keys=False))
    committed = yaml.safe_load(path.read_text())
    assert committed["status"]["phase"] == live["status"]["phase"]
    assert _same_shape(_shape(committed["status"]), _shape(live["status"])), (
        f"{path} no longer looks like the operator's status"
    )
    ready = next(c for c in live["status"]["conditions"] if c["type"] == "Ready")
    expected = {
        "Available": "Healthy",
        "Failed": "Degraded",
        "Degraded": "Degraded",
        "Restoring": "Progressing",
        "Attaching": "Progressing",
    }[live["status"]["phase"]]
    got = health(kind, live)
    assert got["status"] == expected, (got, live["status"])
    assert ready["message"] in got["message"]
    if expected == "Degraded":
        assert got["message"].startswith(f"{ready['reason']}: ")
    return got


def _wait_attach(cluster: Cluster, name: str, namespace: str, *phases: str) -> dict[str, Any]:
    return cluster.wait_for(
        "dbattach",
        name,
        namespace,
        lambda o: (o.get("status") or {}).get("phase") in phases,
        timeout=90,
        what=f"phase {'/'.join(phases)}",
    )


def test_live_dbrestore_statuses(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    rds = fake_aws.client("rds")
    src = seed_instance(rds, "orders")
    fake_aws.configure(create_seconds=4)
    own_operator.start()
    cluster.apply(dbrestore("orders-copy", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "orders-copy"))
    cluster.apply(dbrestore("no-such-snapshot", own_namespace, {"dbSnapshot": "does-not-exist"}, "nothing-here"))
    # Restoring as a poll reports it (RDS status and endpoint known), not the instant after the restore
    # call: which of the two a run would see first is a matter of timing.
    restoring = cluster.wait_for(
        "dbrestore",
        "orders-copy",
        own_namespace,
        lambda o: (o.get("status") or {}).get("phase") == "Restoring" and bool(o["status"].get("endpoint")),
        what="Restoring with an endpoint",
    )
    _check_against_testdata("DBRestore", "restoring", restoring)
    _check_against_testdata(
        "DBRestore", "available", wait_phase(cluster, "orders-copy", own_namespace, "Available", timeout=90)
    )
    _check_against_testdata("DBRestore", "failed", wait_phase(cluster, "no-such-snapshot", own_namespace, "Failed"))
    # Available in RDS, but the master password cannot be set: Degraded, for Argo CD too.
    cluster.kubectl("create", "secret", "generic", "pw", "-n", own_namespace, "--from-literal=other=x")
    keyless = dbrestore(
        "keyless", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "keyless",
        masterPassword={"secretRef": {"name": "pw"}},
    )  # fmt: skip
    cluster.apply(keyless)
    _check_against_testdata("DBRestore", "degraded", wait_phase(cluster, "keyless", own_namespace, "Degraded"))


def test_live_dbattach_statuses(
    cluster: Cluster, own_operator: Operator, fake_aws: FakeAWS, own_namespace: str
) -> None:
    rds = fake_aws.client("rds")
    seed_cluster(rds, "billing")
    fake_aws.configure(create_seconds=4)
    own_operator.start()
    base = {"apiVersion": "dbops.dev/v1alpha1", "kind": "DBAttach"}
    cluster.apply(
        {
            **base,
            "metadata": {"name": "billing-readers", "namespace": own_namespace},
            "spec": {"cluster": {"dbCluster": "billing"}, "identifier": "billing-reader"},
        }
    )
    cluster.apply(
        {
            **base,
            "metadata": {"name": "no-such-cluster", "namespace": own_namespace},
            "spec": {"cluster": {"dbCluster": "does-not-exist"}, "identifier": "nowhere-reader"},
        }
    )
    _check_against_testdata(
        "DBAttach", "attaching", _wait_attach(cluster, "billing-readers", own_namespace, "Attaching")
    )
    _check_against_testdata(
        "DBAttach", "available", _wait_attach(cluster, "billing-readers", own_namespace, "Available")
    )
    _check_against_testdata("DBAttach", "failed", _wait_attach(cluster, "no-such-cluster", own_namespace, "Failed"))
