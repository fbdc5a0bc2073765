"""The operator as shipped: its ServiceAccount's token, its shipped RBAC, web identity credentials.

One operator runs with a real token of dbops-system/dbops (TokenRequest API) and nothing but the rules of
manifests/base, and gets its AWS credentials the way the GKE/AKS overlays give them: a projected token
for the audience sts.amazonaws.com exchanged through AssumeRoleWithWebIdentity, with no access keys in
its environment. It enforces DBPolicies (the shipped default) and serves its validating webhook, keeping
the webhook's configuration and its keys Secret in dbops-system itself. It must do a full restore; it
must be refused Secrets in a namespace that did not opt in (the DBRestore says SecretNotReadable), and
read them where the namespace bound dbops-secret-reader.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable
from typing import Any

import yaml

from tests.e2e.manifest_helpers import render
from tests.e2e.restore_helpers import dbrestore, wait_phase
from tests.support.fakeaws_fixture import FakeAWS, seed_instance
from tests.support.kube import ROOT, Cluster
from tests.support.operator import Operator

NAMESPACE, SA = "dbops-system", "dbops"
MOTO_ACCOUNT = "123456789012"  # moto's default account: where fake_aws seeds everything
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def install_shipped_rbac(cluster: Cluster) -> None:
    docs = [d for d in render(cluster, ROOT / "manifests" / "base") if d["kind"] in RBAC_KINDS]
    assert {d["kind"] for d in docs} == RBAC_KINDS
    # Server-side, as every other test installs manifests: a client-side apply would leave its
    # last-applied annotation behind and make a later server-side dry run warn about it.
    cluster.kubectl("apply", "--server-side", "-f", "-", input="---\n".join(yaml.safe_dump(d) for d in docs))


def can_i(cluster: Cluster, kubeconfig: pathlib.Path, *args: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


def web_identity_env(cluster: Cluster, token_file: pathlib.Path) -> dict[str, str]:
    """The AWS variables of the GKE overlay's Deployment, with the token file where the test keeps it."""
    (deploy,) = [d for d in render(cluster, ROOT / "manifests" / "overlays" / "gke") if d["kind"] == "Deployment"]
    env = {e["name"]: e["value"] for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"] if "value" in e}
    aws = {k: v for k, v in env.items() if k.startswith("AWS_")}
    assert {"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"} <= aws.keys()
    # The overlay's example ARN names another account; moto gives an assumed role's credentials that
    # role's account, so the role must live in the stand-in's account, where the test seeds its snapshots.
    role = re.sub(r"^(arn:aws:iam::)\d{12}(:role/.+)$", rf"\g<1>{MOTO_ACCOUNT}\g<2>", aws["AWS_ROLE_ARN"])
    assert role != aws["AWS_ROLE_ARN"] or MOTO_ACCOUNT in role, aws["AWS_ROLE_ARN"]
    return {**aws, "AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file)}


def password_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "MasterPasswordSet"), None)


def test_shipped_service_account_restores_and_is_denied_what_it_does_not_need(
    cluster: Cluster,
    own_operator: Operator,
    fake_aws: FakeAWS,
    own_namespace: str,
    tmp_path: pathlib.Path,
    admission_webhook: dict[str, str],
    policies: Callable[..., str],
) -> None:
    install_shipped_rbac(cluster)
    opted_in = cluster.create_namespace("own")
    policy = policies(f"rbac-{own_namespace}", namespaces=[own_namespace, opted_in])
    cluster.kubectl(
        "create",
        "rolebinding",
        "dbops-secret-reader",
        "-n",
        opted_in,
        "--clusterrole=dbops-secret-reader",
        f"--serviceaccount={NAMESPACE}:{SA}",
    )
    for ns in (own_namespace, opted_in):
        cluster.kubectl("create", "secret", "generic", "db-password", "-n", ns, "--from-literal=password=s3cret-pw-1")

    sa_config = cluster.kubeconfig_for("dbops-sa", token=cluster.service_account_token(NAMESPACE, SA))

    # What it may and may not do, as the API server's authorizer answers for this token.
    assert can_i(cluster, sa_config, "watch", "dbrestores.dbops.dev", "--all-namespaces")
    assert can_i(cluster, sa_config, "patch", "dbrestores.dbops.dev", "--subresource=status", "-n", own_namespace)
    assert can_i(cluster, sa_config, "create", "events", "-n", own_namespace)
    assert can_i(cluster, sa_config, "get", "secrets", "-n", opted_in)
    assert not can_i(cluster, sa_config, "get", "secrets", "-n", own_namespace)
    assert not can_i(cluster, sa_config, "list", "secrets", "-n", opted_in)
    assert not can_i(cluster, sa_config, "get", "secrets", "--all-namespaces")
    # A DBRestoreSchedule's runs are DBRestores it creates and deletes; nothing else of users' it deletes.
    assert can_i(cluster, sa_config, "watch", "dbrestoreschedules.dbops.dev", "--all-namespaces")
    assert can_i(cluster, sa_config, "create", "dbrestores.dbops.dev", "-n", own_namespace)
    assert can_i(cluster, sa_config, "delete", "dbrestores.dbops.dev", "-n", own_namespace)
    assert not can_i(cluster, sa_config, "delete", "dbrestoreschedules.dbops.dev", "-n", own_namespace)
    assert not can_i(cluster, sa_config, "delete", "dbattaches.dbops.dev", "-n", own_namespace)
    assert not can_i(cluster, sa_config, "create", "dbattaches.dbops.dev", "-n", own_namespace)
    assert not can_i(cluster, sa_config, "create", "pods", "-n", own_namespace)
    assert not can_i(cluster, sa_config, "get", "configmaps", "-n", NAMESPACE)
    # Its Lease, in its own namespace only (leader election between the replicas).
    assert can_i(cluster, sa_config, "create", "leases.coordination.k8s.io", "-n", NAMESPACE)
    assert can_i(cluster, sa_config, "update", "leases.coordination.k8s.io/dbops-operator", "-n", NAMESPACE)
    assert not can_i(cluster, sa_config, "update", "leases.coordination.k8s.io/someone-elses", "-n", NAMESPACE)
    assert not can_i(cluster, sa_config, "create", "leases.coordination.k8s.io", "-n", own_namespace)
    assert not can_i(cluster, sa_config, "patch", "validatingwebhookconfigurations/someone-elses")
    assert can_i(cluster, sa_config, "patch", "validatingwebhookconfigurations/dbops.dev")
    assert can_i(cluster, sa_config, "watch", "dbpolicies.dbops.dev")
    assert can_i(cluster, sa_config, "patch", "dbpolicies.dbops.dev", "--subresource=status")
    assert not can_i(cluster, sa_config, "create", "dbpolicies.dbops.dev")
    assert not can_i(cluster, sa_config, "patch", "dbpolicies.dbops.dev")
    assert can_i(cluster, sa_config, "get", "mutatingadmissionpolicies/dbops-requested-by")
    assert not can_i(cluster, sa_config, "get", "mutatingadmissionpolicies/someone-elses")
    # Its own keys Secret, in its own namespace only.
    assert can_i(cluster, sa_config, "get", "secrets/dbops-webhook", "-n", NAMESPACE)
    assert can_i(cluster, sa_config, "create", "secrets", "-n", NAMESPACE)
    assert not can_i(cluster, sa_config, "get", "secrets/other", "-n", NAMESPACE)
    assert not can_i(cluster, sa_config, "create", "secrets", "-n", own_namespace)
    # And the API server refuses the real request, not only the question.
    denied = cluster.kubectl("get", "secret", "db-password", "-n", own_namespace, kubeconfig=sa_config, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower(), denied.stderr

    # AWS through web identity federation: the token kube-apiserver minted for sts.amazonaws.com.
    token_file = tmp_path / "aws-token"
    token_file.write_text(cluster.service_account_token(NAMESPACE, SA, audience="sts.amazonaws.com"))
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        own_operator.env.pop(key, None)
    own_operator.env.update(web_identity_env(cluster, token_file))
    own_operator.env["KUBECONFIG"] = str(sa_config)
    own_operator.env["DBOPS_NAMESPACE"] = f"{own_namespace},{opted_in}"
    # As shipped: policies enforced, the webhook served with its keys in dbops-system.
    own_operator.env.update(
        admission_webhook, DBOPS_POLICY="enforce", DBOPS_WEBHOOK_SECRET=f"{NAMESPACE}/dbops-webhook"
    )

    rds = fake_aws.client("rds")
    src = seed_instance(rds, "orders")
    fake_aws.configure(create_seconds=2)
    fake_aws.reset_calls()
    own_operator.start()
    password = {"masterPassword": {"secretRef": {"name": "db-password", "key": "password"}}}
    cluster.apply(dbrestore("r", own_namespace, {"dbSnapshot": src.snapshot_identifier}, "orders-a", **password))
    cluster.apply(dbrestore("r", opted_in, {"dbSnapshot": src.snapshot_identifier}, "orders-b", **password))

    # A full restore in both namespaces, with the shipped rules only; where the password Secret may not
    # be read, the database is there but not usable as asked: Degraded.
    for ns, phase in ((own_namespace, "Degraded"), (opted_in, "Available")):
        obj = wait_phase(cluster, "r", ns, phase, "Failed", timeout=90)
        assert obj["status"]["phase"] == phase, obj["status"]
        assert obj["status"]["endpoint"]
    assert fake_aws.calls().get("AssumeRoleWithWebIdentity", 0) >= 1
    assert fake_aws.calls()["RestoreDBInstanceFromDBSnapshot"] == 2

    # The password: refused where the namespace did not opt in, set where it did.
    refused = cluster.wait_for("dbrestore", "r", own_namespace, password_condition, what="MasterPasswordSet")
    cond = password_condition(refused)
    assert cond is not None and cond["status"] == "False" and cond["reason"] == "SecretNotReadable", cond
    assert "403" in cond["message"] and "s3cret" not in cond["message"]
    allowed = cluster.wait_for(
        "dbrestore",
        "r",
        opted_in,
        lambda o: (password_condition(o) or {}).get("status") == "True",
        what="MasterPasswordSet=True",
    )
    assert password_condition(allowed)["reason"] == "PasswordSet"  # type: ignore[index]
    assert fake_aws.calls().get("ModifyDBInstance") == 1  # only the opted-in namespace's database
    # The operator did its bookkeeping (finalizer, status, events, the policy's status, the webhook's
    # configuration and keys) with these rules alone.
    log = own_operator.tail(200_000)
    for refusal in ("Not enough permissions", "APIForbiddenError", "403 Forbidden", "not written:"):
        assert refusal not in log, log[-4000:]
    assert "Restoring" in [e["reason"] for e in cluster.events(opted_in, "r")]
    status = cluster.wait_for(
        "dbpolicy", policy, "default", lambda o: (o.get("status") or {}).get("namespaceCount") == 2, what="status"
    )["status"]
    assert status["namespaces"] == sorted([own_namespace, opted_in]) and status["observedGeneration"] == 1
    assert cluster.kubectl("get", "secret", "dbops-webhook", "-n", NAMESPACE).returncode == 0
    configured = cluster.kubectl("get", "validatingwebhookconfiguration", "dbops.dev", "-o", "name").stdout.strip()
    assert configured.endswith("/dbops.dev")
