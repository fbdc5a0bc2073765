"""The Helm charts (charts/dbops, charts/dbops-crds) against a real API server, and against kustomize.

helm is built from its Go module by hack/helm.sh (`make setup`). Each chart passes `helm lint --strict`;
rendered with the values of each install (every AWS identity, the namespace scope, cert-manager,
monitoring) it passes `kubectl apply --dry-run=server`; and rendered with the values that match an
overlay, it installs the same objects as that overlay, in substance: the same kinds, names and
namespaces, and per object the same spec, rules, bindings and annotations (the chart's labels may add
Helm's own). So the chart and manifests/ cannot drift apart: a change to one fails here until the other
follows.
"""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import pytest
import yaml

from tests.e2e.manifest_helpers import as_yaml, docs_of, install_third_party_crds, one, render
from tests.support.kube import ROOT, Cluster

CHART, CRDS_CHART = ROOT / "charts" / "dbops", ROOT / "charts" / "dbops-crds"
# overlay -> (release namespace, values): the chart's equivalent of each kustomize install.
EQUIVALENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "eks": ("dbops-system", {"createNamespace": True}),
    "eks-pod-identity": ("dbops-system", {"createNamespace": True, "aws": {"identity": "podIdentity"}}),
    "gke": ("dbops-system", {"createNamespace": True, "aws": {"identity": "webIdentity"}}),
    "aks": ("dbops-system", {"createNamespace": True, "aws": {"identity": "webIdentity"}}),
    # The overlay leaves the AWS identity to the team (see its comments): none, as in the chart.
    "namespaced": ("team-a", {"watch": {"scope": "namespace"}, "aws": {"identity": "none"}}),
}
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    **{overlay: values for overlay, (_, values) in EQUIVALENTS.items()},
    "cert-manager": {"webhook": {"certManager": {"enabled": True}}},
    "cert-manager-issuer": {
        "webhook": {"certManager": {"enabled": True, "issuerRef": {"kind": "ClusterIssuer", "name": "corp"}}}
    },
    "monitoring": {"monitoring": {"prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}}},
    "some-namespaces": {"watch": {"namespaces": ["team-*", "!team-secret"]}, "orphanPolicy": {"mode": "snapshot"}},
    "one-replica-no-extras": {"replicas": 1, "networkPolicy": {"enabled": False}, "aws": {"identity": "none"}},
}


@pytest.fixture(scope="module")
def helm() -> pathlib.Path:
    built = subprocess.run(["bash", str(ROOT / "hack" / "helm.sh")], capture_output=True, text=True, check=False)
    assert built.returncode == 0, f"hack/helm.sh (make helm) failed:\n{built.stderr}"
    return pathlib.Path(built.stdout.strip())


@pytest.fixture(scope="module")
def prepared(cluster: Cluster) -> None:
    install_third_party_crds(cluster)  # ServiceMonitor, PrometheusRule, cert-manager's Certificate/Issuer
    for ns in ("dbops-system", "team-a", "argocd"):
        if cluster.kubectl("get", "namespace", ns, check=False).returncode != 0:
            cluster.kubectl("create", "namespace", ns)


def helm_run(helm: pathlib.Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def template(
    helm: pathlib.Path,
    tmp_path: pathlib.Path,
    values: dict[str, Any],
    namespace: str = "dbops-system",
    chart: pathlib.Path = CHART,
) -> list[dict[str, Any]]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return docs_of(helm_run(helm, "template", "dbops", str(chart), "-n", namespace, "-f", str(path)).stdout)


def test_helm_lint(helm: pathlib.Path, tmp_path: pathlib.Path) -> None:
    helm_run(helm, "lint", "--strict", str(CRDS_CHART))
    for name, values in VARIANTS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        proc = helm_run(helm, "lint", "--strict", str(CHART), "-f", str(path), check=False)
        assert proc.returncode == 0, f"{name}:\n{proc.stdout}\n{proc.stderr}"


def test_schema_refuses_what_the_operator_would_not_take(helm: pathlib.Path, tmp_path: pathlib.Path) -> None:
    for bad, words in (
        ({"aws": {"identity": "keys"}}, "/aws/identity"),
        ({"watch": {"scope": "everywhere"}}, "/watch/scope"),
        ({"orphanPolicy": {"mode": "delete"}}, "/orphanPolicy/mode"),
        ({"replicas": 0}, "/replicas"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"aws": {"identity": "irsa", "roleArn": ""}}, "/aws/roleArn"),
        ({"tpyo": True}, "tpyo"),
        # namespace is the namespace scope's own (no DBPolicy readable), never a cluster-wide choice.
        ({"policy": {"mode": "namespace"}}, "/policy/mode"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        proc = helm_run(helm, "template", "dbops", str(CHART), "-f", str(path), check=False)
        assert proc.returncode != 0 and words in proc.stderr, (bad, proc.stderr)


@pytest.mark.parametrize("variant", VARIANTS)
def test_chart_passes_server_side_dry_run(
    cluster: Cluster, helm: pathlib.Path, prepared: None, tmp_path: pathlib.Path, variant: str
) -> None:
    values = VARIANTS[variant]
    namespace = "team-a" if values.get("watch", {}).get("scope") == "namespace" else "dbops-system"
    docs = template(helm, tmp_path, values, namespace)
    assert "CustomResourceDefinition" not in {d["kind"] for d in docs}  # uninstalling keeps every database
    proc = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-", input=as_yaml(docs), check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr
    assert len([line for line in proc.stdout.splitlines() if "(server dry run)" in line]) == len(docs), proc.stdout


def test_crds_chart_is_the_generated_crds_kept_on_uninstall(
    cluster: Cluster, helm: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    docs = template(helm, tmp_path, {}, chart=CRDS_CHART)
    generated = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / "crds").glob("*.yaml")}
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(g["metadata"]["name"] for g in generated.values())
    for crd in docs:
        (same,) = [g for g in generated.values() if g["metadata"]["name"] == crd["metadata"]["name"]]
        assert crd["spec"] == same["spec"]
        assert crd["metadata"]["annotations"] == {
            "helm.sh/resource-policy": "keep",
            "argocd.argoproj.io/sync-options": "Prune=false,Delete=false",
        }
    proc = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=as_yaml(docs), check=False)
    assert proc.returncode == 0, proc.stderr


def _key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def _substance(doc: dict[str, Any]) -> dict[str, Any]:
    """An object without its labels (compared apart), with the container's env as a mapping: order
    is not substance (kustomize appends an overlay's variables, the chart writes them in place)."""
    body = {k: v for k, v in doc.items() if k != "metadata"}
    body["annotations"] = doc["metadata"].get("annotations") or {}
    if doc["kind"] == "Deployment":
        body = yaml.safe_load(yaml.safe_dump(body))
        for c in body["spec"]["template"]["spec"]["containers"]:
            c["env"] = {e["name"]: e for e in c["env"]}
        volumes = body["spec"]["template"]["spec"]["volumes"]
        body["spec"]["template"]["spec"]["volumes"] = {v["name"]: v for v in volumes}
    return body


def assert_same_install(kustomized: list[dict[str, Any]], charted: list[dict[str, Any]]) -> None:
    chart_by_key = {_key(d): d for d in charted}
    assert sorted(chart_by_key) == sorted(_key(d) for d in kustomized)
    for doc in kustomized:
        other = chart_by_key[_key(doc)]
        assert _substance(other) == _substance(doc), _key(doc)
        labels, chart_labels = doc["metadata"].get("labels") or {}, other["metadata"].get("labels") or {}
        assert labels.items() <= chart_labels.items(), (_key(doc), labels, chart_labels)


@pytest.mark.parametrize("overlay", EQUIVALENTS)
def test_chart_installs_what_the_overlay_installs(
    cluster: Cluster, helm: pathlib.Path, tmp_path: pathlib.Path, overlay: str
) -> None:
    namespace, values = EQUIVALENTS[overlay]
    assert_same_install(
        render(cluster, ROOT / "manifests" / "overlays" / overlay), template(helm, tmp_path, values, namespace)
    )


def test_chart_monitoring_is_manifests_monitoring(cluster: Cluster, helm: pathlib.Path, tmp_path: pathlib.Path) -> None:
    values = {
        "monitoring": {
            "serviceMonitor": {"enabled": False},
            "prometheusRule": {"enabled": True},
            "dashboard": {"enabled": True},
        }
    }
    charted = [d for d in template(helm, tmp_path, values) if d["kind"] in ("PrometheusRule", "ConfigMap")]
    assert_same_install(render(cluster, ROOT / "manifests" / "monitoring"), charted)


def test_chart_image_is_the_release_the_manifests_pin(helm: pathlib.Path, tmp_path: pathlib.Path) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    images = yaml.safe_load((ROOT / "manifests" / "base" / "kustomization.yaml").read_text())["images"]
    assert images == [{"name": "dbops", "newName": "ghcr.io/dbops-dev/dbops", "newTag": chart["appVersion"]}]
    assert yaml.safe_load((CRDS_CHART / "Chart.yaml").read_text())["version"] == chart["version"]
    digest = "sha256:" + "a" * 64
    deploy = one(template(helm, tmp_path, {"image": {"digest": digest}}), "Deployment", "dbops")
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/dbops-dev/dbops@{digest}"


def test_namespace_scope_installs_nothing_cluster_wide(helm: pathlib.Path, tmp_path: pathlib.Path) -> None:
    docs = template(helm, tmp_path, {"watch": {"scope": "namespace"}, "createNamespace": False}, "team-a")
    assert {d["kind"] for d in docs}.isdisjoint({"Namespace", "ClusterRole", "ClusterRoleBinding"})
    assert all(d["metadata"]["namespace"] == "team-a" for d in docs)
    env = one(docs, "Deployment", "dbops")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "DBOPS_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in env
    assert not [e for e in env if e["name"].startswith("DBOPS_WEBHOOK")]
    # No DBPolicy is readable with a Role: the install says so, whatever policy.mode is.
    assert {"name": "DBOPS_POLICY", "value": "namespace"} in env
    opened = template(helm, tmp_path, {"policy": {"mode": "open"}})
    assert {"name": "DBOPS_POLICY", "value": "open"} in deployment_env(opened)
    assert {"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"} <= {d["kind"] for d in opened}
    unstamped = template(helm, tmp_path, {"policy": {"stampRequester": False}})
    assert not {d["kind"] for d in unstamped} & {"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"}


def deployment_env(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = one(docs, "Deployment", "dbops")["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def test_argocd_example_application_renders_the_chart(
    cluster: Cluster, helm: pathlib.Path, prepared: None, tmp_path: pathlib.Path
) -> None:
    apps = docs_of((ROOT / "argocd" / "examples" / "application-dbops-helm.yaml").read_text())
    crds_app, operator_app = one(apps, "Application", "dbops-crds"), one(apps, "Application", "dbops")
    assert (ROOT / crds_app["spec"]["source"]["path"]) == CRDS_CHART and not crds_app["metadata"].get("finalizers")
    assert crds_app["spec"]["syncPolicy"]["automated"]["prune"] is False
    source = operator_app["spec"]["source"]
    assert ROOT / source["path"] == CHART
    docs = template(helm, tmp_path, source["helm"]["valuesObject"], operator_app["spec"]["destination"]["namespace"])
    assert {"Deployment", "PrometheusRule", "ConfigMap"} <= {d["kind"] for d in docs}
    proc = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "-n", "argocd", "-f", "-", input=as_yaml(apps), check=False
    )
    assert proc.returncode == 0, proc.stderr
