"""Which DBPolicies select a namespace: by name, or by a label selector with Kubernetes' semantics. Pure."""

from __future__ import annotations

from dbops.models import DBPolicySpec, LabelRequirement, NamespaceSelector


def requirement_holds(req: LabelRequirement, labels: dict[str, str]) -> bool:
    present = req.key in labels
    if req.operator == "Exists":
        return present
    if req.operator == "DoesNotExist":
        return not present
    inside = present and labels[req.key] in (req.values or [])
    return inside if req.operator == "In" else not inside


def selector_matches(selector: NamespaceSelector, labels: dict[str, str]) -> bool:
    """Every requirement holds; an empty selector selects everything (as in Kubernetes)."""
    if any(labels.get(k) != v for k, v in (selector.match_labels or {}).items()):
        return False
    return all(requirement_holds(r, labels) for r in selector.match_expressions or [])


def selects(spec: DBPolicySpec, namespace: str, labels: dict[str, str]) -> bool:
    """Named in spec.namespaces, or matched by spec.namespaceSelector: either is enough."""
    if namespace in (spec.namespaces or []):
        return True
    return spec.namespace_selector is not None and selector_matches(spec.namespace_selector, labels)


def selected(specs: dict[str, DBPolicySpec], namespaces: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """Policy name -> the names of the namespaces it selects, sorted."""
    return {
        name: sorted(ns for ns, labels in namespaces.items() if selects(spec, ns, labels))
        for name, spec in specs.items()
    }
