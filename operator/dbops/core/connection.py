"""Connection details for the applications that use a database: a Secret (or a ConfigMap, without the
password) in the object's namespace that dbops creates, owned by the object, and writes again whenever
what is stored differs from what it should say (level-triggered: a pass compares, an edit by hand or a
new endpoint is corrected by the next pass).

Ownership is the ownerReference to the object's UID: one without it (made by someone else, or left by
an earlier object of the same name) is never written into nor deleted; the condition says so. The
ownerReference lets the garbage collector remove it with the object; the finalizer removes it as well,
so that it also goes where no collector runs, and at once.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from dbops.core.kube import ConflictError, K8sError, Kube
from dbops.core.status import Cond

log = logging.getLogger(__name__)

CONDITION = "ConnectionDetailsWritten"
MANAGED_BY = {"app.kubernetes.io/managed-by": "dbops"}
# What a user can fix (RBAC, a name taken, a value refused): shown in a condition. Anything else
# (no answer, a conflicting writer) goes to the core, which tries again shortly.
_SHOWN = {403: "Forbidden", 404: "NamespaceGone", 422: "Invalid"}
RBAC_HINT = "bind the ClusterRole dbops-connection-writer to dbops' ServiceAccount in this namespace"


def publish(kube: Kube, owner: dict[str, Any], kind: str, name: str, data: dict[str, str]) -> Cond:
    """Make the Secret or ConfigMap `name` hold exactly `data`; the condition that says how it went."""
    meta = owner["metadata"]
    namespace, what = meta["namespace"], f"{kind} {name}"
    try:
        current = kube.read_core(kind, namespace, name)
        if current is None:
            kube.create_core(kind, namespace, _new(owner, kind, name, data))
            return Cond(CONDITION, "True", "Written", f"{what} written")
        if not owns(current, meta["uid"]):
            message = (
                f"spec.connection.name: {what} exists and was not created by this {owner['kind']}; "
                "dbops does not write into it: name another"
            )
            return Cond(CONDITION, "False", "NameTaken", message)
        if (current.get("data") or {}) == _encoded(kind, data):
            return Cond(CONDITION, "True", "UpToDate", f"{what} is up to date")
        kube.replace_core(kind, namespace, {**current, "data": _encoded(kind, data)})
        return Cond(CONDITION, "True", "Updated", f"{what} updated")
    except ConflictError:
        raise  # written by someone meanwhile: the next pass compares again
    except K8sError as err:
        if err.status not in _SHOWN:
            raise
        hint = f": {RBAC_HINT}" if err.status == 403 else ""
        return Cond(CONDITION, "False", _SHOWN[err.status], f"{what} not written ({err}){hint}")


def withdraw(kube: Kube, owner: dict[str, Any], kind: str, name: str) -> None:
    """Delete the Secret or ConfigMap `name` if this object owns it; never fails the deletion of the
    object (the garbage collector takes what is left, through the ownerReference)."""
    meta = owner["metadata"]
    try:
        current = kube.read_core(kind, meta["namespace"], name)
        if current is not None and owns(current, meta["uid"]):
            kube.delete_core(kind, meta["namespace"], name, current["metadata"]["uid"])
    except K8sError as err:
        log.warning("%s %s/%s: %s %s not deleted (%s)", owner["kind"], meta["namespace"], meta["name"], kind, name, err)


def owns(obj: dict[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid for ref in refs)


def _new(owner: dict[str, Any], kind: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    meta = owner["metadata"]
    reference = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": MANAGED_BY,
            "ownerReferences": [reference],
        },
        "data": _encoded(kind, data),
    }
    if kind == "Secret":
        body["type"] = "Opaque"
    return body


def _encoded(kind: str, data: dict[str, str]) -> dict[str, str]:
    """As the API server stores it: a Secret's values in base64, a ConfigMap's as they are."""
    if kind != "Secret":
        return dict(data)
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
