"""Rendering the shipped manifests (kustomize, helm) and installing them as a user would."""

from __future__ import annotations

import os
import pathlib
import subprocess
from typing import Any

import yaml

from tests.support.kube import ROOT, Cluster

FIXTURE_CRDS = ROOT / "tests" / "fixtures" / "crds"


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def render(cluster: Cluster, path: pathlib.Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(cluster.bin / "kubectl"), "kustomize", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return docs_of(out.stdout)


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container_env(deploy: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}


def as_yaml(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(d) for d in docs)


def install_third_party_crds(cluster: Cluster) -> None:
    """The Prometheus Operator's and Argo CD's CRDs (pinned stand-ins), for manifests that use them."""
    for path in sorted(FIXTURE_CRDS.glob("*.yaml")):
        cluster.kubectl("apply", "--server-side", "-f", str(path))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(path))


def into_namespace(workdir: pathlib.Path, overlay: pathlib.Path, namespace: str) -> pathlib.Path:
    """A kustomization that installs `overlay` into `namespace` (what a user's own overlay would do):
    the test API server runs no namespace controller, so a deleted namespace is never reused."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": namespace,
                "resources": [os.path.relpath(overlay, workdir)],
                # kustomize's namespace does not rewrite the subjects the overlay inherited: point the
                # bindings at the ServiceAccount where it now is.
                "replacements": [
                    {
                        "source": {"kind": "ServiceAccount", "name": "dbops", "fieldPath": "metadata.namespace"},
                        "targets": [
                            {"select": {"kind": kind}, "fieldPaths": ["subjects.[name=dbops].namespace"]}
                            for kind in ("RoleBinding", "ClusterRoleBinding")
                        ],
                    }
                ],
            }
        )
    )
    return workdir
