"""The shipped manifests (manifests/, argocd/) against a real API server.

Every overlay is rendered with kubectl's kustomize and passes `kubectl apply --dry-run=server` (the
Prometheus Operator's and Argo CD's CRDs come from the pinned stand-ins in tests/fixtures/crds); the
operator's pod passes the "restricted" Pod Security Standard as the API server enforces it; and the
properties the issue asks for (non-root, read-only root FS, no capabilities, Recreate, probes, RBAC
without secrets) are checked on the rendered output, overlay by overlay.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.e2e.manifest_helpers import as_yaml, container_env, install_third_party_crds, one, render
from tests.support.kube import ROOT, Cluster

OVERLAYS = ("eks", "eks-pod-identity", "gke", "aks", "namespaced")
NAMESPACE = "dbops-system"
CLUSTER_WIDE = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


@pytest.fixture(scope="module")
def third_party_crds(cluster: Cluster) -> None:
    install_third_party_crds(cluster)
    for ns in (NAMESPACE, "argocd", "team-a"):
        # Namespaced objects cannot be dry-run into a namespace that does not exist yet.
        if cluster.kubectl("get", "namespace", ns, check=False).returncode != 0:
            cluster.kubectl("create", "namespace", ns)


def test_shipped_crds_are_the_generated_ones() -> None:
    generated = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (ROOT / "manifests" / "crds").glob("dbops.dev_*.yaml")}
    assert shipped == generated, "manifests/crds differs from crds/: run `make crds`"


def test_crds_ship_apart_and_argo_cd_never_prunes_or_deletes_them(cluster: Cluster, third_party_crds: None) -> None:
    crds = render(cluster, ROOT / "manifests" / "crds")
    assert sorted(d["metadata"]["name"] for d in crds) == sorted(
        yaml.safe_load(p.read_text())["metadata"]["name"] for p in (ROOT / "crds").glob("*.yaml")
    )
    assert len(crds) == 4  # DBRestore, DBAttach, DBRestoreSchedule, DBPolicy
    for crd in crds:
        assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false,Delete=false"
        assert (
            crd["spec"]
            == yaml.safe_load((ROOT / "crds" / f"dbops.dev_{crd['spec']['names']['plural']}.yaml").read_text())["spec"]
        )
    proc = cluster.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=as_yaml(crds), check=False)
    assert proc.returncode == 0, proc.stderr
    # Uninstalling the operator cannot take them (and with them every DBRestore and database) along.
    for tree in ("manifests/base", *(f"manifests/overlays/{o}" for o in OVERLAYS)):
        assert "CustomResourceDefinition" not in {d["kind"] for d in render(cluster, ROOT / tree)}, tree


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_overlay_passes_server_side_dry_run(cluster: Cluster, third_party_crds: None, overlay: str) -> None:
    path = ROOT / "manifests" / ("base" if overlay == "base" else f"overlays/{overlay}")
    docs = render(cluster, path)
    kinds = {d["kind"] for d in docs}
    assert {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "NetworkPolicy",
    } <= kinds
    if overlay == "namespaced":  # nothing cluster-scoped: a team without cluster rights can install it
        assert not kinds & CLUSTER_WIDE, kinds
    else:
        assert kinds >= CLUSTER_WIDE
    proc = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-", input=as_yaml(docs), check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "Warning" not in proc.stderr, proc.stderr  # PodSecurity warn=restricted on dbops-system
    applied = [line for line in proc.stdout.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(docs), proc.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_operator_pod_is_admitted_under_restricted_pod_security(
    cluster: Cluster, third_party_crds: None, overlay: str
) -> None:
    """Not just a Deployment (checked only for warnings): the pod itself, into an enforcing namespace."""
    deploy = one(render(cluster, ROOT / "manifests" / "overlays" / overlay), "Deployment", "dbops")
    ns = cluster.create_namespace("psa")
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    cluster.kubectl("create", "serviceaccount", "dbops", "-n", ns)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dbops", "namespace": ns, "labels": deploy["spec"]["template"]["metadata"]["labels"]},
        "spec": deploy["spec"]["template"]["spec"],
    }
    proc = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode == 0, proc.stderr
    # And the check has teeth: the same pod, allowed to run as root, is refused.
    pod["spec"] = {**pod["spec"], "securityContext": {**pod["spec"]["securityContext"], "runAsNonRoot": False}}
    for c in pod["spec"]["containers"]:
        c["securityContext"] = {k: v for k, v in c["securityContext"].items() if k != "runAsNonRoot"}
    refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployment_hardening(cluster: Cluster, overlay: str) -> None:
    docs = render(cluster, ROOT / "manifests" / "overlays" / overlay)
    deploy = one(docs, "Deployment", "dbops")
    spec = deploy["spec"]
    # Two replicas, one active (the Lease); a rollout never stops the last serving pod first.
    assert spec["replicas"] == 2 and spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert one(docs, "PodDisruptionBudget", "dbops")["spec"]["minAvailable"] == 1
    assert {c["topologyKey"] for c in spec["template"]["spec"]["topologySpreadConstraints"]} >= {
        "kubernetes.io/hostname"
    }
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "dbops"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["image"].startswith("ghcr.io/dbops-dev/dbops:") and not c["image"].endswith(":latest")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = container_env(deploy)
    assert env["DBOPS_LEADER_ELECTION"] == "true"
    assert ports["healthz"] == int(env["DBOPS_LIVENESS_PORT"]) and ports["metrics"] == int(env["DBOPS_METRICS_PORT"])
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # The only writable paths are volumes: the SQLite audit trail and /tmp.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert env["DBOPS_AUDIT_URL"] == "sqlite:////var/lib/dbops/audit.db"
    assert "emptyDir" in volumes[mounts["/var/lib/dbops"]] and "emptyDir" in volumes[mounts["/tmp"]]
    # Metrics: the Service and ServiceMonitor point at the container's metrics port.
    svc = one(docs, "Service", "dbops-metrics")
    assert svc["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["metrics"]
    smon = one(docs, "ServiceMonitor", "dbops")
    assert smon["spec"]["endpoints"][0]["port"] == "metrics" and smon["spec"]["endpoints"][0]["path"] == "/metrics"
    netpol = one(docs, "NetworkPolicy", "dbops")
    assert set(netpol["spec"]["policyTypes"]) == {"Ingress", "Egress"}


@pytest.mark.parametrize("overlay", ["gke", "aks"])
def test_web_identity_overlays(cluster: Cluster, overlay: str) -> None:
    deploy = one(render(cluster, ROOT / "manifests" / "overlays" / overlay), "Deployment", "dbops")
    pod = deploy["spec"]["template"]["spec"]
    env = container_env(deploy)
    assert env["AWS_ROLE_ARN"].startswith("arn:aws:iam::")
    (vol,) = [v for v in pod["volumes"] if v["name"] == "aws-token"]
    (source,) = vol["projected"]["sources"]
    assert source["serviceAccountToken"]["audience"] == "sts.amazonaws.com"
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "aws-token"]
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == f"{mount['mountPath']}/{source['serviceAccountToken']['path']}"


def test_eks_overlays(cluster: Cluster) -> None:
    irsa = render(cluster, ROOT / "manifests" / "overlays" / "eks")
    annotations = one(irsa, "ServiceAccount", "dbops")["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    pod_identity = render(cluster, ROOT / "manifests" / "overlays" / "eks-pod-identity")
    deploy = one(pod_identity, "Deployment", "dbops")
    assert "AWS_ROLE_ARN" not in container_env(deploy)  # the Pod Identity agent provides credentials
    egress = one(pod_identity, "NetworkPolicy", "dbops")["spec"]["egress"]
    assert any(rule.get("to") == [{"ipBlock": {"cidr": "169.254.170.23/32"}}] for rule in egress)


def test_rbac_is_least_privilege(cluster: Cluster) -> None:
    docs = render(cluster, ROOT / "manifests" / "base")
    operator = one(docs, "ClusterRole", "dbops-operator")
    granted = {
        (group, resource, verb)
        for rule in operator["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    everything = "\n".join(json.dumps(r) for r in operator["rules"])
    assert "*" not in everything and "secrets" not in everything
    assert not any(resource in {"leases", "kopfpeerings", "clusterkopfpeerings"} for _, resource, _ in granted)
    assert not any(verb in {"deletecollection", "update", "escalate", "bind", "impersonate"} for *_, verb in granted)
    # It deletes nothing but the DBRestores a DBRestoreSchedule ran (beyond its history limits), and
    # creates no dbops.dev object but those runs.
    assert {(g, r) for g, r, v in granted if v == "delete"} == {("dbops.dev", "dbrestores")}
    assert {r for g, r, v in granted if v == "create" and g == "dbops.dev"} == {"dbrestores"}
    binding = one(docs, "ClusterRoleBinding", "dbops-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dbops", "namespace": NAMESPACE}]
    # Leader election: its own Lease, in its own namespace, by a Role (never cluster-wide).
    leader = one(docs, "Role", "dbops-leader-election")
    assert leader["metadata"]["namespace"] == NAMESPACE
    assert {r for rule in leader["rules"] for r in rule["resources"]} == {"leases"}
    assert [rule.get("resourceNames") for rule in leader["rules"] if "update" in rule["verbs"]] == [["dbops-operator"]]
    reader = one(docs, "ClusterRole", "dbops-secret-reader")
    assert reader["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    # Nothing binds the secret reader by default: a team opts in with a RoleBinding in its namespace.
    bindings = [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert not [d for d in bindings if d["roleRef"]["name"] == "dbops-secret-reader"]
    # Policies: read and their status written, never changed; the only Secret is its own keys, in its own
    # namespace (created once, then only that one read and renewed).
    assert {v for g, r, v in granted if r == "dbpolicies"} == {"get", "list", "watch"}
    assert {v for g, r, v in granted if r == "dbpolicies/status"} == {"patch"}
    keys = one(docs, "Role", "dbops-keys")
    assert keys["metadata"]["namespace"] == NAMESPACE
    assert keys["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["dbops-webhook"], "verbs": ["get", "update"]},
    ]
    assert one(docs, "RoleBinding", "dbops-keys")["subjects"] == binding["subjects"]
    # Users: editing a namespace never gives DBPolicies; only dbops-policy-admin writes them, bound by nobody.
    edit = one(docs, "ClusterRole", "dbops-edit")
    assert "dbpolicies" not in json.dumps(edit["rules"])
    assert "aggregate-to" not in json.dumps(
        one(docs, "ClusterRole", "dbops-policy-admin")["metadata"].get("labels", {})
    )
    assert not [d for d in bindings if d["roleRef"]["name"] == "dbops-policy-admin"]
    # Connection details (spec.connection): written only where a namespace binds the writer, never listed.
    writer = one(docs, "ClusterRole", "dbops-connection-writer")
    assert writer["rules"] == [
        {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "create", "update", "delete"]}
    ]
    assert not [d for d in bindings if d["roleRef"]["name"] == "dbops-connection-writer"]


def test_aggregated_roles_match_the_built_in_roles_selectors(cluster: Cluster) -> None:
    """The API server's own view/edit/admin roles select dbops-view/dbops-edit by label.

    (The test server runs no controller manager, so the aggregation itself is not carried out here;
    the selectors it would use are read from the live built-in roles.)
    """
    docs = render(cluster, ROOT / "manifests" / "base")
    labels = {name: one(docs, "ClusterRole", name)["metadata"]["labels"] for name in ("dbops-view", "dbops-edit")}

    def selected_by(builtin: str) -> set[str]:
        role = json.loads(cluster.kubectl("get", "clusterrole", builtin, "-o", "json").stdout)
        selectors = [s["matchLabels"] for s in role["aggregationRule"]["clusterRoleSelectors"]]
        return {name for name, lab in labels.items() if any(sel.items() <= lab.items() for sel in selectors)}

    assert selected_by("view") == {"dbops-view"}
    assert selected_by("edit") == {"dbops-view", "dbops-edit"}
    assert selected_by("admin") == {"dbops-view", "dbops-edit"}
    view = one(docs, "ClusterRole", "dbops-view")["rules"]
    assert {v for r in view for v in r["verbs"]} == {"get", "list", "watch"}


def test_argocd_passes_server_side_dry_run(cluster: Cluster, third_party_crds: None) -> None:
    docs = render(cluster, ROOT / "argocd")
    assert {d["kind"] for d in docs} == {"AppProject", "Application", "ApplicationSet", "ConfigMap"}
    cm = one(docs, "ConfigMap", "argocd-cm")
    for kind in ("DBRestore", "DBAttach"):
        lua = (ROOT / "argocd" / "resource_customizations" / "dbops.dev" / kind / "health.lua").read_text()
        assert cm["data"][f"resource.customizations.health.dbops.dev_{kind}"] == lua
    installs = [d for d in docs if d["kind"] == "Application"]
    for app in installs:
        overlay = ROOT / app["spec"]["source"]["path"]
        assert overlay.is_dir(), f"{app['metadata']['name']} installs from a path that does not exist"
    proc = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-", input=as_yaml(docs), check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert len([line for line in proc.stdout.splitlines() if "(server dry run)" in line]) == len(docs)


def test_argocd_never_removes_the_crds(cluster: Cluster) -> None:
    """The CRDs' Application neither prunes nor cascades; the operator's Application installs no CRD."""
    docs = render(cluster, ROOT / "argocd")
    crds_app, operator_app = one(docs, "Application", "dbops-crds"), one(docs, "Application", "dbops")
    assert crds_app["spec"]["source"]["path"] == "manifests/crds"
    assert not crds_app["metadata"].get("finalizers")  # deleting the Application keeps what it installed
    assert crds_app["spec"]["syncPolicy"]["automated"]["prune"] is False
    wave = int(crds_app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    assert wave < int((operator_app["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", 0))
    installed = render(cluster, ROOT / operator_app["spec"]["source"]["path"])
    assert "CustomResourceDefinition" not in {d["kind"] for d in installed}
