"""manifests/monitoring against a real API server: the dashboard ConfigMap and the PrometheusRule pass
`kubectl apply --dry-run=server` with the Prometheus Operator's CRDs (the pinned stand-ins of
tests/fixtures/crds, installed by test_manifests' fixture)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.e2e.test_manifests import one, render, third_party_crds  # noqa: F401 - a fixture, used by name
from tests.support.kube import ROOT, Cluster

MONITORING = ROOT / "manifests" / "monitoring"


@pytest.mark.usefixtures("third_party_crds")
def test_monitoring_passes_server_side_dry_run(cluster: Cluster) -> None:
    docs = render(cluster, MONITORING)
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "PrometheusRule"]
    dashboard = one(docs, "ConfigMap", "dbops-grafana-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"  # what Grafana's sidecar looks for
    assert dashboard["metadata"]["namespace"] == "dbops-system"
    (text,) = dashboard["data"].values()
    assert json.loads(text) == json.loads((MONITORING / "dashboards" / "dbops-overview.json").read_text())
    rule = one(docs, "PrometheusRule", "dbops")
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} >= {"DbopsOperatorDown"}

    manifest = "---\n".join(yaml.safe_dump(d) for d in docs)
    proc = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-", input=manifest, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("(server dry run)") == len(docs), proc.stdout


def test_base_kustomization_points_at_monitoring() -> None:
    text = (ROOT / "manifests" / "base" / "kustomization.yaml").read_text()
    assert "../../monitoring" in text and (MONITORING / "kustomization.yaml").is_file()
