"""Shared bits of the DBRestore end-to-end tests."""

from __future__ import annotations

from typing import Any

from tests.support.kube import Cluster


def dbrestore(
    name: str, namespace: str, source: dict[str, Any], target: dict[str, Any] | str, **spec: Any
) -> dict[str, Any]:
    tgt = {"identifier": target} if isinstance(target, str) else target
    return {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DBRestore",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"source": source, "target": tgt, **spec},
    }


def dbattach(name: str, namespace: str, cluster: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dbops.dev/v1alpha1",
        "kind": "DBAttach",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"cluster": cluster, **spec},
    }


def phase_is(*phases: str):
    return lambda obj: (obj.get("status") or {}).get("phase") in phases


def ready(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def wait_phase(cluster: Cluster, name: str, namespace: str, *phases: str, timeout: float = 60) -> dict[str, Any]:
    return cluster.wait_for(
        "dbrestore", name, namespace, phase_is(*phases), timeout=timeout, what=f"phase {'/'.join(phases)}"
    )


def event_reasons(cluster: Cluster, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in cluster.events(namespace, name)]


def tags(db: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in db.get("TagList", [])}


def instances(rds: Any, ident: str) -> list[dict[str, Any]]:
    """The DB instances of that identifier (none when there is none: no NotFound error)."""
    found = rds.describe_db_instances(Filters=[{"Name": "db-instance-id", "Values": [ident]}])
    return list(found["DBInstances"])


def password_set(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions", [])
    return any(c["type"] == "MasterPasswordSet" and c["status"] == "True" for c in conditions)
