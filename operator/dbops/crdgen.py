"""Render the CustomResourceDefinitions from the pydantic models (the single source of truth).

Pydantic emits JSON Schema; Kubernetes wants a structural OpenAPI v3 schema: no $ref, no anyOf for
optional fields, no null types, no titles. This module does that translation, and two things that need
the path of each field: it names the field in every CEL rule's message (the models write predicates, see
cel.py), and it turns the enums of a spec into CEL rules (an enum violation would hide every other error).
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from dbops.cel import Rule, ceiling, cel_string, enum_rule
from dbops.models import GROUP, RESOURCES, VERSION, Resource

# JSON Schema keywords with no place (or no meaning) in a structural CRD schema.
_DROP = {"title", "$defs", "additionalProperties_false"}


def _named(rule: Rule, path: str) -> Rule:
    """The rule with its message prefixed by the path of the field it is about."""
    where = f"{path}{rule.get('fieldPath', '')}"
    if "messageExpression" in rule:
        return {**rule, "messageExpression": f"{cel_string(where + ' ')} + ({rule['messageExpression']})"}
    return {**rule, "message": f"{where} {rule['message']}"}


def _validated(out: dict[str, Any], path: str, cel_enums: bool) -> dict[str, Any]:
    rules = list(out.pop("x-kubernetes-validations", []))
    if cel_enums and "enum" in out:
        values = out.pop("enum")
        rules.insert(0, enum_rule(values))
        if out.get("type") == "string":  # bounded, as the enum bounded it (CEL cost estimation)
            out["maxLength"] = ceiling(max(len(v) for v in values))
    if rules:
        out["x-kubernetes-validations"] = [_named(r, path) for r in rules]
    return out


def _inline(node: Any, defs: dict[str, Any], path: str, cel_enums: bool) -> Any:
    """Resolve $refs, collapse Optional (anyOf with null), drop what Kubernetes refuses, and name the field
    (`path`, as a user writes it) in the messages of its rules."""
    if isinstance(node, list):
        return [_inline(x, defs, path, cel_enums) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = dict(defs[node["$ref"].split("/")[-1]])
        target.update({k: v for k, v in node.items() if k != "$ref"})
        return _inline(target, defs, path, cel_enums)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) == 1:
            merged = {**branches[0], **{k: v for k, v in node.items() if k != "anyOf"}}
            return _inline(merged, defs, path, cel_enums)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "additionalProperties" and value is False:
            continue  # extra="forbid": the API server prunes unknown fields anyway
        if key == "format" and value == "date-time":
            out[key] = value
            continue
        if key == "properties":
            out[key] = {name: _inline(sub, defs, f"{path}.{name}", cel_enums) for name, sub in value.items()}
            continue
        if key == "items":
            out[key] = _inline(value, defs, f"each of {path}", cel_enums)
            continue
        out[key] = _inline(value, defs, path, cel_enums)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return _validated(out, path, cel_enums)


def openapi_schema(model: type[BaseModel], path: str, cel_enums: bool = False) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _inline(raw, raw.get("$defs", {}), path, cel_enums)  # type: ignore[no-any-return]


def crd(res: Resource) -> dict[str, Any]:
    # Status is the operator's, not a user's: its enums stay (they never meet a user's mistake).
    status = openapi_schema(res.status, "status")
    status.setdefault("description", f"What the operator observed of this {res.kind}; written only by the operator.")
    schema: dict[str, Any] = {
        "type": "object",
        "description": res.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": openapi_schema(res.spec, "spec", cel_enums=True),
            "status": status,
        },
    }
    if res.rules:  # rules on the object itself (CEL sees metadata.name there): their messages name the field
        schema["x-kubernetes-validations"] = list(res.rules)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{res.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": res.scope,
            "names": {
                "kind": res.kind,
                "listKind": f"{res.kind}List",
                "plural": res.plural,
                "singular": res.kind.lower(),
                "shortNames": [res.short_name],
                "categories": res.categories,
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": res.columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render(res: Resource) -> str:
    header = "# Generated by `python -m dbops crds` from operator/dbops/models.py: do not edit by hand.\n"
    return header + yaml.safe_dump(crd(res), sort_keys=False, width=120)


def files() -> dict[str, str]:
    """crds/ file name -> content."""
    return {f"{GROUP}_{res.plural}.yaml": render(res) for res in RESOURCES}
